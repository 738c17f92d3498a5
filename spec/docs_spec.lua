-- Every public name of the API is in the reference (the LDoc comments in
-- lua/scoped/*.lua, as LDoc parses them: spec/support/ldoc_names.lua) and in
-- the editor types (types/scoped.lua). The public names are found at run
-- time: the keys not starting with "_" of require "scoped", its
-- submodules, and real objects (an engine, its pool and stats, a
-- Connection, Transactions, a raw connection, a Result and its views, a
-- sessionmaker, Sessions, SessionTransactions, a scoped_session, an error),
-- through their metatables' __index tables (and the class tables an
-- __index function reaches as upvalues). create_engine's options and the
-- event names are read from where they are defined (engine.lua's OPTIONS,
-- event.lua's NAMES): a new one fails here until it is documented.
local scoped = require "scoped"
local H = require "helper"

-- the file's text; an error when it cannot be read
local function read(path) return assert(H.read_file(path), "cannot read " .. path) end

local function sorted(set)
  local l = {}
  for k in pairs(set) do l[#l + 1] = k end
  table.sort(l)
  return l
end

-- the public names of a value: its own string keys and those of its
-- metatables' __index tables, none starting with "_"
local function public_names(obj, extra)
  local out = {}
  local function add(t)
    for k in pairs(t) do
      if type(k) == "string" and k:sub(1, 1) ~= "_" then out[k] = true end
    end
  end
  if type(obj) == "table" then add(obj) end
  local mt, seen = getmetatable(obj), {}
  while type(mt) == "table" and not seen[mt] do
    seen[mt] = true
    local idx = rawget(mt, "__index")
    if type(idx) == "table" then
      add(idx)
      mt = getmetatable(idx)
    else
      if type(idx) == "function" then
        -- a class table behind an __index function (a property such as
        -- engine.echo comes through `extra`)
        for i = 1, 60 do
          local name, v = debug.getupvalue(idx, i)
          if not name then break end
          if name ~= "_ENV" and type(v) == "table" then add(v) end
        end
      end
      mt = nil
    end
  end
  for _, k in ipairs(extra or {}) do out[k] = true end
  return out
end

-- names defined in a source file's table literal `local NAME = { ... }`
local function literal_keys(path, var, pattern)
  local src = read(path)
  local body = src:match("\nlocal " .. var .. " = (%b{})")
  assert(body, path .. ": no `local " .. var .. " = {...}`")
  local out = {}
  for k in body:gmatch(pattern) do out[k] = true end
  assert(next(out), path .. ": nothing found in " .. var)
  return out
end

-- the reference: container -> set of names, as LDoc parses the sources
local function ldoc_names()
  local p = assert(io.popen("LUA_PATH='spec/support/?.lua;;' ldoc --filter ldoc_names.print . 2>&1"))
  local text = p:read("*a")
  p:close()
  local out, n = {}, 0
  for container, name in text:gmatch("([^\t\n]+)\t([^\t\n]+)") do
    out[container] = out[container] or {}
    out[container][name] = true
    n = n + 1
  end
  assert(n > 100, "ldoc (Debian: lua-ldoc) printed no names:\n" .. text)
  return out
end

-- the types: class -> set of names (fields and functions); aliases ->
-- their string values
local function luacats_names(path)
  local out, var_class, current = {}, {}, nil
  local alias
  for line in (read(path) .. "\n"):gmatch("([^\n]*)\n") do
    local class = line:match("^%-%-%-@class ([%w_.]+)")
    local a = line:match("^%-%-%-@alias ([%w_.]+)%s*$")
    if class then
      current, alias = class, nil
      out[class] = out[class] or {}
    elseif a then
      alias = a
      out[a] = out[a] or {}
    elseif alias and line:match("^%-%-%-|") then
      local v = line:match('^%-%-%-|%s*"([^"]+)"')
      if v then out[alias][v] = true end
    else
      alias = nil
      local field = line:match("^%-%-%-@field ([%w_]+)%??%s")
      if field and current then out[current][field] = true end
      local var = line:match("^local ([%w_]+) = {}")
      if var and current then var_class[var] = current end
      local v, name = line:match("^function ([%w_]+)[.:]([%w_]+)%(")
      if v then
        local c = var_class[v]
        assert(c, path .. ": function " .. v .. "." .. name .. " of no @class")
        out[c][name] = true
      end
      if not line:match("^%-%-%-@") and not line:match("^local ") and not line:match("^function ")
          and not line:match("^%s*$") and not line:match("^%-%-") and not line:match("^return ") then
        current = nil
      end
    end
  end
  return out
end

describe("reference docs and editor types", function()
  local e = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 1})
  local conn = e:connect()
  local tx = conn:begin()
  local sp = conn:begin_nested()
  local result = conn:execute("SELECT 1 AS a UNION ALL SELECT 2")
  local raw = conn:get_raw()
  local stats = e.pool:stats()
  local _, err = pcall(conn.execute, conn, "SELEC 1")
  sp:rollback()
  tx:rollback()
  conn:close()
  local maker = scoped.sessionmaker{bind = e}
  local s = maker()
  local st = s:begin()
  local S = scoped.scoped_session(maker)
  local err_keys = {}
  for k in pairs(err) do err_keys[#err_keys + 1] = k end
  local s2 = maker()
  local nested = s2:begin_nested()
  nested:rollback()
  s2:close()
  st:rollback()
  s:close()
  S:remove()
  e:dispose()

  local kinds = {}
  for k, parent in pairs(scoped.exc.hierarchy) do kinds[k], kinds[parent] = true, true end

  -- name, public names found at run time, LDoc container, LuaCATS class
  local checks = {
    {"scoped", public_names(scoped, {"_VERSION"}), "scoped", "scoped"},
    {"scoped.exc", public_names(scoped.exc), "exc", "scoped.exc"},
    {"error kinds", kinds, "ErrorKinds", "scoped.ErrorKind"},
    {"error fields", public_names(err), "Error", "scoped.Error"},
    {"scoped.event", public_names(scoped.event), "scoped.event", "scoped.event"},
    {"events", literal_keys("lua/scoped/event.lua", "NAMES", "([%w_]+)%s*=%s*[\"t]"), "events",
      "scoped.EventName"},
    {"scoped.scopes", public_names(scoped.scopes), "scopes", "scoped.scopes"},
    {"scoped.metrics", public_names(scoped.metrics), "scoped.metrics", "scoped.metrics"},
    {"create_engine options", literal_keys("lua/scoped/engine.lua", "OPTIONS", "\n%s*([%w_]+)%s*=%s*{"),
      "options", "scoped.EngineOptions"},
    {"URL", public_names(scoped.make_url("mysql://u:p@h:1/db"), {"password"}), "URL", "scoped.URL"},
    {"Engine", public_names(e, {"echo"}), "Engine", "scoped.Engine"},
    {"Pool", public_names(e.pool), "Pool", "scoped.Pool"},
    {"pool:stats()", public_names(stats), "PoolStats", "scoped.PoolStats"},
    {"Connection", public_names(conn), "Connection", "scoped.Connection"},
    {"Transaction", public_names(tx, {"is_active"}), "Transaction", "scoped.Transaction"},
    {"Transaction (savepoint)", public_names(sp, {"is_active"}), "Transaction", "scoped.Transaction"},
    {"RawConnection", public_names(raw), "RawConnection", "scoped.RawConnection"},
    {"Result", public_names(result, {"rowcount", "lastrowid", "returns_rows"}), "Result", "scoped.Result"},
    {"ScalarResult", public_names(result:scalars()), "ScalarResult", "scoped.ScalarResult"},
    {"MappingResult", public_names(result:mappings()), "MappingResult", "scoped.MappingResult"},
    {"sessionmaker", public_names(maker), "Sessionmaker", "scoped.Sessionmaker"},
    {"Session", public_names(s), "Session", "scoped.Session"},
    {"SessionTransaction", public_names(st, {"is_active"}), "SessionTransaction", "scoped.SessionTransaction"},
    {"SessionTransaction (nested)", public_names(nested, {"is_active"}), "SessionTransaction",
      "scoped.SessionTransaction"},
    {"scoped_session", public_names(S), "ScopedSession", "scoped.ScopedSession"},
    {"scoped_session.registry", public_names(S.registry), "ScopeRegistry", "scoped.ScopeRegistry"},
  }

  local docs, types
  setup(function()
    docs = ldoc_names()
    types = luacats_names("types/scoped.lua")
  end)

  it("an error carries the fields the walk expects", function()
    assert.truthy(#err_keys >= 3)
    assert.are.equal("ProgrammingError", err.kind)
  end)

  for _, c in ipairs(checks) do
    local what, names, container, class = c[1], sorted(c[2]), c[3], c[4]
    it(what .. ": its " .. #names .. " public names are in the LDoc reference (" .. container .. ")", function()
      assert.truthy(#names > 0)
      local missing = {}
      for _, n in ipairs(names) do
        if not (docs[container] and docs[container][n]) then missing[#missing + 1] = n end
      end
      assert.are.same({}, missing, what .. ": not in the reference (" .. container .. "): "
        .. table.concat(missing, ", "))
    end)
    it(what .. ": its " .. #names .. " public names are in types/scoped.lua (" .. class .. ")", function()
      local missing = {}
      for _, n in ipairs(names) do
        if not (types[class] and types[class][n]) then missing[#missing + 1] = n end
      end
      assert.are.same({}, missing, what .. ": not in types/scoped.lua (" .. class .. "): "
        .. table.concat(missing, ", "))
    end)
  end

  it("make docs's LDoc run writes a page for every module", function()
    local dir = os.tmpname()
    os.remove(dir)
    local p = assert(io.popen("ldoc -d " .. dir .. " . 2>&1"))
    local out = p:read("*a")
    p:close()
    for _, m in ipairs{"scoped", "scoped.engine", "scoped.session", "scoped.scoping", "scoped.result",
        "scoped.url", "scoped.event", "scoped.metrics", "scoped.nonblocking"} do
      local f = io.open(dir .. "/modules/" .. m .. ".html")
      assert.truthy(f, m .. ": no page; ldoc said:\n" .. out)
      f:close()
    end
    assert.truthy(io.open(dir .. "/index.html"))
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("types/scoped.lua is a ---@meta file that loads", function()
    local src = read("types/scoped.lua")
    assert.truthy(src:match("^%-%-%-@meta"))
    assert.truthy((loadstring or load)(src, "@types/scoped.lua"))
  end)
end)
