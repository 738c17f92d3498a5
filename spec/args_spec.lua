-- Bad input: every public function and option, given arguments of the wrong
-- type or value, raises an ArgumentError that names the argument: never a
-- crash, never a bare Lua error, never a half-built engine.
local scoped = require "scoped"
local H = require "helper"

local ud = io.stdout -- a full userdata of somebody else's
local co = coroutine.create(function() end)
local WRONG = {
  {"nil", nil}, {"number", 42}, {"string", "x"}, {"boolean", true}, {"table", {}},
  {"function", print}, {"userdata", ud}, {"thread", co},
}

local function wrong_except(...)
  local skip = {}
  for _, t in ipairs({...}) do skip[t] = true end
  local out = {}
  for _, w in ipairs(WRONG) do
    if not skip[w[1]] then out[#out + 1] = w end
  end
  return out
end

-- f() must raise ArgumentError whose message contains `names`
local function refuses(label, names, f)
  local ok, err = pcall(f)
  assert.is_false(ok, label .. ": no error")
  assert.equal("table", type(err), label .. ": not an error table: " .. tostring(err))
  assert.equal("ArgumentError", err.kind, label .. ": " .. tostring(err))
  assert.truthy(err.message:find(names, 1, true), label .. ": '" .. names .. "' not in: " .. err.message)
end

describe("bad input", function()
  local e
  setup(function() e = scoped.create_engine(H.url, {pool_size = 2}) end)
  teardown(function() collectgarbage(); collectgarbage(); e:dispose() end)

  it("make_url, raw_connect and create_engine name the url", function()
    for _, w in ipairs(wrong_except("string")) do
      refuses("make_url(" .. w[1] .. ")", "url", function() return scoped.make_url(w[2]) end)
      refuses("raw_connect(" .. w[1] .. ")", "url", function() return scoped.raw_connect(w[2]) end)
      refuses("create_engine(" .. w[1] .. ")", "url", function() return scoped.create_engine(w[2]) end)
    end
    refuses("create_engine('')", "URL", function() return scoped.create_engine("") end)
  end)

  it("URL:set takes a table of fields", function()
    local u = scoped.make_url(H.url)
    for _, w in ipairs(wrong_except("table")) do
      refuses("URL:set(" .. w[1] .. ")", "fields", function() return u:set(w[2]) end)
    end
    refuses("URL:set{port = 'x'}", "port", function() return u:set({port = "x"}) end)
    refuses("URL:set{colour = 1}", "colour", function() return u:set({colour = 1}) end)
  end)

  it("create_engine refuses options of a wrong type, naming each", function()
    local options = {"pool_size", "max_overflow", "pool_timeout", "pool_recycle", "pool_pre_ping",
      "pool_use_lifo", "pool_reset_on_return", "poolclass", "echo", "logger", "isolation_level",
      "connect_args", "hide_parameters", "pool_wait", "shared", "pool_leak_threshold"}
    for _, name in ipairs(options) do
      for _, w in ipairs({{"userdata", ud}, {"thread", co}}) do
        refuses(name .. "=" .. w[1], name, function() return scoped.create_engine(H.url, {[name] = w[2]}) end)
      end
    end
    for _, w in ipairs(wrong_except("nil", "table")) do
      refuses("options " .. w[1], "options", function() return scoped.create_engine(H.url, w[2]) end)
    end
    refuses("option key 1", "Invalid argument", function() return scoped.create_engine(H.url, {5}) end)
  end)

  it("create_engine refuses out-of-range numbers, naming the option", function()
    local cases = {
      {"pool_size", math.huge}, {"pool_size", 2 ^ 40}, {"pool_size", -0.5}, {"pool_size", 0 / 0},
      {"max_overflow", 2 ^ 40}, {"max_overflow", -math.huge}, {"max_overflow", 0 / 0},
      {"pool_timeout", 0 / 0}, {"pool_timeout", -0.1},
      {"pool_recycle", 0 / 0},
      {"pool_leak_threshold", -math.huge},
    }
    for _, c in ipairs(cases) do
      refuses(c[1] .. "=" .. tostring(c[2]), c[1],
        function() return scoped.create_engine(H.url, {[c[1]] = c[2]}) end)
    end
    refuses("isolation_level", "isolation_level",
      function() return scoped.create_engine(H.url, {isolation_level = "NEVER"}) end)
    refuses("connect_args key", "connect_args",
      function() return scoped.create_engine(H.url, {connect_args = {"x"}}) end)
    refuses("connect_args unknown", "colour",
      function() return scoped.create_engine(H.url, {connect_args = {colour = "red"}}) end)
    refuses("connect_args value", "connect_timeout",
      function() return scoped.create_engine(H.url, {connect_args = {connect_timeout = {}}}) end)
    refuses("connect_args value", "ssl_mode",
      function() return scoped.create_engine(H.url, {connect_args = {ssl_mode = ud}}) end)
  end)

  it("a refused create_engine leaves nothing half-built: no connection, no shared pool", function()
    local before = H.server_connections()
    for _ = 1, 3 do
      refuses("shared + bad option", "pool_size",
        function() return scoped.create_engine(H.url, {shared = "args-half", pool_size = "x"}) end)
      refuses("shared + bad isolation", "isolation_level",
        function() return scoped.create_engine(H.url, {shared = "args-half", isolation_level = "NEVER"}) end)
    end
    -- the name is free: the first good engine makes the pool, the next shares it
    local a = scoped.create_engine(H.url, {shared = "args-half", pool_size = 2})
    local b = scoped.create_engine(H.url, {shared = "args-half", pool_size = 2})
    local c = a:connect()
    assert.equal(1, b.pool:checkedout())
    c:close()
    a:dispose()
    -- the server drops a closed connection's thread a moment later
    local t0 = os.time()
    while H.server_connections() > before and os.time() - t0 < 5 do H.sleep(0.05) end
    assert.is_true(H.server_connections() <= before)
  end)

  it("Engine:begin takes a function", function()
    for _, w in ipairs(wrong_except("nil", "function")) do
      refuses("begin(" .. w[1] .. ")", "begin", function() return e:begin(w[2]) end)
    end
    assert.equal(0, e.pool:checkedout())
  end)

  it("Connection and raw connection methods name the statement and the parameters", function()
    local conn = e:connect()
    for _, w in ipairs(wrong_except("string")) do
      refuses("Connection:scalar(" .. w[1] .. ")", "statement", function() return conn:scalar(w[2]) end)
    end
    local raw = scoped.raw_connect(H.url)
    for _, target in ipairs({{"Connection", conn}, {"RawConnection", raw}}) do
      local t = target[2]
      for _, w in ipairs(wrong_except("string")) do
        refuses(target[1] .. ":execute(" .. w[1] .. ")", "statement", function() return t:execute(w[2]) end)
        refuses(target[1] .. ":exec_driver_sql(" .. w[1] .. ")", "statement",
          function() return t:exec_driver_sql(w[2]) end)
      end
      for _, w in ipairs(wrong_except("nil", "table")) do
        refuses(target[1] .. ":execute(sql, " .. w[1] .. ")", "parameters",
          function() return t:execute("SELECT :a", w[2]) end)
      end
      for _, w in ipairs({{"function", print}, {"userdata", ud}, {"thread", co}, {"inf", math.huge},
          {"nan", 0 / 0}, {"nested list", {{1}}}}) do
        refuses(target[1] .. " bind " .. w[1], "bind parameter 'a'",
          function() return t:execute("SELECT :a", {a = w[2]}) end)
        refuses(target[1] .. " positional bind " .. w[1], "bind parameter 1",
          function() return t:execute("SELECT ?", {w[2]}) end)
      end
      refuses(target[1] .. " missing bind", "'a'", function() return t:execute("SELECT :a", {}) end)
      refuses(target[1] .. " too many", "positional", function() return t:execute("SELECT ?", {1, 2}) end)
      -- still usable after all that
      assert.equal(1, t:execute("SELECT 1"):scalar())
    end
    for _, w in ipairs(WRONG) do
      refuses("raw.execute with self " .. w[1], "self", function() return raw.execute(w[2], "SELECT 1") end)
    end
    raw:close()
    conn:close()
  end)

  it("Result methods name their argument", function()
    local c = e:connect()
    local r = c:execute("SELECT 1 AS a UNION SELECT 2")
    for _, w in ipairs(wrong_except("nil", "number")) do
      refuses("fetchmany(" .. w[1] .. ")", "size", function() return r:fetchmany(w[2]) end)
    end
    refuses("fetchmany(-1)", "size", function() return r:fetchmany(-1) end)
    refuses("fetchmany(nan)", "size", function() return r:fetchmany(0 / 0) end)
    for _, w in ipairs(wrong_except("nil", "number", "string")) do
      refuses("scalars(" .. w[1] .. ")", "index", function() return r:scalars(w[2]) end)
    end
    for _, w in ipairs(WRONG) do
      refuses("fetchone with self " .. w[1], "self", function() return r.fetchone(w[2]) end)
    end
    assert.equal(2, #r:all())
    c:close()
  end)

  it("sessionmaker, Session and their configure name what is wrong", function()
    for _, w in ipairs(wrong_except("nil", "table")) do
      refuses("sessionmaker(" .. w[1] .. ")", "sessionmaker", function() return scoped.sessionmaker(w[2]) end)
      refuses("Session(" .. w[1] .. ")", "Session", function() return scoped.Session(w[2]) end)
    end
    for _, w in ipairs(wrong_except("nil")) do
      refuses("sessionmaker{bind = " .. w[1] .. "}", "bind",
        function() return scoped.sessionmaker{bind = w[2]} end)
    end
    refuses("sessionmaker{colour}", "colour", function() return scoped.sessionmaker{colour = 1} end)
    local factory = scoped.sessionmaker{bind = e}
    for _, w in ipairs(wrong_except("nil", "table")) do
      refuses("factory(" .. w[1] .. ")", "sessionmaker", function() return factory(w[2]) end)
    end
    refuses("factory{bind = 1}", "bind", function() return factory{bind = 1} end)
    for _, w in ipairs(wrong_except("nil", "table")) do
      refuses("configure(" .. w[1] .. ")", "configure", function() return factory:configure(w[2]) end)
    end
    factory:configure(nil) -- no options: nothing to change
    refuses("configure{bind = 1}", "bind", function() return factory:configure{bind = 1} end)
    local s = factory()
    for _, w in ipairs(wrong_except("string")) do
      refuses("Session:execute(" .. w[1] .. ")", "statement", function() return s:execute(w[2]) end)
    end
    refuses("Session:execute(sql, 1)", "parameters", function() return s:execute("SELECT 1", 1) end)
    assert.equal(1, s:scalar("SELECT 1"))
    s:close()
    assert.equal(0, e.pool:checkedout())
  end)

  it("scoped_session names the factory and the scopefunc; its configure the options", function()
    for _, w in ipairs(wrong_except("function")) do
      if w[1] ~= "table" then
        refuses("scoped_session(" .. w[1] .. ")", "factory", function() return scoped.scoped_session(w[2]) end)
      end
    end
    refuses("scoped_session({})", "factory", function() return scoped.scoped_session({}) end)
    local factory = scoped.sessionmaker{bind = e}
    for _, w in ipairs(wrong_except("nil", "function")) do
      refuses("scopefunc " .. w[1], "scopefunc", function() return scoped.scoped_session(factory, w[2]) end)
    end
    local S = scoped.scoped_session(factory)
    for _, w in ipairs(wrong_except("nil", "table")) do
      refuses("S.configure(" .. w[1] .. ")", "configure", function() return S.configure(w[2]) end)
    end
    refuses("S(42)", "sessionmaker", function() return S(42) end)
    refuses("S:execute(42)", "statement", function() return S:execute(42) end)
    S.remove()
  end)

  it("event.listen, remove and contains name the target, the event and the listener", function()
    for _, f in ipairs({"listen", "remove", "contains"}) do
      local fn = scoped.event[f]
      for _, w in ipairs(WRONG) do
        if w[1] ~= "table" then
          refuses(f .. "(" .. w[1] .. ")", "target", function() return fn(w[2], "connect", print) end)
        end
        if w[1] ~= "string" then
          refuses(f .. "(e, " .. w[1] .. ")", "event", function() return fn(e, w[2], print) end)
        end
        if w[1] ~= "function" then
          refuses(f .. "(e, 'connect', " .. w[1] .. ")", "listener", function() return fn(e, "connect", w[2]) end)
        end
      end
      refuses(f .. "({})", "target", function() return fn({}, "connect", print) end)
      refuses(f .. "(e, 'nope')", "nope", function() return fn(e, "nope", print) end)
    end
  end)
end)
