-- The mutants `make mutants` runs (spec/mutants/run.sh; CONTRIBUTING.md).
--
-- Each is one plausible bug in one rule, and the specs must catch it. An
-- entry:
--   id      unique: letters, digits, _ . -
--   file    the file it changes, from the repository's root
--   before  the exact text it replaces: it must occur in the file exactly
--           once (else the mutant is STALE and the run fails: give enough
--           of the surrounding text to make it unique)
--   after   the text put in its place (it must still compile)
--   why     the rule it breaks, and what goes wrong for a user
--   specs   optional: the spec files most likely to kill it, run first
--   equivalent  optional: why no spec can tell it from the original; the
--           mutant is then reported, not run, and not counted
-- Adding a rule? Add its mutant here, run `make mutants MUTANTS=<id>`, and
-- write the spec that kills it if it survives.
return {
  -- ---- escaping (csrc/core/binds.c, sc_render_string) ----------------------
  {
    id = "esc-quote-double",
    file = "csrc/core/binds.c",
    before = [[if (s[i] == '\'')]],
    after = [[if (s[i] == '\0')]],
    why = "a quote in a bound string is no longer doubled: the value ends the literal (SQL injection), in both modes",
    specs = {"spec/injection_spec.lua", "spec/binds_spec.lua"},
  },
  {
    id = "esc-backslash-raw",
    file = "csrc/core/binds.c",
    before = [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, B_H, 0, 0, 0, /* 0x50-0x5F: \ */]],
    after = [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x50-0x5F: \ */]],
    why = "a backslash is written as is: with backslash escapes on, '\\' escapes the closing quote (injection); its meaning depends on NO_BACKSLASH_ESCAPES",
    specs = {"spec/injection_spec.lua", "spec/binds_spec.lua"},
  },
}
