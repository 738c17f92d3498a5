-- scoped.ngx: what changes under OpenResty (nginx + ngx_lua + lua-resty-core).
--
-- A plug-in: scoped's entry module calls M.install() when it finds an ngx
-- table, and only an nginx worker's lua_State (M.active) installs anything:
-- an engine hook (engine.on_create) and two scope registries
-- (scoping.register_scope). Plain Lua never loads this file, and nothing
-- else in scoped knows of nginx. Four things:
--
-- 1. Pool waits never block the worker. An engine made without pool_wait
--    gets one here: the checkout's ticket waits on an ngx.semaphore of that
--    engine in this worker, and every checkin in this worker wakes the
--    waiters, which try their tickets again (the C pool keeps them in FIFO
--    order). In a phase that cannot yield (init, init_worker, set, log,
--    header_filter, body_filter, balancer, ...) the checkout tries once and
--    raises TimeoutError at once.
--
-- 2. No session crosses requests. ngx_lua gives a finished request's
--    coroutine object to the next request, so the coroutine scope also
--    records the request (its ngx.ctx) that made each session; a session met
--    in another request is rolled back, its connection returned, a warning
--    logged, and a fresh one made. Session:remove() in log_by_lua closes
--    whatever the request left in any of its coroutines (the safety net).
--    scopes.ngx_request keys sessions by the request itself.
--
-- 3. Offload (create_engine option offload = "<thread_pool>"): statements
--    run in nginx's thread pool through ngx.run_worker_thread. The session's
--    connection stays checked out by the worker (its pool waits stay here,
--    on the semaphore) and is lent to a pool thread for each statement
--    (core.lease, csrc/lua/llease.c), so a transaction spans statements as
--    usual. Results come back as plain tables and are served by a Result
--    with the usual API; errors come back as error tables.
--
-- 4. Statements never block the worker: every round trip that would block
--    waits for the socket in nginx's event loop (io_wait, with the small C
--    shim csrc/ngx/ngx_wait.c) while other requests run. The default for
--    every engine made without offload or io_wait.
local core = require "scoped.core"
local exc = require "scoped.exc"

local M = {}

local ngx = rawget(_G, "ngx")

-- nginx worker (or master) VM: the threads of ngx.run_worker_thread have an
-- ngx table too, whose get_phase() says "init", but no ngx.sleep -- and a
-- pool thread may well block in C, so nothing here applies to them.
M.active = type(ngx) == "table" and type(ngx.get_phase) == "function"
  and type(ngx.sleep) == "function"

-- Phases whose handlers run in a coroutine that may yield (ngx.semaphore's
-- wait works there). Everything else -- init, init_worker, set, log,
-- header_filter, body_filter, balancer, exit_worker, ssl_session_store --
-- cannot wait.
local YIELDABLE = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}
-- Where ngx.run_worker_thread works (0.10.23: checked, timers included).
local OFFLOADABLE = {rewrite = true, access = true, content = true, timer = true}

-- A waiter wakes at least this often to try its ticket again: a connection
-- returned by the garbage collector (a session never closed), or taken back
-- from a ticket whose holder died, comes back without a checkin here to
-- post the semaphore.
local POLL_SECONDS = 0.1

local get_phase = M.active and ngx.get_phase or function() return nil end

--- Whether the running handler may wait (yield).
function M.can_yield()
  return YIELDABLE[get_phase()] == true
end

-- ---- 1. the pool wait -------------------------------------------------------

local semaphore -- ngx.semaphore, loaded on the first wait

local function no_wait(engine, phase)
  local o = engine._opts
  error(exc._hint(exc.new("TimeoutError", string.format(
    "QueuePool limit of size %d overflow %d reached, connection timed out, timeout %.2f " ..
    "(the %s phase cannot wait for a connection)",
    o.pool_size, o.max_overflow, o.pool_timeout, tostring(phase)), {
      checkedout = engine._cpool:stats().checkedout, pool_size = o.pool_size,
      max_overflow = o.max_overflow, pool_timeout = o.pool_timeout, phase = tostring(phase),
    })), 0)
