/* w3floor: the Lua-side floor of W3, for bench/profile.sh.
 *
 * build(n) returns n rows shaped like bench_rows ({id, name, score, big,
 * created, note}, a shared metatable, NULL as a light userdata every third
 * row), made with the same Lua C API calls scoped's lresult.c makes, from
 * strings prepared beforehand: no libmariadb, no parsing. What it costs is
 * what any binding pays on that Lua to hand rows to a Lua program, so
 * scoped's W3 cannot be cheaper than this plus libmariadb's own fetch. */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    char name[64], created[24], note[24];
    int name_len, created_len, note_len;
} text_row;

static text_row *rows;
static int nrows;

/* the texts of rows 1..n, as setup.sql makes them (made once, untimed: two
 * profile runs of different sizes subtract it out) */
static void prepare(lua_State *L, int n)
{
    text_row *t = realloc(rows, sizeof *t * (size_t)n);
    if (t == NULL)
        luaL_error(L, "w3floor: out of memory");
    rows = t;
    for (int i = nrows + 1; i <= n; i++) {
        text_row *r = &rows[i - 1];
        int s = i % 86400;
        r->name_len = snprintf(r->name, sizeof r->name, "name-%d-%.*s", i, i % 20, "xxxxxxxxxxxxxxxxxxxx");
        r->created_len = snprintf(r->created, sizeof r->created, "2024-01-%02d %02d:%02d:%02d",
                                  1 + (i / 86400) % 28, s / 3600, s / 60 % 60, s % 60);
        r->note_len = snprintf(r->note, sizeof r->note, "note %d", i);
    }
    nrows = n;
}

static int build(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= 10000000, 1, "0 to 10,000,000 rows");
    if (n > nrows)
        prepare(L, (int)n);
    lua_createtable(L, 0, 0); /* the rows' metatable */
    int mt = lua_gettop(L);
    lua_createtable(L, 0, 0); /* grown row by row, as scoped's list is */
    for (int i = 1; i <= (int)n; i++) {
        const text_row *r = &rows[i - 1];
        lua_createtable(L, 6, 0);
        lua_pushinteger(L, i);
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, r->name, (size_t)r->name_len);
        lua_rawseti(L, -2, 2);
        lua_pushnumber(L, i * 1.25 + 0.1);
        lua_rawseti(L, -2, 3);
        lua_pushinteger(L, (lua_Integer)i * 1000003);
        lua_rawseti(L, -2, 4);
        lua_pushlstring(L, r->created, (size_t)r->created_len);
        lua_rawseti(L, -2, 5);
        if (i % 3 == 0)
            lua_pushlightuserdata(L, NULL);
        else
            lua_pushlstring(L, r->note, (size_t)r->note_len);
        lua_rawseti(L, -2, 6);
        lua_pushvalue(L, mt);
        lua_setmetatable(L, -2);
        lua_rawseti(L, -2, i);
    }
    return 1;
}

/* {build = build, null = the NULL cell} */
int luaopen_w3floor(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, build);
    lua_setfield(L, -2, "build");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
