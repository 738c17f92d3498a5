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

  -- A session on a plain engine runs on the RawConnection itself (session.lua's
  -- fast path); these pin down that it behaves as the Connection path does.
  describe("on a plain engine (the raw-connection fast path)", function()
    local function server_counter(raw, name)
      return tonumber(raw:execute("SHOW SESSION STATUS LIKE '" .. name .. "'"):all()[1][2])
    end

    it("commit sends COMMIT and returns the connection; the session is reusable", function()
      local s = Factory()
      s:execute("INSERT INTO sess_t VALUES (1)")
      assert.is_true(s:in_transaction())
      assert.equal(1, engine.pool:checkedout())
      s:commit()
      assert.is_false(s:in_transaction())
      assert.equal(0, engine.pool:checkedout())
      assert.equal(1, count())
      s:execute("INSERT INTO sess_t VALUES (2)")
      s:rollback()
      assert.equal(0, engine.pool:checkedout())
      assert.equal(1, count())
    end)

    it("commit after a table-less SELECT still sends COMMIT (the server counts it)", function()
      local e = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0}) -- one server session
      local s = scoped.sessionmaker{bind = e}()
      local function commits()
        local c = e:connect()
        local n = server_counter(c.raw, "Com_commit")
        c:close()
        return n
      end
      local before = commits()
      s:execute("SELECT 1"):all()
      s:commit()
      assert.equal(before + 1, commits())
      s:execute("SELECT 1"):all()
      s:close() -- no transaction open on the server: nothing to roll back, nothing sent
      assert.equal(before + 1, commits())
      e:dispose()
    end)

    it("connection() mid-transaction hands over the same server session, still in the transaction", function()
      local s = Factory()
      s:execute("INSERT INTO sess_t VALUES (3)")
      local id = s:execute("SELECT CONNECTION_ID()"):scalar()
      local conn = s:connection()
      assert.is_true(conn:in_transaction())
      assert.equal(id, conn:scalar("SELECT CONNECTION_ID()"))
      conn:execute("INSERT INTO sess_t VALUES (4)")
      s:rollback() -- both rows were one transaction
      assert.equal(0, count())
      assert.is_true(conn.closed)
      assert.equal(0, engine.pool:checkedout())
    end)

    it("begin_nested() after statements takes a savepoint in the same transaction", function()
      local s = Factory()
      s:execute("INSERT INTO sess_t VALUES (5)")
      local sp = s:begin_nested()
      s:execute("INSERT INTO sess_t VALUES (6)")
      sp:rollback()
      s:commit()
      assert.equal(1, count())
      assert.equal(1, count(" WHERE id = 5"))
    end)

    it("echo switched on mid-session logs the next statement", function()
      local lines = {}
      local e = scoped.create_engine(H.url, {logger = function(_, l) lines[#lines + 1] = l end})
      local s = scoped.sessionmaker{bind = e}()
      s:execute("SELECT 1")
      e.echo = true
      s:execute("SELECT 2")
      s:commit()
      e.echo = false
      assert.truthy(table.concat(lines, "\n"):find("SELECT 2", 1, true))
      assert.falsy(table.concat(lines, "\n"):find("SELECT 1", 1, true))
      assert.truthy(table.concat(lines, "\n"):find("COMMIT", 1, true))
      e:dispose()
    end)

    it("a listener added mid-session sees the checkin", function()
      local e = scoped.create_engine(H.url)
      local s = scoped.sessionmaker{bind = e}()
      s:execute("SELECT 1")
      local checkins = 0
      scoped.event.listen(e, "checkin", function() checkins = checkins + 1 end)
      s:commit()
      assert.equal(1, checkins)
      e:dispose()
    end)

    it("commit after the connection was killed raises, discards it, and the session refuses statements until rollback()", function()
      local s = Factory()
      s:execute("INSERT INTO sess_t VALUES (7)")
      local id = s:execute("SELECT CONNECTION_ID()"):scalar()
      H.observer():execute("KILL " .. id)
      H.sleep(0.05)
      local err = H.error_of(s.execute, s, "SELECT 1")
      assert.equal("OperationalError", err.kind)
      err = H.error_of(s.commit, s)
      assert.equal("PendingRollbackError", err.kind)
      assert.truthy(tostring(err):find("Can't reconnect until invalid transaction is rolled back", 1, true))
      assert.equal(0, engine.pool:checkedout())
      -- a statement now would run outside the transaction the caller
      -- believes in: refused until rollback()
      assert.equal("PendingRollbackError", H.error_of(s.execute, s, "SELECT 1").kind)
      assert.equal("PendingRollbackError", H.error_of(s.commit, s).kind)
      assert.equal(0, engine.pool:checkedout())
      s:rollback()
      assert.equal(1, s:execute("SELECT 1"):scalar())
      s:close()
      assert.equal(0, count())
    end)

    it("reuses the RawConnection userdata of a finished fast-path checkout, and only that one", function()
      local cpool = engine._cpool
      local r1 = cpool:checkout_spare()
      r1:finish(false, true)
      assert.is_true(r1:closed())
      local r2 = cpool:checkout_spare()
      assert.equal(r1, r2) -- the same userdata, filled again
      assert.equal(1, r2:execute("SELECT 1"):scalar())
      r2:finish(true, true)
      local plain = cpool:checkout() -- an ordinary checkout is never kept
      plain:finish(false, true)
      local r3 = cpool:checkout_spare()
      assert.are_not.equal(plain, r3)
      assert.is_true(plain:closed())
      r3:finish(false, true)
      assert.equal(0, engine.pool:checkedout())
    end)

    it("never reuses a RawConnection that user code got hold of (connection())", function()
      local s = Factory()
      s:execute("SELECT 1")
      local held = s:connection().raw -- pinned on the way out
      held:finish(false, true) -- a misuse: must not put it in the spare list
      local s2 = Factory()
      s2:execute("SELECT 1")
      assert.is_true(held:closed())
      assert.are_not.equal(held, s2._raw)
      s2:close()
      assert.equal("ResourceClosedError", H.error_of(s.execute, s, "SELECT 1").kind)
      pcall(s.close, s) -- its raw connection was closed under it: close() says so, and lets go
      assert.equal(0, engine.pool:checkedout())
    end)

    it("a session dropped while holding its connection gives it back when collected", function()
      local s = Factory()
      s:execute("SELECT 1")
      assert.equal(1, engine.pool:checkedout())
      s = nil -- luacheck: ignore
      collectgarbage(); collectgarbage()
      assert.equal(0, engine.pool:checkedout())
    end)
  end)
end)
