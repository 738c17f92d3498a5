/* Character classes, defined once for the parsers of the core (the bind
 * lexer in binds.c, the URL parser in url.c). Static inline: the lexer
 * asks per byte of every statement with binds. */
#ifndef SCOPED_CHARS_H
#define SCOPED_CHARS_H

/* A word character: ASCII letter, digit or '_' (what a charset name or a
 * :name bind is made of). */
static inline int sc_word_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* A byte of a word as the server lexes one: a word character, or any byte
 * of a multibyte character (>= 0x80, which in the charsets a connection
 * accepts never holds an ASCII byte). */
static inline int sc_ident_char(unsigned char c)
{
    return sc_word_char(c) || c >= 0x80;
}

#endif
