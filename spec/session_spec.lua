local scoped = require "scoped"
local H = require "helper"

describe("sessionmaker and Session", function()
  local engine, Factory
  before_each(function()
    engine = scoped.create_engine(H.url, {pool_size = 3, max_overflow = 0, pool_timeout = 1})
    Factory = scoped.sessionmaker{bind = engine}
    local c = engine:connect()
    c:execute("DROP TABLE IF EXISTS sess_t")
    c:execute("CREATE TABLE sess_t (id INT PRIMARY KEY) ENGINE=InnoDB")
    c:commit()
    c:close()
  end)
  after_each(function()
    collectgarbage(); collectgarbage()
    engine:dispose()
  end)

  local function count(where)
    return H.observer():execute("SELECT COUNT(*) FROM sess_t" .. (where or "")):scalar()
  end

  it("takes sessionmaker{bind=} and sessionmaker(engine); refuses unknown options", function()
    assert.equal(engine, scoped.sessionmaker(engine)().bind)
    assert.equal(engine, Factory():get_bind())
    assert.equal("ArgumentError", H.error_of(scoped.sessionmaker, {bind = engine, colour = 1}).kind)
    assert.equal("ArgumentError", H.error_of(Factory, {nope = true}).kind)
    assert.equal("ArgumentError", H.error_of(scoped.sessionmaker, {bind = "x"}).kind)
  end)

  it("factory{bind=other} and configure", function()
    local other = scoped.create_engine(H.url)
    assert.equal(other, Factory{bind = other}.bind)
    Factory:configure{bind = other}
    assert.equal(other, Factory().bind)
  end)

  it("checks out nothing before the first execute, then begins", function()
    local s = Factory()
    assert.equal(0, engine.pool:checkedout())
    assert.is_false(s:in_transaction())
    s:execute("INSERT INTO sess_t VALUES (1)")
    assert.equal(1, engine.pool:checkedout())
    assert.is_true(s:in_transaction())
    assert.equal(0, count()) -- not committed yet
    s:commit()
    assert.equal(0, engine.pool:checkedout())
    assert.equal(1, count())
  end)

  it("rollback undoes and returns the connection; the session stays usable", function()
    local s = Factory()
    s:execute("INSERT INTO sess_t VALUES (2)")
    s:rollback()
    assert.equal(0, engine.pool:checkedout())
    assert.equal(0, count())
    s:execute("INSERT INTO sess_t VALUES (3)")
    s:commit()
    assert.equal(1, count())
  end)

  it("close rolls back, returns the connection, and the session begins anew", function()
    local s = Factory()
    s:execute("INSERT INTO sess_t VALUES (4)")
    s:close()
    assert.equal(0, engine.pool:checkedout())
    assert.equal(0, count())
    assert.equal(1, s:scalar("SELECT 1"))
    s:close()
  end)

  it("scalar, scalars and connection", function()
    local s = Factory()
    assert.equal(5, s:scalar("SELECT :v", {v = 5}))
    assert.same({1, 2}, s:scalars("SELECT 1 UNION SELECT 2"):all())
    local conn = s:connection()
    assert.equal(conn, s:connection())
    assert.equal(s:scalar("SELECT CONNECTION_ID()"), conn:scalar("SELECT CONNECTION_ID()"))
    s:close()
  end)

  it("begin() gives a SessionTransaction; a second begin is refused", function()
    local s = Factory()
    local tx = s:begin()
    assert.is_true(tx.is_active)
    local err = H.error_of(s.begin, s)
    assert.equal("InvalidRequestError", err.kind)
    s:execute("INSERT INTO sess_t VALUES (5)")
    tx:commit()
    assert.is_false(tx.is_active)
    assert.equal(1, count())
    tx = s:begin()
    s:execute("INSERT INTO sess_t VALUES (6)")
    tx:rollback()
    assert.equal(1, count())
  end)

  it("begin_nested() makes nestable savepoints", function()
    local s = Factory()
    s:execute("INSERT INTO sess_t VALUES (10)")
    local sp = s:begin_nested()
    s:execute("INSERT INTO sess_t VALUES (11)")
    local sp2 = s:begin_nested()
    s:execute("INSERT INTO sess_t VALUES (12)")
    sp2:rollback()
    sp:commit()
    s:commit()
    assert.same({10, 11}, H.observer():execute("SELECT id FROM sess_t ORDER BY id"):scalars():all())
  end)

  if _VERSION == "Lua 5.4" then
    it("sessions and transactions work as <close> variables", function()
      local chunk = assert(load([[
        local Factory = ...
        do
          local s <close> = Factory()
          s:execute("INSERT INTO sess_t VALUES (20)") -- closed: rolled back
        end
        do
          local s = Factory()
          do
            local tx <close> = s:begin()
            s:execute("INSERT INTO sess_t VALUES (21)")
          end
          pcall(function()
            local tx <close> = s:begin()
            s:execute("INSERT INTO sess_t VALUES (22)")
            error("boom")
          end)
        end
      ]]))
      chunk(Factory)
      assert.same({21}, H.observer():execute("SELECT id FROM sess_t"):scalars():all())
      assert.equal(0, engine.pool:checkedout())
    end)
  end

  it("a session dropped without close returns its connection once collected, rolled back", function()
    do
      local s = Factory()
      s:execute("INSERT INTO sess_t VALUES (30)")
    end
    collectgarbage(); collectgarbage()
    assert.equal(0, engine.pool:checkedout())
    local s = Factory()
    assert.equal(0, s:scalar("SELECT COUNT(*) FROM sess_t"))
    s:close()
  end)

  it("a failed statement leaves the session where rollback() works, and never poisons the pool", function()
    local s = Factory()
    s:execute("INSERT INTO sess_t VALUES (40)")
    local err = H.error_of(s.execute, s, "INSERT INTO sess_t VALUES (40)")
    assert.equal("IntegrityError", err.kind)
    s:rollback()
    assert.equal(0, engine.pool:checkedout())
    s:execute("INSERT INTO sess_t VALUES (41)")
    s:commit()
    assert.same({41}, H.observer():execute("SELECT id FROM sess_t"):scalars():all())
    local others = {}
    for i = 1, 3 do
      others[i] = Factory()
      assert.is_false(others[i]:connection().raw:in_transaction())
    end
    for i = 1, 3 do others[i]:close() end
  end)

  it("an uncommitted insert is invisible to another session", function()
    local a, b = Factory(), Factory()
    a:execute("INSERT INTO sess_t VALUES (50)")
    assert.equal(0, b:scalar("SELECT COUNT(*) FROM sess_t"))
    a:commit()
    b:commit() -- end b's snapshot
    assert.equal(1, b:scalar("SELECT COUNT(*) FROM sess_t"))
    b:close()
  end)
end)
