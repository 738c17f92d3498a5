-- scoped.retry: a unit of work refused by a deadlock is redone in a fresh
-- session (the deadlock provoked for real against the independent client,
-- with the non-blocking driver letting both run in one thread); other
-- errors are raised at once; a COMMIT of unknown outcome is not redone
-- unless the unit is idempotent. Checked on the server's ledger.
local scoped = require "scoped"
local H = require "helper"
local I = require "support.independent"

local has_cq, cqueues = pcall(require, "cqueues")

local obs
setup(function()
  assert(I.available, I.why)
  obs = I.connect()
  obs:run("DROP TABLE IF EXISTS rt_ledger")
  obs:run("CREATE TABLE rt_ledger (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB")
  obs:run("DROP TABLE IF EXISTS rt_pad")
  obs:run("CREATE TABLE rt_pad (id INT PRIMARY KEY) ENGINE=InnoDB")
end)
teardown(function()
  if obs then
    obs:exec("DROP TABLE IF EXISTS rt_ledger")
    obs:exec("DROP TABLE IF EXISTS rt_pad")
    obs:close()
  end
end)
before_each(function()
  obs:run("DELETE FROM rt_ledger")
  obs:run("DELETE FROM rt_pad")
  obs:run("INSERT INTO rt_ledger VALUES (1, 0), (2, 0)")
end)