end

-- engine -> its pool waiters' state in this worker (M._pool_wake_counts)
local pool_states = setmetatable({}, {__mode = "k"})

--- For the specs: how many pool waiters of engine this worker woke (posts)
--- and how many wait now.
function M._pool_wake_counts(engine)
  local state = pool_states[engine]
  if not state then return nil end
  local n = 0
  for _ in pairs(state.waiting) do n = n + 1 end
  return state.posts, n
end

--- attach(engine): gives an engine made under OpenResty a non-blocking
--- pool_wait (unless it has one) with its checkin notifier, and the offload
--- wrapper when asked for. Called by create_engine; opens nothing, creates
--- no semaphore (the engine may be made in init_by_lua, before fork: each
--- worker makes its own semaphore on its first wait).
function M.attach(engine)
  if not M.active then return end
  local hooks = {}
  if not engine._pool_wait then
    -- this worker's waiters of this engine: ticket -> the semaphore its
    -- light thread waits on (weak keys: the ticket of a killed light
    -- thread is collected, which gives its place up); spare semaphores
    local state = {waiting = setmetatable({}, {__mode = "k"}), spare = {}, nspare = 0, posts = 0}
    pool_states[engine] = state
    hooks.pool_wait = function(remaining, ticket)
      local phase = get_phase()
      if not YIELDABLE[phase] then no_wait(engine, phase) end
      if not (remaining > 0) then return end -- the next try reports the timeout
      local sem
      if state.nspare > 0 then
        sem = state.spare[state.nspare]
        state.spare[state.nspare] = nil
        state.nspare = state.nspare - 1
      else
        semaphore = semaphore or require "ngx.semaphore"
        sem = assert(semaphore.new(0))
      end
      state.waiting[ticket or sem] = sem
      local ok, err = sem:wait(remaining < POLL_SECONDS and remaining or POLL_SECONDS)
      state.waiting[ticket or sem] = nil
      -- kept for the next wait unless a post came after its timeout
      if sem:count() == 0 then
        state.nspare = state.nspare + 1
        state.spare[state.nspare] = sem
      end
      if not ok and err ~= "timeout" then error(err, 0) end
    end
    -- A checkin (or a freed slot) is granted by the C pool to the head
    -- ticket of its FIFO queue: wake the waiters whose tickets are served
    -- (or timed out), each through its own semaphore, and no other. (Before
    -- 2026-12-06 every waiter was woken and all but one waited again: with
    -- 15 waiters a checkin resumed 15 light threads.) A waiter with no
    -- ticket (a pool_wait called by someone else) is always woken.
    hooks.released = function()
      for ticket, sem in pairs(state.waiting) do
        if ticket == sem or ticket:ready() then
          state.waiting[ticket] = nil
          state.posts = state.posts + 1
          sem:post(1)
        end
      end
    end
  end
  local pool = engine._opts.offload
  if pool ~= nil then
    hooks.wrap = function(raw) return M.offloaded(raw, pool) end
  else
    if engine._opts.io_wait == nil and not rawget(engine, "_io_wait") then
      -- statements wait for the server in nginx's event loop (section 4),
      -- unless the shim is not there (then they block, as before)
      hooks.io_wait = M.io_wait_hook()
    end
    if hooks.io_wait or rawget(engine, "_io_wait") then
      -- ours or the engine's own: never where nginx cannot yield
      hooks.io_can_wait = M.can_yield
    end
  end
  if engine._opts.logger == nil then
    -- nginx's error log, at the level of each line: echo's lines at INFO
    -- (seen with error_log ... info), what went wrong on the side at WARN
    hooks.log = function(level, line)
      ngx.log(level == "info" and ngx.INFO or ngx.WARN, line)
    end
  end
  engine:_set_hooks(hooks)
end

-- ---- 2. request tracking ----------------------------------------------------

local function get_ctx() return ngx.ctx end

-- The running request's identity: its ngx.ctx table (the same in every
-- phase and light thread of the request, a new one for the next request).
-- nil where there is no request (init; resty.core raises "no request").
local function request()
  local ok, ctx = pcall(get_ctx)
  if ok then return ctx end
  return nil
