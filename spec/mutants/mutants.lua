-- mutants.lua: the list side of `make mutants` (spec/mutants/run.sh).
--
--   lua5.4 spec/mutants/mutants.lua select [IDS] [CHANGED_FILES_FILE]
--       one line per selected mutant, tab-separated:
--       id, file, state (ok | stale:<why> | equivalent:<why>), likely specs (space-separated)
--       IDS: comma-separated ids ("" = all; an unknown id is an error);
--       CHANGED_FILES_FILE: a file of paths, one a line: only mutants of those files
--   lua5.4 spec/mutants/mutants.lua apply ID DIR
--       applies mutant ID to DIR/<its file>; exit 3 when it is stale
--
-- The list is spec/mutants/list.lua (its head says how to write an entry).
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local list = dofile(here .. "/list.lua")

local function die(msg)
  io.stderr:write("mutants: ", msg, "\n")
  os.exit(2)
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function count(s, pat)
  local n, i = 0, 1
  while true do
    local a, b = s:find(pat, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

-- checks the list itself: every field there, ids unique
local seen = {}
for i, m in ipairs(list) do
  for _, k in ipairs({"id", "file", "before", "after", "why"}) do
    if type(m[k]) ~= "string" or m[k] == "" then
      die(("entry %d (%s): field '%s' must be a non-empty string"):format(i, tostring(m.id), k))
    end
  end
  if not m.id:match("^[%w_.-]+$") then die("id '" .. m.id .. "': letters, digits, _ . - only") end
  if seen[m.id] then die("id '" .. m.id .. "' appears twice") end
  if m.before == m.after then die(m.id .. ": before and after are the same text") end
  if m.specs ~= nil and type(m.specs) ~= "table" then die(m.id .. ": specs must be a list") end
  seen[m.id] = m
end

-- stale when `before` is not in the file exactly once
local function state(m, root)
  local src = read((root or ".") .. "/" .. m.file)
  if not src then return "stale:" .. m.file .. " does not exist", nil end
  local n = count(src, m.before)
  if n ~= 1 then
    return ("stale:its before text occurs %d times in %s (must be once)"):format(n, m.file), nil
  end
  if m.equivalent then return "equivalent:" .. m.equivalent, src end
  return "ok", src
end

local cmd = arg[1]
if cmd == "select" then
  local want
  if arg[2] and arg[2] ~= "" then
    want = {}
    for id in arg[2]:gmatch("[^,%s]+") do
      if not seen[id] then die("no mutant '" .. id .. "' in spec/mutants/list.lua") end
      want[id] = true
    end
  end
  local changed
  if arg[3] and arg[3] ~= "" then
    changed = {}
    for line in (read(arg[3]) or ""):gmatch("[^\n]+") do changed[line] = true end
  end
  for _, m in ipairs(list) do
    if (not want or want[m.id]) and (not changed or changed[m.file]) then
      local st = state(m)
      st = st:gsub("[\t\n]", " ")
      io.write(m.id, "\t", m.file, "\t", st, "\t", table.concat(m.specs or {}, " "), "\n")
    end
  end
elseif cmd == "apply" then
  local m = seen[arg[2] or ""] or die("no mutant '" .. tostring(arg[2]) .. "'")
  local root = arg[3] or die("apply: no directory")
  local st, src = state(m, root)
  if st:match("^stale") then
    io.stderr:write(st, "\n")
    os.exit(3)
  end
  local a, b = src:find(m.before, 1, true)
  local f = assert(io.open(root .. "/" .. m.file, "wb"))
  f:write(src:sub(1, a - 1), m.after, src:sub(b + 1))
  f:close()
else
  die("usage: mutants.lua select [IDS] [CHANGED_FILES] | apply ID DIR")
end
