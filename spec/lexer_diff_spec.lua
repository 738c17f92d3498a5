-- The bind lexer against the server's own (issue 17): random templates,
-- each a SELECT list built from pieces whose meaning the generator knows --
-- strings with quotes, backslashes and escapes as each sql_mode reads them
-- (a literal ending in a backslash under NO_BACKSLASH_ESCAPES), names in
-- backticks and, under ANSI_QUOTES, double quotes, -- # and C comments,
-- "--" followed by control bytes (--\x7f), executable comments that run
-- (/*! ... */, /*M!100000 ... */) and that do not (/*!999999 ... */,
-- /*!50701 ... */), 5--3 -- with live placeholders among them and decoy
-- ones inside strings, names and comments. Two checks per template:
--   * the server: executed with each placeholder bound to a distinct
--     marker, the row is exactly the values the generator expects (a
--     placeholder the lexer misplaced shows as a wrong column, a syntax
--     error, or a marker out of place);
--   * the lexer: rendering substitutes exactly the live placeholders and
--     none of the decoys.
-- Under sql_mode '', NO_BACKSLASH_ESCAPES, ANSI_QUOTES and both, with the
-- utf8mb4 and latin1 charsets, half of the templates right after a SET
-- STATEMENT that leaves the server's status flag stale.
-- SCOPED_LEXER_DIFF_N templates per combination (default 40: `make test`),
-- SCOPED_LEXER_DIFF_SEED (default 1); `make fuzz` runs many more with a
-- random seed, printed on failure.
local H = require "helper"

local N = tonumber(os.getenv("SCOPED_LEXER_DIFF_N") or "") or 40
local SEED = tonumber(os.getenv("SCOPED_LEXER_DIFF_SEED") or "") or 1

local function quote_bytes(s)
  return (s:gsub("[^%w%p ]", function(c) return ("\\x%02x"):format(c:byte()) end))
end

