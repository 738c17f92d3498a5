-- The state model (issue 16): a randomized, seeded, model-checked test of
-- transaction state across the pool, Connection, Session and scoped_session.
--
-- A few coroutines share one small engine. A scheduler driven by a PRNG of
-- its own (the same sequence on Lua 5.4 and LuaJIT, so a seed and a step
-- count fully determine a run) picks a coroutine and an action: ledger
-- inserts, statements failing in each of the usual ways, savepoints,
-- commit / rollback / close / remove / invalidate, KILL QUERY and KILL
-- CONNECTION from outside, lock waits, deadlocks, abandoned coroutines. A
-- model predicts each action's outcome (which error, which rows survive),
-- by the transaction-state rules of issue 16 (SQLAlchemy 2.0's):
--
--   * a statement error other than a disconnect leaves the transaction
--     going; the server drops only the failed statement (1062, 1064, 1054,
--     1205, 1317, 1969), except a deadlock (1213), which rolls back the
--     whole server transaction;
--   * a disconnect inside a transaction (a KILLed connection), a failed
--     COMMIT and invalidate() inside a transaction leave it "pending
--     rollback": every statement and commit() raise PendingRollbackError
--     until rollback(), which succeeds; then the unit works again;
--   * rollback(), close(), Session:remove() roll back whatever the pool's
--     reset mode (a failed first statement included); a Session gives its
--     connection back at commit, rollback, close;
--   * stale savepoint handles never act: a Connection's commit() raises
--     InvalidRequestError and its rollback() does nothing (a Session's may
--     refuse both with an InvalidRequestError, as SQLAlchemy's ORM does);
--   * a checkout when every connection is held raises TimeoutError and
--     changes nothing; a Session checks out at its first statement only;
--   * an abandoned unit's connection comes back to the pool when its
--     coroutine is collected, rolled back (committed under
--     pool_reset_on_return="commit"; left as is under false, so the
--     scheduler does not abandon a unit that may hold a transaction there).
--
-- After every step the server is asked, through an independent client
-- (LuaSQL, spec/support/independent.lua, never the module under test):
--   1. no idle connection of the engine holds an InnoDB transaction
--      (SHOW ENGINE INNODB STATUS every step: information_schema.INNODB_TRX
--      is a cache InnoDB refreshes at most every 0.1 s, so it is read only
--      at checkpoints, after a pause);
--   2. no idle connection holds a metadata lock (metadata_lock_info);
--   3. the server has as many connections of the engine as the pool counts
--      open (NullPool: as the units hold), and the pool's checked-out count
--      is what the units hold;
--   4. the ledger has every committed row and no row that was never
--      committed (every few steps and at the end).
-- Inside a unit, "read" checks that it sees exactly its own uncommitted
-- rows, "probe" that its connection runs with init_command's settings and
-- autocommit off, and after every step in_transaction() is compared with
-- the model.
-- The engine connects as a user of its own (made in setup: the test
-- server's account must be allowed to create users, as the throwaway
-- server's root is), so "the engine's connections" are the PROCESSLIST rows
-- of that user, whatever else talks to the server.
--
-- Replay a failure with what its message prints:
--   SCOPED_STATE_SEED=<seed> SCOPED_STATE_STEPS=<step> SCOPED_STATE_VARIANT=<name> busted spec/state_model_spec.lua
-- SCOPED_SOAK=1 (make soak) runs 20 seeds x 4000 steps per variant.
local scoped = require "scoped"
local core = require "scoped.core"
local exc = require "scoped.exc"
local I = require "support.independent"
local proc = require "support.proc"

local SOAK = os.getenv("SCOPED_SOAK") == "1"
local ENV_SEED = tonumber(os.getenv("SCOPED_STATE_SEED") or "")
local ENV_STEPS = tonumber(os.getenv("SCOPED_STATE_STEPS") or "")
local ONLY = os.getenv("SCOPED_STATE_VARIANT")

-- `make test` runs each variant on one fixed seed of its own (under a
-- second each; fewer steps under ASan and valgrind, SCOPED_SLOW=1); the soak
-- run 20 seeds each, much longer.
local SLOW = os.getenv("SCOPED_SLOW") == "1"
local STEPS = ENV_STEPS or (SOAK and 4000 or SLOW and 100 or 250)
local function seeds_for(k) -- the k-th variant's
  if ENV_SEED then return {ENV_SEED} end
  if not SOAK then return {100 + k} end
  local t = {}
  for i = 1, 20 do t[i] = 1000 * i + k end
  return t
end
local LEDGER_EVERY = SOAK and 10 or 5   -- steps between ledger checks
local TRX_EVERY = SOAK and 500 or 100   -- steps between INNODB_TRX checkpoints (each costs 0.11 s)

local now = core.monotonic
local has_socket, socket = pcall(require, "socket")
local function sleep(s)
  if has_socket then socket.sleep(s) else os.execute("sleep " .. s) end
end

-- ---- the PRNG ---------------------------------------------------------------
-- Park-Miller "minimal standard" (x * 48271 mod 2^31-1): every product is
-- below 2^47, exact as a double (LuaJIT) and as an integer (Lua 5.4), so
-- both runtimes draw the same sequence from the same seed.
local M31 = 2147483647
local Rng = {}
Rng.__index = Rng

local function new_rng(seed)
  local r = setmetatable({x = math.fmod(math.abs(math.floor(seed)), M31 - 1) + 1}, Rng)
  for _ = 1, 4 do r:next() end -- small seeds start small: stir a little
  return r
end
function Rng:next()
  self.x = math.fmod(self.x * 48271, M31)
  return self.x
end
function Rng:below(n) return math.floor(math.fmod(self:next(), n)) end -- 0 .. n-1
function Rng:chance(p) return self:next() / M31 < p end
function Rng:pick(list) return list[self:below(#list) + 1] end

-- ---- fixed data ---------------------------------------------------------------

local UNIT_ROWS = 3                       -- state_lock rows the units lock (1..3)
local HEAVY_FIRST, HEAVY_LAST = 21, 120   -- rows only the deadlock helper locks (it must outweigh the unit)
local SENTINEL_FIRST, SENTINEL_ROWS = 121, 9  -- rows the INNODB_TRX freshness sentinel updates
local SEEDED = {"a0", "a1", "a2"}         -- committed before each run: targets for duplicate keys
local INIT = "SET SESSION innodb_lock_wait_timeout = 0" -- a lock wait fails at once (1205), no 1 s wait

local SQL = {
  insert = "INSERT INTO state_ledger (tag, slot) VALUES (:tag, :slot)",
  syntax = "SELEC tag FROM state_ledger",
  unknown_col = "INSERT INTO state_ledger (tag, nocol) VALUES (:tag, 1)",
  -- the subquery opens the ledger (a read view and a metadata lock) before
  -- the 1 ms timer fires; SLEEP(2), not less, so that a timer thread late on
  -- a loaded machine still finds the statement running
  max_time = "SET STATEMENT max_statement_time = 0.001 FOR SELECT SLEEP(2), (SELECT COUNT(*) FROM state_ledger)",
  read = "SELECT COUNT(*) FROM state_ledger WHERE tag IN :tags",
  probe = "SELECT @@SESSION.innodb_lock_wait_timeout, @@SESSION.autocommit, @sm_mark",
  mark = "SET @sm_mark = :n",
  lock = "UPDATE state_lock SET v = v + 1 WHERE id = :r",
  -- killed long before it ends (a helper process polls for it)
  long = "SELECT SLEEP(20), (SELECT COUNT(*) FROM state_ledger)",
  deadlock = "SET STATEMENT innodb_lock_wait_timeout = 10 FOR UPDATE state_lock SET v = v + 1 WHERE id = :r",
}

-- obs, user, password, mdl: set in setup; ran: action name -> times run;
-- passed: runs that went to their end
local SUITE = {ran = {}, passed = 0}

-- ---- the workers ----------------------------------------------------------------
-- One coroutine per slot: it owns its unit of work (a scoped_session scope,
-- which is the coroutine itself, or a Connection) and its savepoint
-- handles, and runs one command per resume. Only plain data comes back, so
-- that dropping the coroutine drops the last reference to its unit.

local function describe_err(e)
  if type(e) ~= "table" then return {kind = "LuaError", text = tostring(e)} end
  return {kind = e.kind, code = e.code, invalidated = e.connection_invalidated,
    dbapi = exc.is(e, "DBAPIError"), invalid_request = exc.is(e, "InvalidRequestError"), text = tostring(e)}
end

local function new_worker(engine, Session)
  return coroutine.create(function(cmd)
    local kind, conn         -- "session" or "conn"; the Connection of a "conn" unit
    local handles = {}       -- savepoint handles by the model's id
    local function target() if kind == "conn" then return conn end return Session end

    local function perform(c)
      local op = c.op
      if op == "open" then
        if c.kind == "conn" then conn = engine:connect() end
        kind, handles = c.kind, {}
      elseif op == "exec" then
        local r = target():execute(c.sql, c.params)
        if c.want == "scalar" then return r:scalar() end
        if c.want == "row" then
          local row = r:first()
          return {row[1], row[2], row[3]}
        end
      elseif op == "commit" then target():commit()
      elseif op == "rollback" then target():rollback()
      elseif op == "close" then
        local t = target()
        if kind == "conn" then kind, conn = nil, nil end -- a closed Connection ends the unit
        t:close()
      elseif op == "remove" then
        kind = nil
        Session:remove()
      elseif op == "invalidate" then conn:invalidate()
      elseif op == "begin_nested" then handles[c.id] = target():begin_nested()
      elseif op == "sp_commit" then handles[c.id]:commit()
      elseif op == "sp_rollback" then handles[c.id]:rollback()
      end
    end

    -- White-box: the raw connection the unit holds, read through the
    -- objects' own fields (no call that could change their state).
    local function observe(out)
      local raw
      if kind == "conn" and conn then
        raw = conn.raw
        if not conn.closed then out.in_tx = conn:in_transaction() end
      elseif kind == "session" and Session.registry:has() then
        local s = Session()
        raw = s._raw or (s._conn and s._conn.raw)
        out.in_tx = s:in_transaction()
      end
      if raw and not raw:closed() then
        out.holds, out.tid = true, raw:thread_id()
      else
        out.holds = false
      end
    end

    while true do
      local out = {}
      local ok, val = pcall(perform, cmd)
      if ok then out.ok, out.value = true, val else out.ok, out.err = false, describe_err(val) end
      local ook, oerr = pcall(observe, out)
      if not ook then out.observe_error = tostring(oerr) end
      cmd = coroutine.yield(out)
    end
  end)
end

-- ---- failures -------------------------------------------------------------------

local function fail(ctx, fmt, ...)
  local lines = {
    ("state model [%s] seed %s, step %d: %s"):format(ctx.name, tostring(ctx.seed), ctx.step, fmt:format(...)),
    ("replay: SCOPED_STATE_SEED=%s SCOPED_STATE_STEPS=%d SCOPED_STATE_VARIANT='%s' busted spec/state_model_spec.lua")
      :format(tostring(ctx.seed), ctx.step, ctx.name),
    ("engine: %s"):format(ctx.engine_desc),
    "last steps:",
  }
  local first = math.max(1, #ctx.trace - 14)
  for i = first, #ctx.trace do lines[#lines + 1] = "  " .. ctx.trace[i] end
  if ctx.current then lines[#lines + 1] = "  step " .. ctx.step .. ": " .. ctx.current .. " -> (failed here)" end
  error(table.concat(lines, "\n"), 0)
end

local function outcome_text(res)
  if res.ok then return "ok" end
  local e = res.err
  return ("%s%s%s: %s"):format(tostring(e.kind), e.code and ("/" .. e.code) or "",
    e.invalidated and " (connection invalidated)" or "", (e.text or ""):match("[^\n]*"))
end

local function expect_ok(ctx, res, what)
  if not res.ok then fail(ctx, "%s: expected success, got %s", what, outcome_text(res)) end
end

local function expect_kind(ctx, res, kind, what)
  if res.ok or res.err.kind ~= kind then fail(ctx, "%s: expected %s, got %s", what, kind, outcome_text(res)) end
end

local function expect_code(ctx, res, code, kind, what)
  if res.ok or res.err.code ~= code or not res.err.dbapi or (kind and res.err.kind ~= kind) then
    fail(ctx, "%s: expected %s %d, got %s", what, kind or "a DBAPIError", code, outcome_text(res))
  end
end

local function is_disconnect(res)
  return not res.ok and res.err.kind == "OperationalError" and res.err.invalidated == true
end

local function expect_disconnect(ctx, res, what)
  if not is_disconnect(res) then
    fail(ctx, "%s: expected OperationalError with connection_invalidated (the connection was KILLed), got %s",
      what, outcome_text(res))
  end
end

-- ---- the model ----------------------------------------------------------------------
-- ctx.committed / committed_list: rows committed for sure; ctx.unknown: rows
-- of a COMMIT that failed with a disconnect (may or may not be there);
-- ctx.locks[row]: who holds the row lock of state_lock row 1..3 -- {slot,
-- tid, sure} for a unit (sure = false when the model cannot tell: after a
-- ROLLBACK TO SAVEPOINT, or while a dead connection's thread may still be
-- on the server; such rows are left alone), {indep = true} for the
-- independent lock holder.
-- A unit: kind, state ("ok", "killed": its connection was KILLed and the
-- library has not seen it yet, "pending": pending rollback), in_tx (the
-- unit's transaction is begun), touched (a statement ran since the last
-- end: the server may hold a transaction or metadata lock for it),
-- pending (its rows in the current server transaction, in order), sps (its
-- active savepoints, innermost last), dead (savepoints the server lost in a
-- deadlock or disconnect), stale (handles of ended savepoints or
-- transactions), lock_seq (rows it locked, in order), kq (a KILL QUERY was
-- sent between statements), holds / tid (white-box, after each step).

local function new_unit(kind)
  return {kind = kind, state = "ok", in_tx = false, touched = false, pending = {}, sps = {}, dead = {},
    stale = {}, lock_seq = {}, kq = false, holds = false, tid = nil}
end

local function new_tag(ctx)
  ctx.ntag = ctx.ntag + 1
  -- increasing keys: each new row goes after every existing one, so no
  -- insert ever waits on the gap lock a duplicate-key check took
  return ("t%07d"):format(ctx.ntag)
end

local function tags_to(ctx, u, fate)
  for _, t in ipairs(u.pending) do
    if fate == "committed" then
      ctx.committed[t] = true
      ctx.committed_list[#ctx.committed_list + 1] = t
      ctx.ncommitted = ctx.ncommitted + 1
    elseif fate == "unknown" then
      ctx.unknown[t] = true
    end
  end
  u.pending = {}
end

-- The unit's server transaction is over. live: it ended by a COMMIT,
-- ROLLBACK or reset on a live connection (its locks are free now);
-- otherwise its connection died or was dropped, and its thread lets go of
-- the locks when it is gone (refresh_locks).
local function release_locks(ctx, slot, live)
  for r = 1, UNIT_ROWS do
    local l = ctx.locks[r]
    if l and l.slot == slot then
      if live then ctx.locks[r] = nil else l.sure = false end
    end
  end
end

local function refresh_locks(ctx)
  for r = 1, UNIT_ROWS do
    local l = ctx.locks[r]
    if l and l.tid and not ctx.threads[l.tid] then ctx.locks[r] = nil end
  end
end

-- The transaction (SQLAlchemy's) ended: savepoint handles go stale.
local function end_tx(u)
  for _, sp in ipairs(u.sps) do u.stale[#u.stale + 1] = sp.id end
  for _, id in ipairs(u.dead) do u.stale[#u.stale + 1] = id end
  u.sps, u.dead, u.lock_seq = {}, {}, {}
  u.in_tx, u.touched, u.kq = false, false, false
end

-- A disconnect or invalidate() inside the transaction: pending rollback.
local function to_pending(ctx, slot, u, fate)
  u.state = "pending"
  tags_to(ctx, u, fate)
  for _, sp in ipairs(u.sps) do u.dead[#u.dead + 1] = sp.id end
  u.sps, u.lock_seq = {}, {}
  release_locks(ctx, slot, false)
end

local function holding(ctx)
  local n = 0
  for slot = 1, ctx.n do
    local u = ctx.units[slot]
    if u and u.holds then n = n + 1 end
  end
  return n
end

-- Whether a checkout now must time out: every connection the pool may
-- have is held by a unit (exact: the invariants keep the pool's count equal
-- to the units' after every step).
local function pool_full(ctx)
  return not ctx.null_pool and holding(ctx) >= ctx.capacity
end

local function has_writes(ctx, slot, u)
  if #u.pending > 0 then return true end
  for r = 1, UNIT_ROWS do
    local l = ctx.locks[r]
    if l and l.slot == slot and l.sure then return true end
  end
  return false
end

-- ---- talking to a worker ------------------------------------------------------------

-- A unit let go of connection tid (back to the pool, or discarded): what it
-- set there is no longer the model's business (reset_connection clears it,
-- the other modes leave it, and "probe" only asserts the former).
local function released(ctx, tid)
  ctx.marks[tid] = nil
end

local function send(ctx, slot, cmd)
  local ok, res = coroutine.resume(ctx.workers[slot], cmd)
  if not ok then fail(ctx, "worker %d crashed: %s", slot, tostring(res)) end
  if res.observe_error then fail(ctx, "reading the unit's connection failed: %s", res.observe_error) end
  local u = ctx.units[slot]
  if u then
    if u.holds and u.tid ~= res.tid then released(ctx, u.tid) end
    u.holds, u.tid, u.lib_in_tx = res.holds, res.tid, res.in_tx
  end
  return res
end

local function start_worker(ctx, slot)
  ctx.workers[slot] = new_worker(ctx.engine, ctx.Session)
  send(ctx, slot, {op = "observe"})
end

-- A statement-like command (a statement, SAVEPOINT, RELEASE, ROLLBACK TO):
-- first what the unit's state decides, then, when the statement runs on
-- the server, own(res) checks its own outcome and updates the model.
local function run_statement(ctx, slot, what, cmd, own)
  local u = ctx.units[slot]
  local pre
  if u.state == "pending" then pre = "pending"
  elseif u.state == "killed" then pre = "disconnect"
  elseif not u.holds and pool_full(ctx) then pre = "timeout" end
  local res = send(ctx, slot, cmd)
  if pre == "pending" then
    expect_kind(ctx, res, "PendingRollbackError", what .. " while the transaction must be rolled back")
    return "PendingRollbackError"
  elseif pre == "disconnect" then
    expect_disconnect(ctx, res, what)
    u.in_tx = true
    to_pending(ctx, slot, u, "lost")
    return "disconnect"
  elseif pre == "timeout" then
    expect_kind(ctx, res, "TimeoutError", what .. " with every connection of the pool checked out")
    if res.holds then fail(ctx, "%s: TimeoutError, yet the unit holds a connection", what) end
    return "TimeoutError"
  end
  u.in_tx, u.touched = true, true
  local kq = u.kq
  u.kq = false
  local out
  if kq and not res.ok and res.err.code == 1317 then
    out = "1317 (the earlier KILL QUERY)" -- the statement alone is dropped
  else
    out = own(res)
  end
  if not res.holds then fail(ctx, "%s ran, but the unit holds no connection afterwards", what) end
  return out
end

-- own() for a statement that must fail with the server's error code
-- (kind: its class, nil for any DBAPIError); the server drops that
-- statement alone, so the model has nothing to change.
local function fails_with(ctx, code, kind, what)
  return function(res)
    expect_code(ctx, res, code, kind, what)
    return tostring(code)
  end
end

-- ---- the server's view ------------------------------------------------------------------

-- Threads with an InnoDB transaction, from SHOW ENGINE INNODB STATUS (live,
-- unlike INNODB_TRX).
local function innodb_status_trx(ctx)
  local st = ctx.obs:rows("SHOW ENGINE INNODB STATUS")[1]
  local text = st and (st.Status or st.STATUS) or ""
  local s = text:find("LIST OF TRANSACTIONS FOR EACH SESSION:", 1, true)
  if not s then fail(ctx, "cannot read SHOW ENGINE INNODB STATUS:\n%s", text) end
  local e = text:find("\n%-%-%-%-%-%-%-%-+\n", s) or #text
  local section = text:sub(s, e)
  local out = {}
  -- one block per transaction, each starting "---TRANSACTION"
  local pos = 1
  while true do
    local a = section:find("\n---TRANSACTION", pos, true)
    if not a then break end
    local b = section:find("\n---TRANSACTION", a + 1, true)
    local block = section:sub(a, (b or #section + 1) - 1)
    if not block:find("not started", 1, true) then
      local id = block:match("MariaDB thread id (%d+)") or block:match("MySQL thread id (%d+)")
      if id then out[tonumber(id)] = block:find("LOCK WAIT", 1, true) and "wait" or "active" end
    end
    pos = a + 1
  end
  return out
end

local function server_view(ctx)
  local threads, n = {}, 0
  for _, r in ipairs(ctx.obs:rows("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '" .. ctx.user .. "'")) do
    threads[tonumber(r.ID)] = true
    n = n + 1
  end
  local trx = innodb_status_trx(ctx)
  local mdl = {}
  if ctx.mdl then
    for _, r in ipairs(ctx.obs:rows("SELECT DISTINCT THREAD_ID FROM information_schema.metadata_lock_info")) do
      mdl[tonumber(r.THREAD_ID)] = true
    end
  end
  return threads, n, trx, mdl
end

-- Invariants 1-3; returns the list of what is wrong.
local function problems(ctx)
  local threads, n, trx, mdl = server_view(ctx)
  ctx.threads = threads
  local st = ctx.engine.pool:stats()
  local held, nhold, killedheld = {}, 0, 0
  for slot = 1, ctx.n do
    local u = ctx.units[slot]
    if u and u.holds then
      nhold = nhold + 1
      held[u.tid] = slot
      if ctx.killed[u.tid] then killedheld = killedheld + 1 end
    end
  end
  local p = {}
  if st.checkedout ~= nhold then
    p[#p + 1] = ("the pool counts %d connections checked out, the units hold %d"):format(st.checkedout, nhold)
  end
  if st.waiting ~= 0 then p[#p + 1] = ("the pool counts %d waiting, nobody waits"):format(st.waiting) end
  if ctx.null_pool and st.checkedin ~= 0 then
    p[#p + 1] = ("NullPool keeps %d connections idle"):format(st.checkedin)
  end
  if not ctx.null_pool and st.open > ctx.capacity then
    p[#p + 1] = ("the pool has %d connections open, more than pool_size + max_overflow = %d"):format(st.open, ctx.capacity)
  end
  -- a KILLed connection a unit still holds is counted by the pool, gone on the server
  local want = (ctx.null_pool and nhold or st.open) - killedheld
  if n ~= want then
    p[#p + 1] = ("the server has %d connections of the engine, expected %d (pool: open %d, checked out %d; " ..
      "%d held by units, %d of them KILLed)"):format(n, want, st.open, st.checkedout, nhold, killedheld)
  end
  local ids = {}
  for tid in pairs(trx) do ids[#ids + 1] = tid end
  table.sort(ids)
  for _, tid in ipairs(ids) do
    if threads[tid] and not held[tid] then
      p[#p + 1] = ("idle connection (thread %d) holds an InnoDB transaction"):format(tid)
    end
  end
  ids = {}
  for tid in pairs(mdl) do ids[#ids + 1] = tid end
  table.sort(ids)
  for _, tid in ipairs(ids) do
    if threads[tid] and not held[tid] then
      p[#p + 1] = ("idle connection (thread %d) holds a metadata lock"):format(tid)
    end
  end
  return p
end

-- A closed connection's thread lingers in the PROCESSLIST for a moment
-- (COM_QUIT is handled asynchronously), with what it held: what is wrong
-- must stay wrong for a while before it counts. Nothing of ours runs
-- meanwhile, so a real leak stays.
local function check_server(ctx)
  local p = problems(ctx)
  if #p == 0 then return end
  local deadline = now() + 5
  repeat
    sleep(0.002)
    p = problems(ctx)
    if #p == 0 then return end
  until now() > deadline
  fail(ctx, "%s", table.concat(p, "; "))
end

-- Invariant 4: committed <= table <= committed + unknown.
local function check_ledger(ctx)
  local seen = {}
  for _, r in ipairs(ctx.obs:rows("SELECT tag FROM state_ledger")) do seen[r.tag] = true end
  local p = {}
  for _, t in ipairs(ctx.committed_list) do
    if not seen[t] then p[#p + 1] = "committed row " .. t .. " is missing" end
  end
  local extra = {}
  for t in pairs(seen) do
    if not ctx.committed[t] and not ctx.unknown[t] then extra[#extra + 1] = t end
  end
  table.sort(extra)
  for _, t in ipairs(extra) do p[#p + 1] = "row " .. t .. " is in the ledger but was never committed" end
  if #p > 0 then
    while #p > 8 do table.remove(p) end
    fail(ctx, "ledger: %s", table.concat(p, "; "))
  end
end

-- Invariant 1 again through INFORMATION_SCHEMA.INNODB_TRX. That table is
-- a cache InnoDB refreshes only when nobody has read it for 0.1 s (any
-- client's read counts), so what it shows may be old. A sentinel makes it
-- say when: a connection of ours updates k rows (k changes from check to
-- check) after the last action, and the cache is trusted only when it shows
-- that transaction with k rows modified. A server where some other client
-- keeps reading the table gives no fresh cache: the check is skipped then.
local function check_innodb_trx(ctx)
  ctx.ntrx = (ctx.ntrx or 0) + 1
  local k = ctx.ntrx % SENTINEL_ROWS + 1
  local sentinel = ctx.sentinel
  sentinel:run(("UPDATE state_lock SET v = v + 1 WHERE id BETWEEN %d AND %d"):format(SENTINEL_FIRST, SENTINEL_FIRST + k - 1))
  local rows
  for _ = 1, 10 do
    sleep(0.11)
    rows = ctx.obs:rows("SELECT trx_mysql_thread_id AS id, trx_rows_modified AS n FROM information_schema.INNODB_TRX")
    for _, r in ipairs(rows) do
      if tonumber(r.id) == sentinel:thread_id() and tonumber(r.n) == k then rows.fresh = true end
    end
    if rows.fresh then break end
  end
  assert(sentinel:rollback())
  if not rows.fresh then
    io.write(("# NOTE state model [%s] step %d: INNODB_TRX stayed stale for 1 s (another client reads it all " ..
      "the time): not checked this time\n"):format(ctx.name, ctx.step))
    return
  end
  local threads = server_view(ctx)
  local held = {}
  for slot = 1, ctx.n do
    local u = ctx.units[slot]
    if u and u.holds then held[u.tid] = true end
  end
  for _, r in ipairs(rows) do
    local tid = tonumber(r.id)
    if threads[tid] and not held[tid] then
      fail(ctx, "INNODB_TRX: idle connection (thread %d) holds an InnoDB transaction", tid)
    end
  end
end

local function wait_gone(ctx, tid)
  local deadline = now() + 5
  repeat
    if tonumber(ctx.obs:scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = " .. tid)) == 0 then
      return
    end
    sleep(0.002)
  until now() > deadline
  fail(ctx, "thread %d is still on the server 5 s after KILL CONNECTION", tid)
end

-- ---- the actions ---------------------------------------------------------------------------
-- Each: name, weight, when(ctx, slot, u) -> may it run now, checkout (true:
-- a statement that checks a connection out when the unit holds none: made
-- rare while the pool is full, since each then waits pool_timeout),
-- run(ctx, slot, u) -> a short outcome for the trace.

local STMT_STATES = {ok = true, pending = true, killed = true}

local function stmt_action(name, weight, build)
  return {name = name, weight = weight, checkout = true,
    when = function(_, _, u) return u and STMT_STATES[u.state] end,
    run = function(ctx, slot, u)
      local cmd, own = build(ctx, slot, u)
      return run_statement(ctx, slot, name, cmd, own)
    end}
end

local ACTIONS = {
  {name = "open", weight = 2, checkout = true,
    when = function(_, _, u) return u == nil end,
    run = function(ctx, slot)
      local kind = ctx.rng:chance(0.5) and "session" or "conn"
      local full = pool_full(ctx)
      ctx.current = ctx.current .. " " .. kind
      local res = send(ctx, slot, {op = "open", kind = kind})
      if kind == "conn" and full then
        expect_kind(ctx, res, "TimeoutError", "engine:connect() with every connection checked out")
        return "TimeoutError"
      end
      expect_ok(ctx, res, "open a " .. kind)
      local u = new_unit(kind)
      ctx.units[slot] = u
      u.holds, u.tid, u.lib_in_tx = res.holds, res.tid, res.in_tx
      if kind == "session" and res.holds then fail(ctx, "a new Session holds a connection before its first statement") end
      if kind == "conn" and not res.holds then fail(ctx, "engine:connect() returned without a connection") end
      return "ok"
    end},

  stmt_action("insert", 6, function(ctx, slot, u)
    local tag = new_tag(ctx)
    return {op = "exec", sql = SQL.insert, params = {tag = tag, slot = slot}}, function(res)
      expect_ok(ctx, res, "INSERT " .. tag)
      u.pending[#u.pending + 1] = tag
      return "ok " .. tag
    end
  end),

  -- a key that is certainly there: a committed row, or one of the unit's own
  stmt_action("duplicate", 1.5, function(ctx, _, u)
    local tag
    if #u.pending > 0 and ctx.rng:chance(0.3) then tag = ctx.rng:pick(u.pending)
    else tag = ctx.rng:pick(ctx.committed_list) end
    return {op = "exec", sql = SQL.insert, params = {tag = tag, slot = 0}},
      fails_with(ctx, 1062, "IntegrityError", "INSERT of the existing key " .. tag)
  end),

  stmt_action("syntax", 1, function(ctx)
    return {op = "exec", sql = SQL.syntax}, fails_with(ctx, 1064, "ProgrammingError", "a syntax error")
  end),

  stmt_action("unknown_column", 1.5, function(ctx)
    return {op = "exec", sql = SQL.unknown_col, params = {tag = new_tag(ctx)}},
      fails_with(ctx, 1054, nil, "an unknown column")
  end),

  stmt_action("max_statement_time", 1, function(ctx)
    return {op = "exec", sql = SQL.max_time},
      fails_with(ctx, 1969, "OperationalError", "max_statement_time expiry")
  end),

  -- the unit sees exactly its own uncommitted rows: failed statements took
  -- none of the earlier ones with them, a deadlock took all, a savepoint
  -- rollback those after it
  stmt_action("read", 1, function(ctx, _, u)
    local tags = {}
    for i, t in ipairs(u.pending) do tags[i] = t end
    return {op = "exec", sql = SQL.read, params = {tags = tags}, want = "scalar"}, function(res)
      expect_ok(ctx, res, "SELECT of the unit's own rows")
      if tonumber(res.value) ~= #tags then
        fail(ctx, "the unit sees %s of its %d uncommitted rows", tostring(res.value), #tags)
      end
      return "ok " .. #tags
    end
  end),

  -- the connection's settings: init_command's, and autocommit off (what a
  -- reset_connection must apply again); and the user variable @sm_mark:
  -- what the unit set on this connection, and under reset_connection
  -- nothing a former user of the connection set
  stmt_action("probe", 0.7, function(ctx)
    return {op = "exec", sql = SQL.probe, want = "row"}, function(res)
      expect_ok(ctx, res, "SELECT of the session settings")
      local lwt, ac, mark = tonumber(res.value[1]), tonumber(res.value[2]), tonumber(res.value[3])
      if lwt ~= 0 or ac ~= 0 then
        fail(ctx, "the connection runs with innodb_lock_wait_timeout=%s autocommit=%s; expected 0 (init_command) and 0",
          tostring(lwt), tostring(ac))
      end
      local want = ctx.marks[res.tid]
      if want and mark ~= want then
        fail(ctx, "@sm_mark is %s on thread %d, which still has the %d set on it", tostring(mark), res.tid, want)
      elseif not want and ctx.reset == "reset_connection" and mark ~= nil then
        fail(ctx, "@sm_mark is %s on thread %d: reset_connection left a former user's variable", tostring(mark), res.tid)
      end
      return "ok"
    end
  end),

  stmt_action("set_mark", 0.5, function(ctx)
    ctx.nmark = ctx.nmark + 1
    local n = ctx.nmark
    return {op = "exec", sql = SQL.mark, params = {n = n}}, function(res)
      expect_ok(ctx, res, "SET @sm_mark")
      ctx.marks[res.tid] = n
      return "ok " .. n
    end
  end),

  -- a row lock: free or the unit's own -> ok; another's -> 1205 at once
  -- (innodb_lock_wait_timeout=0 from init_command)
  {name = "lock_row", weight = 1, checkout = true,
    when = function(_, _, u) return u and STMT_STATES[u.state] end,
    run = function(ctx, slot, u)
      refresh_locks(ctx)
      local rows = {}
      for r = 1, UNIT_ROWS do
        local l = ctx.locks[r]
        if not l or l.indep or l.slot == slot or l.sure then rows[#rows + 1] = r end
      end
      if #rows == 0 then return "skipped (every row in doubt)" end
      local r = ctx.rng:pick(rows)
      local l = ctx.locks[r]
      local other = l and (l.indep or l.slot ~= slot)
      ctx.current = ctx.current .. " row " .. r .. (other and " (held by " .. (l.indep and "the independent client" or "slot " .. l.slot) .. ")" or "")
      return run_statement(ctx, slot, "lock_row", {op = "exec", sql = SQL.lock, params = {r = r}}, function(res)
        if other then
          expect_code(ctx, res, 1205, "OperationalError", "UPDATE of a row another transaction holds")
          return "1205"
        end
        expect_ok(ctx, res, "UPDATE of a free row")
        ctx.locks[r] = {slot = slot, tid = res.tid, sure = true}
        u.lock_seq[#u.lock_seq + 1] = r
        return "ok"
      end)
    end},

  -- KILL QUERY between statements: nothing runs, so nothing is killed; the
  -- next statement may still meet it (1317, that statement alone)
  {name = "kill_query_idle", weight = 0.3,
    when = function(_, _, u) return u and u.state == "ok" and u.holds end,
    run = function(ctx, _, u)
      ctx.obs:run("KILL QUERY " .. u.tid)
      u.kq = true
      return "sent"
    end},

  -- KILL QUERY of a running statement (from a helper process): 1317
  {name = "kill_query_running", weight = 0.2, checkout = true,
    when = function(ctx, _, u) return u and u.state == "ok" and not u.kq and (u.holds or not pool_full(ctx)) end,
    run = function(ctx, slot)
      local helper = proc.spawn(([==[
        local I = require "support.independent"
        local c = I.connect()
        local ok, socket = pcall(require, "socket")
        local deadline = os.time() + 15
        while os.time() <= deadline do
          local id = c:scalar([[SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '%s' AND INFO LIKE 'SELECT SLEEP(20)%%']])
          if id then
            c:run("KILL QUERY " .. id)
            print("killed " .. id)
            os.exit(0)
          end
          if ok then socket.sleep(0.002) else os.execute("sleep 0.01") end
        end
        print("never saw the statement")
      ]==]):format(ctx.user))
      local out = run_statement(ctx, slot, "a statement KILLed by KILL QUERY",
        {op = "exec", sql = SQL.long}, fails_with(ctx, 1317, "OperationalError", "a statement KILLed by KILL QUERY"))
      local text = helper:finish(30)
      if not text:find("killed", 1, true) then fail(ctx, "the KILL QUERY helper: %s", (text:gsub("\n", " | "))) end
      return out
    end},

  -- A deadlock: the unit holds row r1; a helper process holds r2 and many
  -- more rows (so InnoDB picks the unit, the lighter transaction, as the
  -- victim) and waits for r1; the unit asks for r2: 1213, and the unit's
  -- whole server transaction is rolled back.
  {name = "deadlock", weight = 0.5,
    when = function(ctx, slot, u)
      if not (u and u.state == "ok" and u.holds and not u.kq) or #u.pending + #u.lock_seq > 30 then return false end
      refresh_locks(ctx)
      local mine, free = false, false
      for r = 1, UNIT_ROWS do
        local l = ctx.locks[r]
        if l and l.slot == slot and l.sure then mine = true elseif not l then free = true end
      end
      return mine and free
    end,
    run = function(ctx, slot, u)
      local mine, free = {}, {}
      for r = 1, UNIT_ROWS do
        local l = ctx.locks[r]
        if l and l.slot == slot and l.sure then mine[#mine + 1] = r elseif not l then free[#free + 1] = r end
      end
      local r1, r2 = ctx.rng:pick(mine), ctx.rng:pick(free)
      ctx.current = ctx.current .. (" rows %d (held) and %d"):format(r1, r2)
      local helper = proc.spawn(([==[
        local I = require "support.independent"
        local c = I.connect()
        c:run("SET SESSION innodb_lock_wait_timeout = 20")
        c:autocommit(false)
        print("id " .. c:thread_id())
        c:run("UPDATE state_lock SET v = v + 1 WHERE id = %d OR id BETWEEN %d AND %d")
        print("locked")
        local ok, err = c:exec("UPDATE state_lock SET v = v + 1 WHERE id = %d")
        print(ok and "granted" or ("refused " .. tostring(err)))
        c:rollback()
      ]==]):format(r2, HEAVY_FIRST, HEAVY_LAST, r1))
      local okw, werr = pcall(helper.wait_for, helper, "locked", 30)
      if not okw then fail(ctx, "the deadlock helper: %s", tostring(werr)) end
      local hid = tonumber(helper:output():match("id (%d+)"))
      local deadline = now() + 10
      while innodb_status_trx(ctx)[hid] ~= "wait" do
        if now() > deadline then
          fail(ctx, "the deadlock helper never waited for row %d: %s", r1, (helper:output():gsub("\n", " | ")))
        end
        sleep(0.003)
      end
      local out = run_statement(ctx, slot, "deadlock", {op = "exec", sql = SQL.deadlock, params = {r = r2}},
        function(res)
          expect_code(ctx, res, 1213, "OperationalError", "the UPDATE that closes a deadlock")
          -- the server rolled back the whole transaction: rows, locks, savepoints
          tags_to(ctx, u, "lost")
          release_locks(ctx, slot, true)
          for _, sp in ipairs(u.sps) do u.dead[#u.dead + 1] = sp.id end
          u.sps, u.lock_seq = {}, {}
          return "1213"
        end)
      -- (its exit status is not looked at: proc.lua's finish() may read the
      -- status file between its creation and the write)
      local text = helper:finish(30)
      if not text:find("granted", 1, true) then
        fail(ctx, "the deadlock helper did not get row %d: %s", r1, (text:gsub("\n", " | ")))
      end
      return out
    end},

  {name = "savepoint", weight = 1.5,
    when = function(ctx, _, u) return u and STMT_STATES[u.state] and (u.holds or not pool_full(ctx)) end,
    run = function(ctx, slot, u)
      ctx.nsp = ctx.nsp + 1
      local id = ctx.nsp
      return run_statement(ctx, slot, "begin_nested()", {op = "begin_nested", id = id}, function(res)
        expect_ok(ctx, res, "begin_nested()")
        u.sps[#u.sps + 1] = {id = id, mark = #u.pending, lmark = #u.lock_seq}
        return "ok sp" .. id
      end)
    end},

  {name = "savepoint_commit", weight = 2,
    when = function(_, _, u) return u and #u.sps > 0 and (u.state == "ok" or u.state == "killed") end,
    run = function(ctx, slot, u)
      local sp = u.sps[#u.sps]
      return run_statement(ctx, slot, "the savepoint's commit()", {op = "sp_commit", id = sp.id}, function(res)
        expect_ok(ctx, res, "the savepoint's commit()")
        table.remove(u.sps)
        u.stale[#u.stale + 1] = sp.id
        return "ok sp" .. sp.id
      end)
    end},

  {name = "savepoint_rollback", weight = 2,
    when = function(_, _, u) return u and #u.sps > 0 and (u.state == "ok" or u.state == "killed") end,
    run = function(ctx, slot, u)
      local sp = u.sps[#u.sps]
      return run_statement(ctx, slot, "the savepoint's rollback()", {op = "sp_rollback", id = sp.id}, function(res)
        expect_ok(ctx, res, "the savepoint's rollback()")
        table.remove(u.sps)
        u.stale[#u.stale + 1] = sp.id
        while #u.pending > sp.mark do table.remove(u.pending) end
        -- whether InnoDB keeps the row locks taken after the savepoint is
        -- its business: those rows are in doubt until the transaction ends
        local before = {}
        for i = 1, sp.lmark do before[u.lock_seq[i]] = true end
        for i = sp.lmark + 1, #u.lock_seq do
          local r = u.lock_seq[i]
          if not before[r] and ctx.locks[r] and ctx.locks[r].slot == slot then ctx.locks[r].sure = false end
        end
        while #u.lock_seq > sp.lmark do table.remove(u.lock_seq) end
        return "ok sp" .. sp.id
      end)
    end},

  -- A handle of a savepoint that has ended (by itself, or with its
  -- transaction) never acts, least of all on a later savepoint of the same
  -- name: a Connection's commit() raises InvalidRequestError, its
  -- rollback() does nothing (SQLAlchemy's Transaction). A Session's nested
  -- SessionTransaction may also refuse rollback() (SQLAlchemy's ORM raises
  -- ResourceClosedError there). That nothing was done shows in the next
  -- "read" and in the ledger.
  {name = "stale_savepoint", weight = 0.7,
    when = function(_, _, u) return u and #u.stale > 0 and u.state == "ok" end,
    run = function(ctx, slot, u)
      local id = ctx.rng:pick(u.stale)
      local what = ("%s() of the stale savepoint handle sp%d")
      if ctx.rng:chance(0.5) then
        local res = send(ctx, slot, {op = "sp_commit", id = id})
        if u.kind == "conn" then
          expect_kind(ctx, res, "InvalidRequestError", what:format("commit", id))
        elseif res.ok or not res.err.invalid_request then
          fail(ctx, "%s: expected an InvalidRequestError, got %s", what:format("commit", id), outcome_text(res))
        end
        return res.err.kind .. " sp" .. id
      end
      local res = send(ctx, slot, {op = "sp_rollback", id = id})
      if u.kind == "conn" or res.ok then
        expect_ok(ctx, res, what:format("rollback", id) .. " (a no-op)")
        return "ok sp" .. id
      end
      if not res.err.invalid_request then
        fail(ctx, "%s: expected nothing or an InvalidRequestError, got %s", what:format("rollback", id), outcome_text(res))
      end
      return res.err.kind .. " sp" .. id
    end},

  {name = "commit", weight = 3,
    when = function(_, _, u) return u ~= nil end,
    run = function(ctx, slot, u)
      local res = send(ctx, slot, {op = "commit"})
      if u.state == "pending" then
        expect_kind(ctx, res, "PendingRollbackError", "commit() while the transaction must be rolled back")
        return "PendingRollbackError"
      elseif u.state == "killed" then
        expect_disconnect(ctx, res, "commit() on a KILLed connection")
        to_pending(ctx, slot, u, "unknown") -- a COMMIT lost in flight: its rows may or may not be there
        return "disconnect"
      end
      expect_ok(ctx, res, "commit()")
      tags_to(ctx, u, "committed")
      release_locks(ctx, slot, true)
      end_tx(u)
      if u.kind == "session" and res.holds then fail(ctx, "Session:commit() kept the connection") end
      return "ok"
    end},

  {name = "rollback", weight = 2,
    when = function(_, _, u) return u ~= nil end,
    run = function(ctx, slot, u)
      local res = send(ctx, slot, {op = "rollback"})
      if u.state == "killed" then
        -- its ROLLBACK meets the dead connection: it may say so
        if not res.ok then expect_disconnect(ctx, res, "rollback() on a KILLed connection") end
      else
        expect_ok(ctx, res, "rollback()")
      end
      tags_to(ctx, u, "lost")
      release_locks(ctx, slot, u.state == "ok")
      end_tx(u)
      u.state = "ok"
      if u.kind == "session" and res.holds then fail(ctx, "Session:rollback() kept the connection") end
      return outcome_text(res)
    end},

  -- Connection:close() ends the unit; Session:close() leaves it usable
  {name = "close", weight = 1.5,
    when = function(_, _, u) return u ~= nil end,
    run = function(ctx, slot, u)
      local res = send(ctx, slot, {op = "close"})
      if u.state == "killed" then
        if not res.ok then expect_disconnect(ctx, res, "close() on a KILLed connection") end
      else
        expect_ok(ctx, res, "close()")
      end
      tags_to(ctx, u, "lost")
      release_locks(ctx, slot, u.state == "ok")
      end_tx(u)
      u.state = "ok"
      if u.kind == "conn" then ctx.units[slot] = nil
      elseif res.holds then fail(ctx, "Session:close() kept the connection") end
      return outcome_text(res)
    end},

  {name = "remove", weight = 1.5,
    when = function(_, _, u) return u ~= nil and u.kind == "session" end,
    run = function(ctx, slot, u)
      local res = send(ctx, slot, {op = "remove"})
      if u.state == "killed" then
        if not res.ok then expect_disconnect(ctx, res, "Session:remove() on a KILLed connection") end
      else
        expect_ok(ctx, res, "Session:remove()")
      end
      tags_to(ctx, u, "lost")
      release_locks(ctx, slot, u.state == "ok")
      ctx.units[slot] = nil
      return outcome_text(res)
    end},

  {name = "invalidate", weight = 0.4,
    when = function(_, _, u) return u and u.kind == "conn" and u.holds and (u.state == "ok" or u.state == "killed") end,
    run = function(ctx, slot, u)
      local res = send(ctx, slot, {op = "invalidate"})
      expect_ok(ctx, res, "invalidate()")
      if u.in_tx then
        to_pending(ctx, slot, u, "lost")
        return "ok (pending rollback)"
      end
      u.state = "ok"
      return "ok"
    end},

  -- The coroutine is dropped mid-unit and collected: its connection must
  -- come back to the pool, reset by the pool's mode.
  {name = "abandon", weight = 0.4,
    when = function(ctx, _, u)
      if not u then return false end
      if ctx.reset == false then
        -- that mode leaves a transaction on the idle connection by design:
        -- only units that cannot hold one (a dead connection is discarded)
        return (u.state == "ok" and not u.touched) or u.state == "pending"
      end
      return true
    end,
    run = function(ctx, slot, u)
      local live = u.state == "ok"
      if u.holds then released(ctx, u.tid) end
      tags_to(ctx, u, (live and ctx.reset == "commit") and "committed" or "lost")
      release_locks(ctx, slot, live)
      ctx.units[slot] = nil
      ctx.workers[slot] = nil
      collectgarbage()
      collectgarbage()
      start_worker(ctx, slot)
      return "collected"
    end},

  -- KILL CONNECTION from outside while the unit has written in its
  -- transaction (so whatever it does next reaches the dead connection)
  {name = "kill_connection", weight = 0.7,
    when = function(ctx, slot, u) return u and u.state == "ok" and u.holds and has_writes(ctx, slot, u) end,
    run = function(ctx, slot, u)
      ctx.obs:run("KILL CONNECTION " .. u.tid)
      wait_gone(ctx, u.tid)
      ctx.killed[u.tid] = true
      u.state = "killed"
      release_locks(ctx, slot, true) -- the thread is gone: the server rolled back
      return "killed " .. u.tid
    end},
}

local ACTION = {}
for _, a in ipairs(ACTIONS) do ACTION[a.name] = a end

-- The independent client holding row locks in its own transaction.
local GLOBAL_ACTIONS = {
  {name = "independent_lock", weight = 0.5,
    when = function(ctx)
      refresh_locks(ctx)
      for r = 1, UNIT_ROWS do if not ctx.locks[r] then return true end end
      return false
    end,
    run = function(ctx)
      local free = {}
      for r = 1, UNIT_ROWS do if not ctx.locks[r] then free[#free + 1] = r end end
      local r = ctx.rng:pick(free)
      local ok, err = ctx.holder:exec("UPDATE state_lock SET v = v + 1 WHERE id = " .. r)
      if not ok then fail(ctx, "the independent client could not lock row %d, which no unit should hold: %s", r, err) end
      ctx.locks[r] = {indep = true, sure = true}
      return "row " .. r
    end},
  {name = "independent_release", weight = 0.5,
    when = function(ctx)
      for r = 1, UNIT_ROWS do if ctx.locks[r] and ctx.locks[r].indep then return true end end
      return false
    end,
    run = function(ctx)
      assert(ctx.holder:rollback())
      for r = 1, UNIT_ROWS do if ctx.locks[r] and ctx.locks[r].indep then ctx.locks[r] = nil end end
      return "ok"
    end},
}

-- ---- the scheduler -----------------------------------------------------------------------

local function unit_desc(u)
  if not u then return "no unit" end
  return u.kind .. (u.state ~= "ok" and ("/" .. u.state) or "") .. (u.holds and (" thread " .. tostring(u.tid)) or "")
end

local function choose(ctx)
  local cands, total = {}, 0
  local full = pool_full(ctx)
  for slot = 1, ctx.n do
    local u = ctx.units[slot]
    for _, a in ipairs(ACTIONS) do
      if a.when(ctx, slot, u) then
        local w = a.weight
        -- each checkout in a full pool waits pool_timeout: keep them rare
        if full and a.checkout and not (u and u.holds) and not (u and u.state ~= "ok") then w = w / 5 end
        cands[#cands + 1] = {slot, a, w}
        total = total + w
      end
    end
  end
  for _, a in ipairs(GLOBAL_ACTIONS) do
    if a.when(ctx) then
      cands[#cands + 1] = {0, a, a.weight}
      total = total + a.weight
    end
  end
  local x = ctx.rng:next() / M31 * total
  for _, c in ipairs(cands) do
    x = x - c[3]
    if x < 0 then return c[1], c[2] end
  end
  local c = cands[#cands]
  return c[1], c[2]
end

local function step(ctx)
  local slot, action = choose(ctx)
  local u = slot > 0 and ctx.units[slot] or nil
  ctx.current = slot > 0 and ("slot %d (%s): %s"):format(slot, unit_desc(u), action.name) or action.name
  local out = action.run(ctx, slot, u)
  ctx.trace[#ctx.trace + 1] = ("step %d: %s -> %s"):format(ctx.step, ctx.current, tostring(out))
  if #ctx.trace > 40 then table.remove(ctx.trace, 1) end
  local key = action.name .. " " .. (tostring(out):match("^(%S+)") or "")
  ctx.counts[key] = (ctx.counts[key] or 0) + 1
  SUITE.ran[action.name] = (SUITE.ran[action.name] or 0) + 1
  -- the library's in_transaction() against the model's (where the rules say
  -- what it is: not while a KILL is unseen or a rollback is pending)
  u = slot > 0 and ctx.units[slot] or nil
  if u and u.state == "ok" and u.lib_in_tx ~= nil and u.lib_in_tx ~= u.in_tx then
    fail(ctx, "in_transaction() is %s, the model says %s", tostring(u.lib_in_tx), tostring(u.in_tx))
  end
  ctx.current = nil
end

-- ---- a run ---------------------------------------------------------------------------------


local function run(variant, listener, seed, steps)
  local rng = new_rng(seed)
  local ctx = {
    name = variant.name .. (listener and " + listener" or ""), seed = seed, step = 0, rng = rng,
    obs = SUITE.obs, user = SUITE.user, mdl = SUITE.mdl,
    units = {}, workers = {}, locks = {}, killed = {}, threads = {}, marks = {}, nmark = 0,
    committed = {}, committed_list = {}, unknown = {}, ncommitted = 0,
    ntag = 0, nsp = 0, trace = {}, counts = {},
  }
  ctx.n = 4 + rng:below(2)
  local size, overflow = 2 + rng:below(2), 1 + rng:below(2)
  local opts = {pool_size = size, max_overflow = overflow, pool_timeout = 0.02,
    connect_args = {init_command = INIT}}
  for k, v in pairs(variant.opts) do opts[k] = v end
  ctx.null_pool = opts.poolclass == "NullPool"
  ctx.capacity = size + overflow
  ctx.reset = opts.pool_reset_on_return
  if ctx.reset == nil then ctx.reset = "rollback" end
  ctx.engine_desc = ("%d coroutines, pool_size %d, max_overflow %d, %s, pool_reset_on_return %s%s"):format(ctx.n,
    size, overflow, ctx.null_pool and "NullPool" or "QueuePool", tostring(ctx.reset),
    listener and ", a checkout listener" or "")

  -- a fresh ledger with a few committed rows (duplicate-key targets)
  local obs = ctx.obs
  obs:run("TRUNCATE TABLE state_ledger")
  for _, t in ipairs(SEEDED) do
    obs:run(("INSERT INTO state_ledger (tag, slot) VALUES ('%s', 0)"):format(t))
    ctx.committed[t] = true
    ctx.committed_list[#ctx.committed_list + 1] = t
  end

  local url = scoped.make_url(os.getenv("SCOPED_TEST_URL")):set({username = SUITE.user, password = SUITE.password})
  local ok, engine = pcall(scoped.create_engine, url, opts)
  if not ok then fail(ctx, "create_engine: %s", tostring(engine)) end
  ctx.engine = engine
  -- the independent client's own transaction, holding row locks (GLOBAL_ACTIONS)
  ctx.holder = I.connect()
  ctx.holder:autocommit(false)
  ctx.holder:run("SET SESSION innodb_lock_wait_timeout = 0")
  ctx.sentinel = I.connect()
  ctx.sentinel:autocommit(false)
  if listener then
    -- any listener makes the engine non-plain: Sessions take the Connection path
    scoped.event.listen(engine, "checkout", function() end)
  end
  ctx.Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
  for slot = 1, ctx.n do start_worker(ctx, slot) end

  local function finally_close()
    for slot = 1, ctx.n do ctx.workers[slot] = nil end
    ctx.units = {}
    collectgarbage()
    collectgarbage()
    pcall(ctx.holder.rollback, ctx.holder)
    ctx.holder:close()
    ctx.sentinel:close()
    engine:dispose()
  end

  local okrun, err = pcall(function()
    for s = 1, steps do
      ctx.step = s
      step(ctx)
      check_server(ctx)
      if s % LEDGER_EVERY == 0 then check_ledger(ctx) end
      if s % TRX_EVERY == 0 then check_innodb_trx(ctx) end
    end
    -- wind down through the same model: every unit ends, nothing stays
    ctx.step = steps + 1
    for slot = 1, ctx.n do
      local u = ctx.units[slot]
      if u then
        local a = ACTION[u.kind == "conn" and "close" or "remove"]
        ctx.current = ("slot %d (%s): %s (end of run)"):format(slot, unit_desc(u), a.name)
        a.run(ctx, slot, u)
        ctx.current = nil
        check_server(ctx)
      end
    end
    assert(ctx.holder:rollback())
    check_server(ctx)
    check_ledger(ctx)
    check_innodb_trx(ctx)
    if engine.pool:stats().checkedout ~= 0 then fail(ctx, "connections still checked out at the end") end
  end)
  finally_close()
  if not okrun then
    -- whatever a failure left on the server (a leaked transaction holds a
    -- metadata lock the next run's TRUNCATE would wait for) goes with it
    for _, r in ipairs(obs:rows("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '" .. ctx.user .. "'")) do
      obs:exec("KILL CONNECTION " .. r.ID)
    end
    error(err, 0)
  end

  -- disposed: the server lets go of every connection of the engine
  local deadline = now() + 5
  while tonumber(obs:scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '" .. ctx.user .. "'")) > 0 do
    if now() > deadline then fail(ctx, "connections of the engine still on the server after dispose()") end
    sleep(0.01)
  end

  local keys = {}
  for k in pairs(ctx.counts) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. " " .. ctx.counts[k] end
  io.write(("# state model [%s] seed %s: %d steps, %d rows committed; %s\n"):format(ctx.name, tostring(seed),
    steps, ctx.ncommitted, table.concat(parts, ", ")))
end

-- ---- the variants ---------------------------------------------------------------------------

-- io_wait that waits in select(2) (LuaSocket: any object with getfd): the
-- workers are coroutines, so every statement, COMMIT and ROLLBACK of the
-- units runs through the non-blocking driver (csrc/lua/lnb.c) while the
-- model's steps stay one after the other.
local socket = require "socket"
local function select_io_wait(_, fd, events, timeout)
  local obj = {getfd = function() return fd end, dirty = function() return false end}
  local r, w = socket.select(events:find("r", 1, true) and {obj} or nil,
    events:find("w", 1, true) and {obj} or nil, timeout)
  return (r and r[1] ~= nil) or (w and w[1] ~= nil) or false
end

local VARIANTS = {
  {name = "QueuePool FIFO", opts = {}},
  {name = "QueuePool LIFO", opts = {pool_use_lifo = true}},
  {name = "pool_pre_ping", opts = {pool_pre_ping = true}},
  {name = "reset commit", opts = {pool_reset_on_return = "commit"}},
  {name = "reset false", opts = {pool_reset_on_return = false}},
  {name = "reset_connection", opts = {pool_reset_on_return = "reset_connection"}},
  {name = "NullPool", opts = {poolclass = "NullPool"}},
  {name = "io_wait", opts = {io_wait = select_io_wait}},
}

describe("state model (seeded random units of work, checked against the server)", function()
  setup(function()
    assert(I.available, I.why)
    local obs = I.connect()
    SUITE.obs = obs
    -- the engine's own account, so its connections are the PROCESSLIST rows of that user
    SUITE.user = "scoped_sm_" .. obs:thread_id()
    SUITE.password = "sm" .. obs:thread_id()
    local db = I.parse_url(os.getenv("SCOPED_TEST_URL")).database or obs:scalar("SELECT DATABASE()")
    -- accounts a crashed earlier run left behind
    for _, r in ipairs(obs:rows("SELECT User AS u, Host AS h FROM mysql.user WHERE User LIKE 'scoped\\_sm\\_%'")) do
      if tonumber(obs:scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '" .. r.u .. "'")) == 0 then
        obs:exec(("DROP USER '%s'@'%s'"):format(r.u, r.h))
      end
    end
    for _, host in ipairs({"%", "localhost"}) do
      obs:run(("CREATE USER '%s'@'%s' IDENTIFIED BY '%s'"):format(SUITE.user, host, SUITE.password))
      obs:run(("GRANT ALL ON `%s`.* TO '%s'@'%s'"):format(db, SUITE.user, host))
    end
    obs:run("DROP TABLE IF EXISTS state_ledger")
    obs:run("CREATE TABLE state_ledger (tag VARCHAR(40) NOT NULL PRIMARY KEY, slot INT NOT NULL) ENGINE=InnoDB")
    obs:run("DROP TABLE IF EXISTS state_lock")
    obs:run("CREATE TABLE state_lock (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
    local values = {}
    for r = 1, SENTINEL_FIRST + SENTINEL_ROWS - 1 do values[#values + 1] = "(" .. r .. ", 0)" end
    obs:run("INSERT INTO state_lock VALUES " .. table.concat(values, ", "))
    -- invariant 2 needs the metadata_lock_info plugin
    local active = obs:scalar("SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'")
    if active ~= "ACTIVE" then obs:exec("INSTALL SONAME 'metadata_lock_info'") end
    active = obs:scalar("SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'")
    SUITE.mdl = active == "ACTIVE"
    if not SUITE.mdl then
      io.write("# NOTE state model: the metadata_lock_info plugin cannot be installed: metadata locks not checked\n")
    end
  end)

  teardown(function()
    local obs = SUITE.obs
    if not obs then return end
    obs:exec("DROP TABLE IF EXISTS state_ledger")
    obs:exec("DROP TABLE IF EXISTS state_lock")
    for _, host in ipairs({"%", "localhost"}) do
      obs:exec(("DROP USER IF EXISTS '%s'@'%s'"):format(SUITE.user, host))
    end
    obs:close()
  end)

  local k, all = 0, 0
  for _, variant in ipairs(VARIANTS) do
    for _, listener in ipairs({false, true}) do
      k = k + 1
      local name = variant.name .. (listener and " + listener" or "")
      if not ONLY or ONLY == name or ONLY == variant.name then
        local seeds = seeds_for(k)
        all = all + 1
        it(("%s (%s path): %s x %d steps hold the model and the server's invariants")
            :format(name, listener and "Session via Connection" or "Session fast",
              #seeds == 1 and ("seed " .. seeds[1]) or (#seeds .. " seeds"), STEPS), function()
          for _, seed in ipairs(seeds) do run(variant, listener, seed, STEPS) end
          SUITE.passed = SUITE.passed + 1
        end)
      end
    end
  end

  -- The scheduler reached every action (a precondition or weight gone wrong
  -- would otherwise quietly stop testing it): checked on the default seeds
  -- and step count (a replay, or the short SCOPED_SLOW runs, need not reach
  -- them all), when every run above went to its end.
  it("every action of the model ran in the runs above", function()
    if ENV_SEED or ENV_STEPS or ONLY or SLOW or SUITE.passed < all then return end
    local missing = {}
    for _, a in ipairs(ACTIONS) do
      if not SUITE.ran[a.name] then missing[#missing + 1] = a.name end
    end
    for _, a in ipairs(GLOBAL_ACTIONS) do
      if not SUITE.ran[a.name] then missing[#missing + 1] = a.name end
    end
    assert(#missing == 0, "never ran: " .. table.concat(missing, ", "))
  end)
end)