end
M.request = request

local function close_session(s, why)
  local ok, err = pcall(s.close, s)
  if not ok then
    ngx.log(ngx.ERR, "scoped: closing ", why, " failed: ", tostring(err))
  end
end

local STALE_WARNING = "scoped: session not removed at the end of the request " ..
  "(rolled back, connection returned; call Session:remove() at the end of the handler " ..
  "and in log_by_lua)"

--- The coroutine scope under OpenResty: core.thread_registry(true) keyed by
--- the coroutine, each session recorded with the request that made it; a
--- registry as scoped/scoping.lua describes them, whose remove() in the log
--- phase closes whatever the request left (teardown).
function M.coroutine_registry()
  local cget, cset, cclear, map, owners = core.thread_registry(true)
  local function get()
    local s, stale = cget(request())
    if stale ~= nil then
      -- this coroutine served an earlier request that never removed its
      -- session: that request is over, so is its transaction
      cclear()
      ngx.log(ngx.WARN, STALE_WARNING)
      close_session(stale, "a stale session")
    end
    return s
  end
  local function set(s) cset(s, request()) end
  -- -> the running coroutine's session, which it forgets; a stale one is
  -- closed by get() (with its warning) and not returned
  local function clear()
    local s = get()
    if s ~= nil then cclear() end
    return s
  end
  -- log_by_lua runs after every coroutine of the request is done (on the
  -- main thread): close whatever this request left, in any coroutine.
  local function teardown()
    get() -- the running coroutine's own entry, if stale
    local req = request()
    if req == nil then return end
    local left = {}
    for co, s in pairs(map) do
      if owners[co] == req then left[#left + 1] = co end
    end
    for i = 1, #left do
      local co = left[i]
      local s = map[co]
      map[co], owners[co] = nil, nil
      if s ~= nil then close_session(s, "the request's session") end
    end
  end
  local function remove(default)
    if get_phase() == "log" then return teardown() end
    return default()
  end
  return {get = get, set = set, clear = clear, remove = remove}
end

--- scopes.ngx_request's key: the running request (its ngx.ctx), or a clear
--- error outside one. scoping.lua keys a weak registry by it: one session
--- per request, shared by its light threads, gone with the request's table
--- (Session:remove() returns the connection sooner).
function M.request_key()
  local req = request()
  if req == nil then
    exc.raise("InvalidRequestError", "scopes.ngx_request: there is no request in the %s phase",
      tostring(get_phase()))
  end
  return req
end

-- ---- 3. offload -------------------------------------------------------------

-- The worker's stand-in for a RawConnection of an offload engine: the real
-- one stays inside (and in the pool's books); statements go to a thread.
local Offloaded = {}
Offloaded.__index = Offloaded

function M.offloaded(raw, thread_pool)
  return setmetatable({_raw = raw, _pool = thread_pool}, Offloaded)
end

local function busy()
  exc.raise("InvalidRequestError",
    "This connection is busy: a statement of another light thread is running on it in a worker thread")
end

local function raw_of(self)
  local lease = self._lease
  if lease ~= nil then
    if lease:busy() then busy() end
    -- the thread is done but the coroutine that lent the connection has
    -- not taken it back: it was killed (ngx.thread.kill, a client abort)
    -- while waiting, or has yet to resume. Take it back now; run() knows.
    self._lease = nil
    lease:restore(self._raw)
  end
  return self._raw
end

local function run(self, op, a, b)
  local raw = raw_of(self)
  if not OFFLOADABLE[get_phase()] then
    -- ngx.run_worker_thread cannot be waited for here: run it inline
    return raw[op](raw, a, b)
  end
  local lease = core.lease(raw) -- raw reads as closed until restored
  self._lease = lease
  local ok, ran, fine, payload = pcall(ngx.run_worker_thread, self._pool, "scoped.ngx", "_offloaded",
    lease:id(), op, a, b)
  -- the thread has given it back by now (or never had it)
  if self._lease == lease then
    self._lease = nil
    lease:restore(raw)
  end
  if not ok then error(ran, 0) end -- a wrong argument to run_worker_thread
  if not ran then
    exc.raise("InternalError", "offload to thread pool '%s' failed: %s", self._pool, tostring(fine))
  end
  if not fine then
    if type(payload) == "table" then error(setmetatable(payload, core.error_mt), 0) end
    error(payload, 0)
  end
  if payload == nil then return nil end -- commit, rollback
  -- the rows come back as plain tables: the same C code that builds every
  -- Result makes them one (rows, errors and methods alike)
  return core.result_from_tables(payload)
end

function Offloaded:execute(sql, params) return run(self, "execute", sql, params) end
function Offloaded:exec_driver_sql(sql) return run(self, "exec_driver_sql", sql) end
function Offloaded:executemany(sql, sets) return run(self, "executemany", sql, sets) end
-- stream_results under offload: the rows come back from the pool thread as
-- plain tables, all at once, so the statement runs buffered
function Offloaded:stream(sql, params) return run(self, "execute", sql, params) end
function Offloaded:commit() return run(self, "commit") end
function Offloaded:rollback() return run(self, "rollback") end

-- Everything else is quick and local: straight to the real connection.
for _, name in ipairs({"render", "ping", "in_transaction", "thread_id", "last_gtid", "invalidate",
                       "is_invalidated", "invalidation_error", "reset", "set_hide_parameters",
                       "_check_idle"}) do
  Offloaded[name] = function(self, ...)
    local raw = raw_of(self)
    return raw[name](raw, ...)
  end
end
function Offloaded:closed()
  if self._lease ~= nil then return false end
  return self._raw:closed()
end
function Offloaded:close() return raw_of(self):close() end
Offloaded.__tostring = function(self) return "Offloaded(" .. tostring(self._raw) .. ")" end

-- ---- the pool thread's side -------------------------------------------------

-- Error tables as plain tables (no metatable crosses lua_States); a Lua
-- error that is not one becomes its message.
local function plain_error(e)
  if type(e) ~= "table" then return tostring(e) end
  local t = {}
  for k, v in pairs(e) do
    local tv = type(v)
    -- what ngx.run_worker_thread can copy: no functions, no userdata but NULL
    if type(k) == "string" and tv ~= "function" and tv ~= "thread"
        and (tv ~= "userdata" or v == core.null) then
      t[k] = v
    end
  end
  return t
end

local function plain_result(res)
  local sets = {}
  if res.returns_rows then
    repeat
      -- rows are arrays; their metatables stay behind (the copy drops them)
      sets[#sets + 1] = {keys = res:keys(), rows = res:fetchall()}
    until not res:nextset()
  end
  return {rowcount = res.rowcount, lastrowid = res.lastrowid, sets = sets}
end

local OPS = {execute = true, exec_driver_sql = true, executemany = true, commit = true, rollback = true}

--- Runs in a thread of nginx's thread pool (ngx.run_worker_thread):
--- borrows the worker's connection, runs one statement, gives it back.
--- Returns true, result or false, error (both plain tables).
function M._offloaded(id, op, a, b)
  if not OPS[op] then return false, "scoped.ngx: unknown operation " .. tostring(op) end
  require "scoped" -- the result and error methods, once per thread VM
  local ok, raw = pcall(core.lease_borrow, id)
  if not ok then return false, plain_error(raw) end
  local fine, out = pcall(raw[op], raw, a, b)
  if fine and out ~= nil then
    fine, out = pcall(plain_result, out)
  end
  core.lease_return(id, raw)
  if not fine then return false, plain_error(out) end
  return true, out
end

-- ---- 4. the non-blocking io_wait ---------------------------------------------
--
-- io_wait(raw, fd, events, timeout): the socket is registered with nginx's
-- epoll on its first wait and stays registered while it is the same socket
-- (an ngx_connection_t of the worker's free list, never closed by nginx:
-- the fd is libmariadb's); the light thread waits on the registration's
-- semaphore, which the C handler posts when the socket is ready. A wait on
-- a registered socket makes no epoll call: one fstat (still the same
-- socket?). The C half, csrc/ngx/ngx_wait.c, says how registrations of
-- closed sockets are freed (a sweep here, at most every SWEEP_SECONDS, and
-- the idle mark for a graceful shutdown) and what a killed waiter leaves.

local nb          -- the shim once loaded (a table), false when unavailable
local nb_reason   -- why not, for M.io_wait_status()

local EVENTS = {r = 1, w = 2, rw = 3}
-- how often a wait sweeps (frees the registrations of closed sockets)
local SWEEP_SECONDS = 1
local ngx_now = M.active and ngx.now or os.time
-- no timeout given: wake up at least this often anyway (a spurious wake-up:
-- the caller tries its operation again and waits again)
local LONG_WAIT = 60

local function load_nb()
  if nb ~= nil then return nb end
  nb = false
  if not M.active then nb_reason = "not in an nginx worker"; return nb end
  local okf, ffi = pcall(require, "ffi")
  if not okf then nb_reason = "no FFI (LuaJIT)"; return nb end
  -- lua-resty-core's, which loads only in an nginx worker with ngx_lua
  local oks, sem = pcall(require, "ngx.semaphore")
  if not oks then nb_reason = "ngx.semaphore: " .. tostring(sem); return nb end
  semaphore = sem
  local path = package.searchpath("scoped.ngx_wait", package.cpath)
  if not path then
    nb_reason = "scoped/ngx_wait.so is not on lua_package_cpath (built when nginx-dev is installed)"
    return nb
  end
  -- a second load of this file (lua_code_cache off) finds them defined
  pcall(ffi.cdef, [[
    typedef struct {
      void *c; void *sema; uint64_t dev; uint64_t ino; int fd; int ready; int want; int posted;
    } scoped_ngx_wait_t;
    int scoped_ngx_wait_begin(scoped_ngx_wait_t *w, int fd, int events, void *sema);
    int scoped_ngx_wait_sweep(scoped_ngx_wait_t *w);
    int scoped_ngx_wait_stale(const scoped_ngx_wait_t *w);
    void scoped_ngx_wait_release(scoped_ngx_wait_t *w, int check);
    int scoped_ngx_wait_poll(int fd, int events, int ms);
    int scoped_ngx_wait_abi(void);
    int scoped_ngx_wait_check(void);
  ]])
  local okl, lib = pcall(ffi.load, path)
  if not okl then nb_reason = "loading " .. path .. ": " .. tostring(lib); return nb end
  if lib.scoped_ngx_wait_abi() ~= ffi.sizeof("scoped_ngx_wait_t") then
    nb_reason = path .. " does not match lua/scoped/ngx.lua (rebuild it)"
    return nb
  end
  -- built against another nginx (another version or configure options):
  -- its structures may differ from this one's, so never call into it
  if lib.scoped_ngx_wait_check() ~= 1 then
    nb_reason = path .. " was built for another nginx (version or signature differ: make ngx-wait)"
    return nb
  end
  -- regs[fd] = {w = the C registration, sem = its semaphore}: kept while
  -- the worker lives (an entry whose w.c is NULL is registered again by the
  -- next wait on that fd number)
  nb = {lib = lib, ffi = ffi, regs = {}, swept = 0, exiting = ngx.worker.exiting}
  return nb
end

--- io_wait_status() -> true, or false and why the non-blocking io_wait is
--- not available in this process.
function M.io_wait_status()
  if load_nb() then return true end
  return false, nb_reason
end

-- Frees the registrations whose fd is no longer their socket (closed by
-- libmariadb, the number maybe reused): at most every SWEEP_SECONDS from a
-- wait. The closed socket left epoll when it was closed; this gives the
-- ngx_connection_t back to the worker.
local function sweep(n)
  local sweep_one = n.lib.scoped_ngx_wait_sweep
  for _, reg in pairs(n.regs) do sweep_one(reg.w) end
end

local function poll_wait(n, fd, ev, timeout)
  local ms = -1
  if timeout ~= nil then ms = timeout > 0 and math.floor(timeout * 1000 + 0.5) or 0 end
  local r = n.lib.scoped_ngx_wait_poll(fd, ev, ms)
  if r < 0 then
    exc.raise("OperationalError", "scoped.ngx: poll(%d) failed: %s", fd, n.ffi.errno())
  end
  return r == 1
end

local warned_full = false

local function io_wait(raw, fd, events, timeout) -- luacheck: ignore raw
  local n = nb
  local ev = EVENTS[events]
  if ev == nil or math.type and math.type(fd) == "float" or type(fd) ~= "number" then
    exc.raise("ArgumentError", "io_wait: bad fd %s or events %s", tostring(fd), tostring(events))
  end
  if not YIELDABLE[get_phase()] or (timeout ~= nil and timeout <= 0) then
    return poll_wait(n, fd, ev, timeout)
  end
  local t = ngx_now()
  if t - n.swept >= SWEEP_SECONDS then
    n.swept = t
    sweep(n)
  end
  local reg = n.regs[fd]
  if reg == nil then
    reg = {w = n.ffi.new("scoped_ngx_wait_t"), sem = assert(semaphore.new(0))}
    n.regs[fd] = reg
  end
  local w, sem = reg.w, reg.sem
  -- a post for a waiter that is gone (killed, or timed out first): stale
  if sem:count() > 0 then sem:wait(0) end
  local rc = n.lib.scoped_ngx_wait_begin(w, fd, ev, sem.sem)
  if rc == 1 then return true end
  if rc ~= 0 then
    if rc == -1 and not warned_full then
      warned_full = true
      ngx.log(ngx.WARN, "scoped: no free connection in this worker to wait for the database; "
        .. "waiting blocks the worker (raise worker_connections)")
    end
    if rc ~= -1 then
      exc.raise("OperationalError", "scoped.ngx: cannot wait for fd %d: %s", fd, n.ffi.errno())
    end
    return poll_wait(n, fd, ev, timeout)
  end
  local ok, err = sem:wait(timeout or LONG_WAIT)
  -- no longer waiting: a later event only records the readiness
  w.want = 0
  local posted = w.posted ~= 0
  -- nginx is exiting: nothing stays registered (the exit reports any
  -- connection left as an "open socket" alert)
  if n.exiting() then n.lib.scoped_ngx_wait_release(w, 1) end
  if ok then return true end
  if err ~= "timeout" then error(err, 0) end
  return posted or timeout == nil
end

--- io_wait_hook() -> the non-blocking io_wait (nil when the shim cannot
--- load here: see io_wait_status()).
function M.io_wait_hook()
  if not load_nb() then return nil end
  return io_wait
end

--- For the specs: this worker's registrations: how many are live (in
--- nginx's epoll), how many of those wait (a light thread is waiting on
--- them, or was when it was killed), and how many are stale (their fd no
--- longer their socket: closed, to be freed by the next sweep); sweep() first
--- when asked. Also the set of registered fds {[fd] = true}.
function M._io_wait_counts(do_sweep)
  local n = load_nb()
  if not n then return nil end
  if do_sweep then sweep(n) end
  local live, waiting, stale, fds = 0, 0, 0, {}
  for fd, reg in pairs(n.regs) do
    local w = reg.w
    if w.c ~= nil then
      live = live + 1
      fds[fd] = true
      if w.want ~= 0 then waiting = waiting + 1 end
      if n.lib.scoped_ngx_wait_stale(w) == 1 then stale = stale + 1 end
    end
  end
  return live, waiting, stale, fds
end

--- Installs what changes under OpenResty: every new engine gets attach(),
--- the coroutine scope a registry that knows requests, scopes.ngx_request
--- a registry keyed by the request. Called by scoped/init.lua.
function M.install()
  if not M.active or M.installed then return end
  M.installed = true
  require("scoped.engine").on_create(M.attach)
  local scoping = require "scoped.scoping"
  scoping.register_scope(scoping.scopes.coroutine, M.coroutine_registry)
  scoping.register_scope(scoping.scopes.ngx_request, function()
    return scoping.scopefunc_registry(M.request_key)
  end)
end

return M