-- one template: text, live names (or the count of live ?), decoy names, expected values
local function generator(seed, mode)
  local state = seed % 2147483646 + 1
  local function rand(n)
    state = (state * 16807) % 2147483647
    return state % n
  end
  local function pick(t) return t[rand(#t) + 1] end
  local nbe, ansi, latin1, positional = mode.nbe, mode.ansi, mode.latin1, mode.positional
  local nlive, ndecoy = 0, 0
  local live, decoys = {}, {}

  local function decoy()
    if positional and rand(2) == 0 then return "?" end
    ndecoy = ndecoy + 1
    decoys[#decoys + 1] = "d" .. ndecoy
    return ":d" .. ndecoy
  end
  local function placeholder()
    nlive = nlive + 1
    if positional then
      live[#live + 1] = "[q" .. nlive .. "]"
      return "?", live[#live]
    end
    live[#live + 1] = "p" .. nlive
    return ":p" .. nlive, "[p" .. nlive .. "]"
  end

  -- text that ends no comment: no newline, no NUL; for C comments no * or /
  local function comment_text(block)
    local parts = {}
    for i = 1, rand(5) do
      local p = pick({" ", "x", "DECOY", "?", "'", '"', "`", "\\", "--", "#", "é", ",", ")", ":"})
      if p == "DECOY" then p = decoy() end
      if block and (p:find("[*/]")) then p = " " end
      parts[i] = p
    end
    return table.concat(parts)
  end
  local function comment()
    local k = rand(10)
    if k == 0 then return "-- " .. comment_text() .. "\n" end
    if k == 1 then return "--" .. pick({"\1", "\t", "\127", "\31", "\r", "\11"}) .. comment_text() .. "\n" end
    if k == 2 then return "#" .. comment_text() .. "\n" end
    if k == 3 then return "/*" .. comment_text(true) .. "*/" end
    if k == 4 then return "/*!999999" .. comment_text(true) .. "*/" end
    if k == 5 then return "/*M!999999 " .. comment_text(true) .. "*/" end
    if k == 6 then return "/*!50701 " .. comment_text(true) .. "*/" end
    if k == 7 then return "/*!99999 a /*" .. comment_text(true) .. "*/ b */" end
    if k == 8 and latin1 then return "--\xa0" .. comment_text() .. "\n" end
    return "/**/"
  end
  local function sep()
    local k = rand(8)
    if k < 3 then return " " end
    if k == 3 then return "\n" end
    if k == 4 then return "\t " end
    return " " .. comment() .. " "
  end

  -- a string literal in quote q: its text and its value
  local function string_literal(q)
    local text, value = {q}, {}
    local function add(t, v) text[#text + 1] = t; value[#value + 1] = v end
    local other = q == "'" and '"' or "'"
    for _ = 1, rand(7) do
      local k = rand(16)
      if k == 0 then add("ab", "ab")
      elseif k == 1 then local d = decoy(); add(d, d)
      elseif k == 2 then add("?", "?")
      elseif k == 3 then add("-- ", "-- ")
      elseif k == 4 then add("#", "#")
      elseif k == 5 then add("/*", "/*")
      elseif k == 6 then add("*/", "*/")
      elseif k == 7 then add("é", "é")
      elseif k == 8 then add("`", "`")
      elseif k == 9 then add(other, other)
      elseif k == 10 then add(q .. q, q)
      elseif k == 11 then
        if nbe then add("\\", "\\") else add("\\\\", "\\") end
      elseif k == 12 then
        if nbe then add("\\" .. q .. q, "\\" .. q) else add("\\" .. q, q) end
      elseif k == 13 then
        if nbe then add("\\n", "\\n")
        else
          local e = pick({{"\\n", "\n"}, {"\\t", "\t"}, {"\\0", "\0"}, {"\\Z", "\26"}, {"\\x", "x"},
            {"\\%", "\\%"}, {"\\_", "\\_"}, {"\\" .. other, other}})
          add(e[1], e[2])
        end
      elseif k == 14 then add("\n", "\n")
      else add(":", ":") end
    end
    if nbe and rand(3) == 0 then add("C:\\", "C:\\") end -- a literal ending in a backslash
    text[#text + 1] = q
    return table.concat(text), table.concat(value)
  end

  local function name_text(q)
    local parts = {q}
    for _ = 1, 1 + rand(4) do
      local p = pick({"n", "DECOY", "?", "'", "--", "#", "/*", "\\", q .. q, "é", " "})
      if p == "DECOY" then p = decoy() end
      parts[#parts + 1] = p
    end
    parts[#parts + 1] = q
    return table.concat(parts)
  end

  local function item()
    local k = rand(14)
    local text, value
    if k < 4 then
      text, value = placeholder()
    elseif k == 4 then
      value = rand(1000); text = tostring(value)
    elseif k == 5 then
      text, value = "5--3", 8
    elseif k == 6 then
      text, value = "X'414243'", "ABC"
    elseif k <= 9 or k == 13 then
      local q = (not ansi and rand(3) == 0) and '"' or "'"
      text, value = string_literal(q)
      if q == "'" and rand(4) == 0 then
        -- introducers that keep the bytes: N and _utf8mb4 only where they are the connection's
        text = (latin1 and "_binary" or pick({"N", "_utf8mb4", "_binary", "_binary "})) .. text
      end
    elseif k == 10 then
      local t, v = placeholder()
      text, value = "/*! " .. t .. " */", v
    elseif k == 11 then
      local t, v = placeholder()
      text, value = pick({"/*!100000 ", "/*M!100000 ", "/*M!50701 ", "/*!40101 "}) .. t .. " */", v
    else
      local t, v = string_literal("'")
      text, value = "/*!" .. t .. "*/", v
    end
    if rand(4) == 0 then
      text = text .. " AS " .. (ansi and rand(2) == 0 and name_text('"') or name_text("`"))
    end
    return text, value
  end

  local parts, expected = {"SELECT", sep()}, {}
  for i = 1, 1 + rand(6) do
    if i > 1 then parts[#parts + 1] = sep() .. "," .. sep() end
    local t, v = item()
    parts[#parts + 1] = t
    expected[#expected + 1] = v
  end
  parts[#parts + 1] = sep()
  return table.concat(parts), live, decoys, expected
end

local COMBOS = {}
for _, cs in ipairs({"utf8mb4", "latin1"}) do
  for _, m in ipairs({{"", false, false}, {"NO_BACKSLASH_ESCAPES", true, false},
      {"ANSI_QUOTES", false, true}, {"NO_BACKSLASH_ESCAPES,ANSI_QUOTES", true, true}}) do
    COMBOS[#COMBOS + 1] = {sql_mode = m[1], nbe = m[2], ansi = m[3], charset = cs, latin1 = cs == "latin1"}
  end
end

describe("the bind lexer agrees with the server's (" .. N .. " templates per combination, seed " .. SEED .. ")", function()
  local c
  setup(function() c = H.raw() end)
  teardown(function() c:close() end)

  for ci, combo in ipairs(COMBOS) do
    it(("under sql_mode '%s', charset %s"):format(combo.sql_mode, combo.charset), function()
      c:execute("SET NAMES " .. combo.charset)
      c:execute(("SET SESSION sql_mode = '%s'"):format(combo.sql_mode))
      local flip = ("SET STATEMENT sql_mode='%s' FOR SELECT 1"):format(combo.nbe and "" or "NO_BACKSLASH_ESCAPES")
      for t = 1, N do
        local seed = SEED * 1000003 + ci * 100003 + t
        local mode = {nbe = combo.nbe, ansi = combo.ansi, latin1 = combo.latin1, positional = t % 3 == 0}
        local sql, live, decoys, expected = generator(seed, mode)
        local where = ("template %d (seed %d): %s"):format(t, seed, quote_bytes(sql))
        local params = {}
        if mode.positional then
          for i, m in ipairs(live) do params[i] = m end
          params.n = #live
        else
          for _, name in ipairs(live) do params[name] = "[" .. name .. "]" end
          for _, name in ipairs(decoys) do params[name] = "[" .. name .. "]" end
        end
        if t % 2 == 0 then c:exec_driver_sql(flip) end
        -- the lexer: exactly the live placeholders are substituted
        local ok, rendered = pcall(c.render, c, sql, params)
        if not ok then error(where .. "\nrender: " .. tostring(rendered), 0) end
        for _, name in ipairs(mode.positional and {} or live) do
          local _, n = rendered:gsub("'%[" .. name .. "%]'", "")
          if n ~= 1 then error(where .. "\nlive :" .. name .. " substituted " .. n .. " times", 0) end
        end
        for _, name in ipairs(mode.positional and {} or decoys) do
          if rendered:find("[" .. name .. "]", 1, true) then
            error(where .. "\ndecoy :" .. name .. " was substituted: " .. quote_bytes(rendered), 0)
          end
        end
        -- the server: the row the generator expects
        if t % 2 == 0 then c:exec_driver_sql(flip) end
        local ok2, res = pcall(c.execute, c, sql, params)
        if not ok2 then error(where .. "\nexecute: " .. tostring(res), 0) end
        local rows = res:all()
        if #rows ~= 1 or #rows[1] ~= #expected then
          error(("%s\nthe server returned %d rows of %d columns, expected 1 of %d"):format(where, #rows,
            rows[1] and #rows[1] or 0, #expected), 0)
        end
        for k, v in ipairs(expected) do
          if rows[1][k] ~= v then
            error(("%s\ncolumn %d is %s, expected %s"):format(where, k, quote_bytes(tostring(rows[1][k])),
              quote_bytes(tostring(v))), 0)
          end
        end
      end
      c:execute("SET SESSION sql_mode = DEFAULT")
      c:execute("SET NAMES utf8mb4")
    end)
  end
end)
