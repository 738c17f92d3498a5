local scoped = require "scoped"
local core = require "scoped.core"
local H = require "helper"

describe("scoped_session", function()
  local engine, Factory, Session
  before_each(function()
    engine = scoped.create_engine(H.url, {pool_size = 5, max_overflow = 0, pool_timeout = 5})
    Factory = scoped.sessionmaker{bind = engine}
    Session = scoped.scoped_session(Factory)
  end)
  after_each(function()
    Session.remove()
    collectgarbage(); collectgarbage()
    engine:dispose()
  end)

  it("gives the same session within a coroutine, across calls and yields", function()
    local co = coroutine.wrap(function()
      local a = Session()
      coroutine.yield(a)
      coroutine.yield(Session() == a and a)
    end)
    local first = co()
    assert.equal(first, co())
  end)

  it("gives distinct sessions in distinct coroutines and in the main thread", function()
    local main = Session()
    local other = coroutine.wrap(function() return Session() end)()
    local other2 = coroutine.wrap(function() return Session() end)()
    assert.are_not.equal(main, other)
    assert.are_not.equal(other, other2)
    assert.equal(main, Session())
  end)

  it("remove() closes and forgets; the next Session() is new", function()
    local s = Session()
    Session:execute("SELECT 1")
    assert.equal(1, engine.pool:checkedout())
    Session:remove()
    assert.equal(0, engine.pool:checkedout())
    assert.are_not.equal(s, Session())
    local s2 = Session()
    Session.remove() -- dot form, as in the seed
    assert.are_not.equal(s2, Session())
  end)

  it("registry has / set / clear", function()
    assert.is_false(Session.registry:has())
    local s = Session()
    assert.is_true(Session.registry:has())
    local mine = Factory()
    Session.registry:set(mine)
    assert.equal(mine, Session())
    Session.registry:clear()
    assert.is_false(Session.registry:has())
    assert.are_not.equal(s, Session())
    assert.equal(Session(), Session.registry())
  end)

  it("Session{...} with arguments while one exists raises InvalidRequestError", function()
    Session()
    local err = H.error_of(Session, {bind = engine})
    assert.equal("InvalidRequestError", err.kind)
    assert.equal("Scoped session is already present; no new arguments may be specified.", err.message)
    Session.remove()
    local other = scoped.create_engine(H.url)
    assert.equal(other, Session{bind = other}.bind)
  end)

  it("proxies every Session method, with colon and with dot", function()
    for _, form in ipairs({"colon", "dot"}) do
      local function call(name, ...)
        if form == "colon" then return Session[name](Session, ...) end
        return Session[name](...)
      end
      assert.equal(engine, call("get_bind"))
      assert.is_false(call("in_transaction"))
      assert.equal(1, call("execute", "SELECT 1"):scalar())
      assert.is_true(call("in_transaction"))
      assert.equal(2, call("scalar", "SELECT :v", {v = 2}))
      assert.same({3}, call("scalars", "SELECT 3"):all())
      assert.truthy(call("connection").execute)
      call("commit")
      assert.is_false(call("in_transaction"))
      call("execute", "SELECT 1")
      call("rollback")
      call("execute", "SELECT 1")
      call("close")
      assert.equal(0, engine.pool:checkedout())
      local tx = call("begin")
      tx:commit()
      local sp = call("begin_nested")
      sp:rollback()
      call("close")
      assert.equal(engine, Session.bind)
    end
  end)

  it("configure changes later sessions, and is refused while one exists", function()
    Session()
    assert.equal("InvalidRequestError", H.error_of(Session.configure, Session, {bind = engine}).kind)
    Session.remove()
    local other = scoped.create_engine(H.url)
    Session:configure{bind = other}
    assert.equal(other, Session().bind)
  end)

  it("calls a factory that is not a sessionmaker for every new scope", function()
    local made = 0
    local function factory(kw)
      made = made + 1
      return Factory(kw)
    end
    local callable = setmetatable({}, {__call = function(_, kw) return factory(kw) end})
    for _, f in ipairs({factory, callable}) do
      made = 0
      local S = scoped.scoped_session(f)
      local a = S()
      assert.equal(a, S())
      assert.equal(1, made)
      S.remove()
      assert.are_not.equal(a, S())
      assert.equal(2, made)
      S:execute("SELECT 1") -- a proxied call on an existing scope makes none
      assert.equal(2, made)
      S.remove()
      S:execute("SELECT 1") -- nor does one on a new scope more than once
      assert.equal(3, made)
      S.remove()
    end
  end)

  it("remove() closes the session under a custom scopefunc too: its connection goes back", function()
    local current = "a"
    local S = scoped.scoped_session(Factory, function() return current end)
    S:execute("SELECT 1")
    current = "b"
    S:execute("SELECT 1")
    assert.equal(2, engine.pool:checkedout())
    S.remove() -- scope "b" only
    assert.equal(1, engine.pool:checkedout())
    current = "a"
    S:remove()
    assert.equal(0, engine.pool:checkedout())
    S.remove() -- nothing left in this scope: nothing to do
    assert.equal(0, engine.pool:checkedout())
  end)

  it("takes a custom string scopefunc", function()
    local current = "a"
    local S = scoped.scoped_session(Factory, function() return current end)
    local a = S()
    current = "b"
    local b = S()
    assert.are_not.equal(a, b)
    current = "a"
    assert.equal(a, S())
    S.remove()
    assert.are_not.equal(a, S())
    assert.equal("ArgumentError", H.error_of(scoped.scoped_session, Factory, 42).kind)
    assert.equal("ArgumentError", H.error_of(scoped.scoped_session, 42).kind)
  end)

  it("scopes.coroutine is the default and sees the main thread", function()
    local S = scoped.scoped_session(Factory, scoped.scopes.coroutine)
    assert.equal(S(), S())
    assert.equal(core.current_thread(), scoped.scopes.coroutine())
    assert.is_not_nil(scoped.scopes.coroutine())
    S.remove()
  end)

  it("a dead coroutine's connection is back in the pool after collectgarbage()", function()
    local co = coroutine.create(function()
      Session:execute("SELECT 1")
    end)
    assert.is_true(coroutine.resume(co))
    assert.equal("dead", coroutine.status(co))
    assert.equal(1, engine.pool:checkedout())
    co = nil -- luacheck: ignore
    collectgarbage(); collectgarbage()
    assert.equal(0, engine.pool:checkedout())
  end)

  it("200 interleaved coroutines each see only their own uncommitted rows, all commits land", function()
    local c = engine:connect()
    c:execute("DROP TABLE IF EXISTS scoped_rr")
    c:execute("CREATE TABLE scoped_rr (owner INT, n INT) ENGINE=InnoDB")
    c:commit()
    c:close()
    local e = scoped.create_engine(H.url, {pool_size = 5, max_overflow = 0, pool_timeout = 30,
      pool_wait = function() coroutine.yield() end})
    local S = scoped.scoped_session(scoped.sessionmaker{bind = e})
    local base = H.server_connections()
    local max_server, problems = 0, {}
    local threads = {}
    for i = 1, 200 do
      threads[i] = coroutine.create(function()
        local tx = S:begin()
        S:execute("INSERT INTO scoped_rr VALUES (:o, 1), (:o, 2)", {o = i})
        coroutine.yield()
        local mine = S:scalar("SELECT COUNT(*) FROM scoped_rr WHERE owner = :o", {o = i})
        local total = S:scalar("SELECT COUNT(*) FROM scoped_rr")
        if mine ~= 2 then problems[#problems + 1] = ("%d sees %d own rows"):format(i, mine) end
        tx:commit()
        if total % 2 ~= 0 then problems[#problems + 1] = "saw a half-committed transaction" end
        S:remove()
      end)
    end
    local alive = #threads
    local rounds = 0
    while alive > 0 do
      alive = 0
      rounds = rounds + 1
      for _, co in ipairs(threads) do
        if coroutine.status(co) == "suspended" then
          local ok, err = coroutine.resume(co)
          if not ok then problems[#problems + 1] = tostring(err) end
          if coroutine.status(co) == "suspended" then alive = alive + 1 end
        end
      end
      if rounds % 20 == 0 then max_server = math.max(max_server, H.server_connections() - base) end
    end
    assert.same({}, problems)
    assert.equal(400, H.observer():execute("SELECT COUNT(*) FROM scoped_rr"):scalar())
    assert.equal(200, H.observer():execute("SELECT COUNT(DISTINCT owner) FROM scoped_rr"):scalar())
    assert.equal(0, e.pool:checkedout())
    assert.is_true(e.pool:stats().open <= 5)
    assert.is_true(max_server <= 5)
    e:dispose()
  end)
end)
