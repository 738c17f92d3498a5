-- fork() with a connection checked out (issue 17, finding 5): a child must
-- never run a statement on the parent's connection, whose socket it shares
-- (both read each other's results: 2 runs in 20 swapped results silently,
-- one hung). Every statement checks the process id first (the cached one,
-- csrc/pid.c) and the child gets InvalidRequestError saying what to do; its
-- rollback(), close(), Session:close() let the connection go without a word
-- to the server, and the next checkout in the child opens a connection of
-- its own. The parent's connection and transaction are untouched.
local scoped = require "scoped"
local H = require "helper"
local posix = require "support.posix"

-- Runs child() in a forked child; returns nil when it passed, else its
-- failure message. The child writes "ok" or its error to a file: the file
-- decides, not the exit status, which valgrind turns to 1 for the leaks it
-- finds in a child that ends by _exit (all of Lua's memory, still held).
local function in_child(child)
  local report = os.tmpname()
  io.stdout:flush()
  io.stderr:flush()
  local pid = assert(posix.fork())
  if pid == 0 then
    local ok, err = pcall(child)
    local f = io.open(report, "w")
    if f then
      f:write(ok and "ok" or type(err) == "table" and tostring(err.kind) .. ": " .. tostring(err.message)
        or tostring(err))
      f:close()
    end
    posix._exit(ok and 0 or 1)
  end
  local how, status = posix.wait(pid)
  local f = io.open(report)
  local msg = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(report)
  if msg == "ok" then return nil end
  return string.format("child %s with %s: %s", tostring(how), tostring(status), msg)
end

-- err must be the child's InvalidRequestError that names the fork and the remedy
local function is_fork_error(err, what)
  assert(type(err) == "table", what .. ": not an error table: " .. tostring(err))
  assert(err.kind == "InvalidRequestError", what .. ": " .. tostring(err.kind) .. ": " .. tostring(err.message))
  assert(err.message:find("a fork of it", 1, true), what .. ": " .. err.message)
  assert(err.message:find("engine:dispose()", 1, true), what .. ": " .. err.message)
end

local function error_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, got none")
  return err
end

describe("fork (" .. posix.via .. ")", function()
  local engine
  setup(function()
    local c = H.raw()
    c:execute("CREATE TABLE IF NOT EXISTS fork_t (id INT PRIMARY KEY) ENGINE=InnoDB")
    c:execute("DELETE FROM fork_t")
    c:commit()
    c:close()
  end)
  before_each(function()
    engine = scoped.create_engine(H.url, {pool_size = 2, max_overflow = 0, pool_timeout = 5})
  end)
  after_each(function()
    collectgarbage(); collectgarbage() -- what a failed test left checked out goes back, rolled back
    engine:dispose()
  end)
  teardown(function()
    local c = H.raw()
    c:execute("DROP TABLE IF EXISTS fork_t")
    c:close()
  end)

  it("a child's statements on the parent's checked-out Connection raise; the parent's transaction is intact", function()
    local conn = engine:connect()
    local parent_id = conn:scalar("SELECT CONNECTION_ID()")
    conn:execute("INSERT INTO fork_t VALUES (1)") -- the parent's open transaction
    local failure = in_child(function()
      is_fork_error(error_of(conn.execute, conn, "SELECT 'child'"), "execute")
      -- again: every statement meets the check (and nothing else is tried)
      is_fork_error(error_of(conn.execute, conn, "SELECT 1"), "execute, twice")
      assert.equal("PendingRollbackError", error_of(conn.commit, conn).kind)
      conn:rollback() -- nothing is sent: the parent's transaction is the parent's
      -- the next statement checks out a connection of the child's own
      local child_id = conn:scalar("SELECT CONNECTION_ID()")
      assert(child_id ~= parent_id, "the child got the parent's connection")
      assert.equal(0, conn:scalar("SELECT COUNT(*) FROM fork_t")) -- not the parent's uncommitted row
      conn:close()
      engine:dispose()
      local again = engine:connect()
      assert.equal(1, again:scalar("SELECT 1"))
      again:close()
    end)
    assert.is_nil(failure, failure)
    -- the parent's connection answers with its own results, its transaction going on
    assert.equal(parent_id, conn:scalar("SELECT CONNECTION_ID()"))
    assert.equal(1, conn:scalar("SELECT COUNT(*) FROM fork_t"))
    assert.is_true(H.connection_alive(parent_id))
    conn:rollback()
    conn:close()
  end)

  it("raw connections too (pooled and raw_connect); their rollback and close send nothing", function()
    local conn = engine:connect()
    local raw = conn:get_raw()
    local parent_id = raw:thread_id()
    conn:execute("INSERT INTO fork_t VALUES (2)")
    local standalone = H.raw()
    local standalone_id = standalone:thread_id()
    local failure = in_child(function()
      is_fork_error(error_of(standalone.execute, standalone, "SELECT 1"), "raw_connect's execute")
      standalone:close() -- discarded: no COM_QUIT on the parent's socket
      is_fork_error(error_of(raw.exec_driver_sql, raw, "SELECT 1"), "exec_driver_sql")
      assert.is_true(raw:is_invalidated())
      raw:rollback() -- silent
      raw:close()    -- discarded
      -- the child's pool has connections of its own
      local mine = engine.pool._cpool:checkout()
      assert(mine:thread_id() ~= parent_id)
      mine:close()
    end)
    assert.is_nil(failure, failure)
    assert.is_true(H.connection_alive(parent_id))
    assert.is_true(H.connection_alive(standalone_id))
    assert.equal(parent_id, conn:scalar("SELECT CONNECTION_ID()"))
    assert.equal(1, conn:scalar("SELECT COUNT(*) FROM fork_t WHERE id = 2"))
    assert.equal(1, standalone:execute("SELECT 1"):scalar())
    conn:rollback()
    conn:close()
    standalone:close()
  end)

  it("each statement kind is refused in a child, one fork each", function()
    local cases = {
      {"execute", function(r) return r:execute("SELECT 1") end},
      {"execute with binds", function(r) return r:execute("SELECT :x", {x = 1}) end},
      {"exec_driver_sql", function(r) return r:exec_driver_sql("SELECT 1") end},
      {"executemany", function(r) return r:executemany("INSERT INTO fork_t VALUES (?)", {{3}, {4}}) end},
      {"commit", function(r) return r:commit() end},
      {"ping", function(r) return r:ping() end},
      {"finish(commit)", function(r) return r:finish(true) end},
    }
    for _, case in ipairs(cases) do
      local raw = engine.pool._cpool:checkout()
      local id = raw:thread_id()
      raw:execute("SELECT 1")
      local failure = in_child(function()
        is_fork_error(error_of(case[2], raw), case[1])
      end)
      assert.is_nil(failure, case[1] .. ": " .. tostring(failure))
      assert.is_true(H.connection_alive(id), case[1])
      assert.equal(id, raw:execute("SELECT CONNECTION_ID()"):scalar(), case[1])
      raw:close()
    end
  end)

  it("a Session's fast path in a child: execute and commit raise, rollback lets go, then a new connection", function()
    local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
    local parent_id = Session:scalar("SELECT CONNECTION_ID()")
    Session:execute("INSERT INTO fork_t VALUES (5)")
    local failure = in_child(function()
      is_fork_error(error_of(Session.execute, Session, "SELECT 1"), "Session:execute")
      Session:rollback() -- nothing sent
      local child_id = Session:scalar("SELECT CONNECTION_ID()")
      assert(child_id ~= parent_id, "the child's session got the parent's connection")
      Session:commit()
      Session:remove()
    end)
    assert.is_nil(failure, failure)
    local failure2 = in_child(function()
      is_fork_error(error_of(Session.commit, Session), "Session:commit")
      Session:remove()
    end)
    assert.is_nil(failure2, failure2)
    assert.equal(parent_id, Session:scalar("SELECT CONNECTION_ID()"))
    assert.equal(1, Session:scalar("SELECT COUNT(*) FROM fork_t WHERE id = 5"))
    Session:rollback()
    Session:remove()
  end)
end)