describe("scoped.retry", function()
  it("a deadlock victim's unit of work is redone in a fresh session; the ledger is exact", function()
    assert(has_cq, "lua-cqueues is not installed")
    local engine = scoped.create_engine(H.url, scoped.nonblocking.cqueues{pool_size = 2})
    local Session = scoped.sessionmaker{bind = engine}
    -- the other side of the deadlock, made the heavier transaction (100 rows
    -- inserted) so that InnoDB picks scoped's as the victim
    local holder = I.connect()
    holder:autocommit(false)
    local pad = {}
    for i = 1, 100 do pad[i] = "(" .. i .. ")" end
    holder:run("INSERT INTO rt_pad VALUES " .. table.concat(pad, ","))
    local cq = cqueues.new()
    local a_has_1, b_has_2 = false, false
    local calls, sum, attempts, seen = 0, nil, nil, {}
    cq:wrap(function()
      sum, attempts = scoped.retry(function(s)
        calls = calls + 1
        s:execute("UPDATE rt_ledger SET n = n + 1 WHERE id = 1")
        if calls == 1 then
          a_has_1 = true
          while not b_has_2 do cqueues.sleep(0.01) end
        end
        s:execute("UPDATE rt_ledger SET n = n + 1 WHERE id = 2") -- waits for the holder
        return s:execute("SELECT SUM(n) FROM rt_ledger"):scalar()
      end, {sessionmaker = Session, on_retry = function(err) seen[#seen + 1] = err.code end})
    end)
    cq:wrap(function()
      while not a_has_1 do cqueues.sleep(0.01) end
      holder:run("UPDATE rt_ledger SET n = n + 10 WHERE id = 2")
      b_has_2 = true
      cqueues.sleep(0.2) -- scoped's UPDATE of row 2 is waiting now
      holder:run("UPDATE rt_ledger SET n = n + 10 WHERE id = 1") -- the cycle: one of the two goes
      assert(holder:commit())
    end)
    local ok, e = cq:loop()
    holder:close()
    assert(ok, e)
    assert.same({1213}, seen)
    assert.equal(2, attempts)
    assert.equal(2, calls)
    assert.equal("22", sum) -- SUM() of INT is a DECIMAL: a string
    assert.same({{id = "1", n = "11"}, {id = "2", n = "11"}}, obs:rows("SELECT id, n FROM rt_ledger ORDER BY id"))
    assert.equal(0, engine.pool:stats().checkedout)
    engine:dispose()
  end)

  it("an error not in codes is raised at once, the unit rolled back", function()
    local engine = scoped.create_engine(H.url)
    local Session = scoped.sessionmaker{bind = engine}
    local calls = 0
    local err = H.error_of(scoped.retry, function(s)
      calls = calls + 1
      s:execute("UPDATE rt_ledger SET n = 5 WHERE id = 1")
      s:execute("INSERT INTO rt_ledger VALUES (2, 0)") -- duplicate key
    end, {sessionmaker = Session})
    assert.equal(1062, err.code)
    assert.equal(1, calls)
    assert.equal("0", obs:scalar("SELECT n FROM rt_ledger WHERE id = 1"))
    assert.equal(0, engine.pool:stats().checkedout)
    engine:dispose()
  end)

  it("attempts run out: the last error is raised after exactly that many", function()
    local engine = scoped.create_engine(H.url)
    local Session = scoped.sessionmaker{bind = engine}
    local calls = 0
    local err = H.error_of(scoped.retry, function(s)
      calls = calls + 1
      s:execute("SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'a deadlock each time'")
    end, {sessionmaker = Session, attempts = 4})
    assert.equal(1213, err.code)
    assert.equal(4, calls)
    engine:dispose()
  end)

  it("a COMMIT whose connection died is not redone (commit_unknown) unless idempotent", function()
    local engine = scoped.create_engine(H.url)
    local Session = scoped.sessionmaker{bind = engine}
    local DISCONNECTS = {2006, 2013, 1927}
    local function unit(s)
      s:execute("UPDATE rt_ledger SET n = n + 1 WHERE id = 1")
      local tid = s:connection().raw:thread_id()
      obs:exec("KILL CONNECTION " .. tid) -- it dies before the COMMIT's reply
      assert.is_true(H.connection_gone(tid))
    end
    local calls = 0
    local err = H.error_of(scoped.retry, function(s) calls = calls + 1; unit(s) end,
      {sessionmaker = Session, codes = DISCONNECTS})
    assert.is_true(err.commit_unknown == true, tostring(err))
    assert.equal(1, calls)
    calls = 0
    err = H.error_of(scoped.retry, function(s) calls = calls + 1; unit(s) end,
      {sessionmaker = Session, codes = DISCONNECTS, idempotent = true, attempts = 2})
    assert.is_true(err.commit_unknown == true)
    assert.equal(2, calls)
    assert.equal("0", obs:scalar("SELECT n FROM rt_ledger WHERE id = 1")) -- the server rolled each back
    engine:dispose()
  end)

  it("counts redone and given-up units on the session's engine, fires retry without bound values", function()
    local engine = scoped.create_engine(H.url)
    local Session = scoped.sessionmaker{bind = engine}
    local seen = {}
    scoped.event.listen(engine, "retry", function(info) seen[#seen + 1] = info end)
    assert.is_true(engine._fast) -- a retry listener leaves the engine's paths as they are
    local calls = 0
    local _, attempts = scoped.retry(function(s)
      calls = calls + 1
      s:execute("UPDATE rt_ledger SET n = n + 1 WHERE id = :id", {id = 1})
      if calls < 3 then
        -- 1305: FUNCTION no_such_function does not exist
        s:execute("SELECT :secret, no_such_function()", {secret = "s3cr3t-value"})
      end
    end, {sessionmaker = Session, codes = {1305}, attempts = 3})
    assert.equal(3, attempts)
    assert.equal("1", obs:scalar("SELECT n FROM rt_ledger WHERE id = 1")) -- 2 rolled back, 1 committed
    local c = scoped.metrics.counters(engine)
    assert.equal(2, c.retries)
    assert.equal(0, c.retries_exhausted)
    assert.equal(2, #seen)
    for i, info in ipairs(seen) do
      assert.equal(i, info.attempt)
      assert.equal(1305, info.code)
      assert.equal("42000", info.sqlstate)
      assert.equal(3, info.attempts)
      for k, v in pairs(info) do
        assert.is_nil(tostring(v):find("s3cr3t", 1, true), k)
        assert.is_nil(tostring(v):find("scoped_test", 1, true), k)
      end
    end
    -- given up after the last attempt; an error not retried counts nothing
    H.error_of(scoped.retry, function(s)
      s:execute("SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'a deadlock each time'")
    end, {sessionmaker = Session, attempts = 2})
    H.error_of(scoped.retry, function(s) s:execute("INSERT INTO rt_ledger VALUES (2, 0)") end,
      {sessionmaker = Session})
    c = scoped.metrics.counters(engine)
    assert.equal(3, c.retries)
    assert.equal(1, c.retries_exhausted)
    assert.equal(3, #seen)
    -- and in the Prometheus text
    local text = scoped.metrics.prometheus(engine)
    assert.truthy(text:find("\nscoped_retries_total{engine=\"[^\n]*\"} 3\n"), text)
    assert.truthy(text:find("\nscoped_retries_exhausted_total{engine=\"[^\n]*\"} 1\n"), text)
    engine:dispose()
  end)

  it("a retry listener's error stops the retrying, raised to the caller", function()
    local engine = scoped.create_engine(H.url)
    local Session = scoped.sessionmaker{bind = engine}
    scoped.event.listen(engine, "retry", function() error("listener says no", 0) end)
    local calls = 0
    local err = H.error_of(scoped.retry, function(s)
      calls = calls + 1
      s:execute("SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'a deadlock'")
    end, {sessionmaker = Session})
    assert.equal("listener says no", err)
    assert.equal(1, calls)
    assert.equal(0, engine.pool:stats().checkedout)
    engine:dispose()
  end)

  it("checks its arguments", function()
    assert.equal("ArgumentError", H.error_of(scoped.retry, nil, {}).kind)
    assert.equal("ArgumentError", H.error_of(scoped.retry, function() end).kind)
    assert.equal("ArgumentError", H.error_of(scoped.retry, function() end, {}).kind)
    assert.equal("ArgumentError", H.error_of(scoped.retry, function() end,
      {sessionmaker = function() end, attempts = 0}).kind)
  end)
end)
