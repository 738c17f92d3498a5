---@meta scoped
-- LuaCATS annotations of scoped's public API, for editors (LuaLS: add this
-- directory to "workspace.library"). Nothing here runs. The reference is
-- `make docs` (docs/index.html, from the doc comments in lua/scoped/);
-- spec/docs_spec.lua fails when a public name is missing here or there.

---@alias scoped.ErrorKind
---| "SQLAlchemyError"
---| "ArgumentError"
---| "InvalidRequestError"
---| "ResourceClosedError"
---| "PendingRollbackError"
---| "NoResultFound"
---| "MultipleResultsFound"
---| "TimeoutError"
---| "DBAPIError"
---| "InterfaceError"
---| "DatabaseError"
---| "DataError"
---| "OperationalError"
---| "IntegrityError"
---| "InternalError"
---| "ProgrammingError"
---| "NotSupportedError"

---@alias scoped.EventName
---| "connect"    # (raw): a new DB connection was opened
---| "checkout"   # (raw): a connection leaves the pool
---| "reset"      # (raw, state): a live connection goes back, before the pool's reset
---| "checkin"    # (raw): a connection goes back to the pool, after the reset
---| "invalidate" # (raw, err): a connection is discarded as unusable
---| "before_execute" # (conn, statement, params): before a statement is sent
---| "after_execute" # (conn, statement, params, result, seconds): after it ran
---| "handle_error" # (conn, err): a statement raised err
---| "before_cursor_execute" # the same list as before_execute
---| "after_cursor_execute" # the same list as after_execute
---| "host_denied" # (info): several hosts: {host, port, code, until} a host is denied
---| "host_restored" # (info): {host, port} a denied host gave a connection again
---| "failover" # (info): {from_host, from_port, host, port, code} connects moved to another host
---| "causal_timeout" # (info): a causal wait timed out: {gtid, timeout, fallback, mode}
---| "retry" # (info): scoped.retry redoes a unit: {attempt, code, sqlstate, attempts}

---@alias scoped.Value integer|number|string|boolean|lightuserdata|nil|table
---@alias scoped.Params table<string, scoped.Value>|scoped.Value[]

---@class scoped
---@field _VERSION string the release, semver ("0.2.0")
---@field null lightuserdata NULL: equal to ngx.null and cjson.null
---@field exc scoped.exc
---@field event scoped.event
---@field scopes scoped.scopes
---@field URL scoped.URL the URL class
---@field metrics scoped.metrics
---@field nonblocking scoped.nonblocking
---@field retry fun(fn: fun(session: scoped.Session): any, opts: scoped.RetryOptions): any, integer redo a unit of work refused by a deadlock or lock wait timeout; returns fn's value and the attempts
local scoped = {}

---A URL object from a string (or the URL itself).
---@param s string|scoped.URL
---@return scoped.URL
function scoped.make_url(s) end

---A pool of connections; opens no connection.
---@param url string|scoped.URL
---@param opts? scoped.EngineOptions
---@return scoped.Engine
function scoped.create_engine(url, opts) end

---A Session factory.
---@param kw scoped.Engine|{bind?: scoped.Engine, info?: table}
---@return scoped.Sessionmaker
function scoped.sessionmaker(kw) end

---A Session without a sessionmaker.
---@param kw? {bind?: scoped.Engine, info?: table}
---@return scoped.Session
function scoped.Session(kw) end

---One session per scope (default: the running coroutine).
---@param factory scoped.Sessionmaker|fun(kw?: table): scoped.Session
---@param scopefunc? fun(): any
---@return scoped.ScopedSession
function scoped.scoped_session(factory, scopefunc) end

---A standalone connection with no pool.
---@param u string|scoped.URL
---@return scoped.RawConnection
function scoped.raw_connect(u) end

---@class scoped.EngineOptions
---@field pool_size? number idle connections kept (default 5; 0: no limit)
---@field max_overflow? number connections beyond pool_size (default 10; -1: no limit)
---@field pool_timeout? number seconds to wait for a connection (default 30)
---@field pool_recycle? number seconds after which a connection is replaced (default -1)
---@field pool_pre_ping? boolean ping at checkout (default false)
---@field pool_use_lifo? boolean most recently returned first (default false)
---@field pool_reset_on_return? "rollback"|"commit"|"reset_connection"|false
---@field poolclass? "QueuePool"|"NullPool"
---@field echo? boolean log statements and pool events
---@field logger? fun(level: "info"|"warn", line: string)
---@field isolation_level? "READ COMMITTED"|"REPEATABLE READ"|"READ UNCOMMITTED"|"SERIALIZABLE"|"AUTOCOMMIT"
---@field track_gtid? boolean
---@field connect_args? table<string, string|number> URL query parameters
---@field hide_parameters? boolean keep bind values out of errors and logs
---@field pool_wait? fun(remaining: number, ticket: scoped.PoolTicket) wait (may yield) until a connection may be free, at most remaining seconds
---@field pool_wake? fun() called at each checkin: wakes a yielding pool_wait
---@field io_wait? false|fun(raw: scoped.RawConnection, fd: integer, events: "r"|"w"|"rw", timeout: number|nil): boolean wait (yielding) until the socket is ready: true, or false when timeout seconds passed; false: never (OpenResty's default off)
---@field shared? string engines of this name share one pool process-wide
---@field pool_leak_threshold? number seconds: report a connection held longer
---@field offload? string OpenResty: the nginx thread pool to run statements in

---@class scoped.URL
---@field drivername string
---@field username? string
---@field password? string
---@field host? string
---@field port? integer
---@field hosts? {host: string, port?: integer}[]
---@field database? string
---@field query table<string, string>
local URL = {}

---@param hide_password? boolean default true
---@return string
function URL:render_as_string(hide_password) end

---A copy with some fields changed.
---@param fields table
---@return scoped.URL
function URL:set(fields) end

---@class scoped.Engine
---@field url scoped.URL
---@field pool scoped.Pool
---@field echo boolean
---@field hide_parameters boolean
local Engine = {}

---@return scoped.Connection
function Engine:connect() end

---A Connection in a transaction; with fn, runs fn(conn) and commits (rolls back on error).
---@param fn? fun(conn: scoped.Connection)
---@return scoped.Connection?
function Engine:begin(fn) end

---Closes the idle connections and starts a fresh pool.
function Engine:dispose() end

---How many connections were newly reported as held past pool_leak_threshold.
---@return integer
function Engine:check_leaks() end

---One entry per host of the URL (several servers, README).
---@return scoped.HostInfo[]
function Engine:hosts() end

---@class scoped.HostInfo
---@field host string
---@field port integer
---@field state "up"|"denied"
---@field restored_in number seconds until the denial ends (0 when up)
---@field role "read-write"|"read-only"|"unknown"
---@field connects integer connections opened on it
---@field failures table<integer, integer> failed connects and disconnects by error code
---@field denials integer
---@field failovers integer connects that went to another host after this one failed
---@field open integer connections to it open now
---@field checkedout integer of those, checked out
---@field idle integer of those, idle in the pool
---@field checkout_waits integer checkouts that ended on it without an idle connection at hand
---@field checkout_wait number their time in seconds, summed (hosts tried before included)
---@field checkout_wait_max number the longest of them

---@class scoped.Pool
local Pool = {}

---@return string
function Pool:status() end
---@return integer
function Pool:size() end
---@return integer
function Pool:checkedin() end
---@return integer
function Pool:checkedout() end
---@return integer
function Pool:overflow() end
---@return scoped.PoolStats
function Pool:stats() end
function Pool:dispose() end

---@class scoped.PoolStats
---@field size integer pool_size
---@field checkedin integer idle connections in the pool
---@field checkedout integer connections checked out
---@field overflow integer connections beyond pool_size
---@field open integer connections open
---@field waiting integer callers waiting for a connection
---@field checkouts integer connections handed out
---@field waits integer checkouts that had to wait
---@field wait_seconds number the time those checkouts waited, summed
---@field wait_max number the longest wait
---@field timeouts integer checkouts that gave up after pool_timeout
---@field connects integer connections opened
---@field connect_failures integer connection attempts that failed
---@field invalidations integer connections discarded as invalid
---@field recycles integer connections replaced for being older than pool_recycle
---@field preping_failures integer connections replaced after failing the pre-ping
---@field failbacks integer idle connections replaced to fail back to an earlier host

---@class scoped.Connection
---@field engine scoped.Engine
---@field closed boolean
---@field raw? scoped.RawConnection
local Connection = {}

---@class scoped.ExecutionOptions
---@field stream_results? boolean
---@field yield_per? integer

---@param sql string
---@param params? scoped.Params|scoped.Params[]
---@param opts? scoped.ExecutionOptions
---@return scoped.Result
function Connection:execute(sql, params, opts) end

---@param opts scoped.ExecutionOptions
---@return scoped.Connection
function Connection:execution_options(opts) end

---@return scoped.ExecutionOptions
function Connection:get_execution_options() end

---@param sql string
---@param param_sets scoped.Params[]
---@return scoped.Result
function Connection:executemany(sql, param_sets) end

---@param sql string
---@return scoped.Result
function Connection:exec_driver_sql(sql) end

---@param sql string
---@param params? scoped.Params
---@return any
function Connection:scalar(sql, params) end

---@param sql string
---@param params? scoped.Params
---@return scoped.ScalarResult
function Connection:scalars(sql, params) end

function Connection:commit() end
function Connection:rollback() end
---@return scoped.Transaction
function Connection:begin() end
---@return scoped.Transaction
function Connection:begin_nested() end
---@return boolean
function Connection:in_transaction() end
---@param err? any
function Connection:invalidate(err) end
function Connection:close() end
---@return scoped.RawConnection
function Connection:get_raw() end

---@class scoped.Transaction
---@field conn scoped.Connection
---@field savepoint string|false
---@field is_active boolean
local Transaction = {}

function Transaction:commit() end
function Transaction:rollback() end
function Transaction:close() end

---@class scoped.RawConnection
local RawConnection = {}

---@param sql string
---@param params? scoped.Params
---@return scoped.Result
function RawConnection:execute(sql, params) end
---@param sql string
---@param param_sets scoped.Params[]
---@return scoped.Result
function RawConnection:executemany(sql, param_sets) end
---@param sql string
---@return scoped.Result
function RawConnection:exec_driver_sql(sql) end
---@param sql string
---@param params? scoped.Params
---@param yield_per? integer
---@return scoped.Result
function RawConnection:stream(sql, params, yield_per) end
---@param sql string
---@param params? scoped.Params
---@return string
function RawConnection:render(sql, params) end
function RawConnection:commit() end
function RawConnection:rollback() end
---@param commit boolean
function RawConnection:finish(commit) end
---@return boolean
function RawConnection:ping() end
---@param rollback? boolean
function RawConnection:close(rollback) end
---@return boolean
function RawConnection:closed() end
---@return boolean
function RawConnection:in_transaction() end
---@return integer
function RawConnection:thread_id() end
---@return string|nil
function RawConnection:last_gtid() end
function RawConnection:invalidate() end
---@return boolean
function RawConnection:is_invalidated() end
---@return scoped.Error?
function RawConnection:invalidation_error() end
function RawConnection:reset() end
---@param on boolean
function RawConnection:set_hide_parameters(on) end

---@class scoped.Row: { [integer]: any, [string]: any }
---@field _fields string[]
local Row = {}

---@return table<string, any>
function Row:_asdict() end

---@class scoped.Result
---@field rowcount integer
---@field lastrowid integer
---@field returns_rows boolean
---@field streaming? boolean
---@field yield_per? integer
local Result = {}

---@return scoped.Row?
function Result:fetchone() end
---@param n integer
---@return scoped.Row[]
function Result:fetchmany(n) end
---@return scoped.Row[]
function Result:fetchall() end
---@return scoped.Row[]
function Result:all() end
---@return string[]
function Result:keys() end
---@return boolean
function Result:nextset() end
function Result:close() end
---@return scoped.Row?
function Result:first() end
---@return scoped.Row
function Result:one() end
---@return scoped.Row?
function Result:one_or_none() end
---@return any
function Result:scalar() end
---@return any
function Result:scalar_one() end
---@return any
function Result:scalar_one_or_none() end
---@return fun(): scoped.Row?
function Result:iter() end
---@param n? integer
---@return fun(): scoped.Row[]?
function Result:partitions(n) end
---@param index? integer|string
---@return scoped.ScalarResult
function Result:scalars(index) end
---@return scoped.MappingResult
function Result:mappings() end

---@class scoped.ScalarResult
local ScalarResult = {}
---@return any
function ScalarResult:fetchone() end
---@param n integer
---@return any[]
function ScalarResult:fetchmany(n) end
---@return any[]
function ScalarResult:all() end
---@return any[]
function ScalarResult:fetchall() end
---@return any
function ScalarResult:first() end
---@return any
function ScalarResult:one() end
---@return any
function ScalarResult:one_or_none() end
---@return fun(): any
function ScalarResult:iter() end
---@param n? integer
---@return fun(): any[]?
function ScalarResult:partitions(n) end

---@class scoped.MappingResult
local MappingResult = {}
---@return table<string, any>?
function MappingResult:fetchone() end
---@param n integer
---@return table<string, any>[]
function MappingResult:fetchmany(n) end
---@return table<string, any>[]
function MappingResult:all() end
---@return table<string, any>[]
function MappingResult:fetchall() end
---@return table<string, any>?
function MappingResult:first() end
---@return table<string, any>
function MappingResult:one() end
---@return table<string, any>?
function MappingResult:one_or_none() end
---@return fun(): table<string, any>?
function MappingResult:iter() end
---@param n? integer
---@return fun(): table<string, any>[]?
function MappingResult:partitions(n) end

---@class scoped.Sessionmaker
---@field kw table what sessions are made with (bind, info)
---@overload fun(kw?: scoped.SessionOptions): scoped.Session
local Sessionmaker = {}

---@class scoped.SessionOptions
---@field bind? scoped.Engine
---@field info? table
---@field readonly? boolean
---@field causal_from? table
---@field causal_timeout? number
---@field causal_fallback? "primary"|"error"|"stale"
---@field causal? "gtid"|"sync_wait" how a reader catches up: MASTER_GTID_WAIT (default) or Galera's wsrep_sync_wait

---@param kw scoped.SessionOptions
function Sessionmaker:configure(kw) end

---@class scoped.Session
---@field bind? scoped.Engine
---@field info table
local Session = {}

---@param sql string
---@param params? scoped.Params|scoped.Params[]
---@param opts? scoped.ExecutionOptions
---@return scoped.Result
function Session:execute(sql, params, opts) end
---@param sql string
---@param param_sets scoped.Params[]
---@return scoped.Result
function Session:executemany(sql, param_sets) end
---@param sql string
---@param params? scoped.Params
---@return any
function Session:scalar(sql, params) end
---@param sql string
---@param params? scoped.Params
---@return scoped.ScalarResult
function Session:scalars(sql, params) end
---@return scoped.Connection
function Session:connection() end
---@return scoped.Engine?
function Session:get_bind() end
---@return boolean
function Session:in_transaction() end
function Session:commit() end
function Session:rollback() end
function Session:close() end
---@return scoped.SessionTransaction
function Session:begin() end
---@return scoped.SessionTransaction
function Session:begin_nested() end

---@class scoped.SessionTransaction
---@field session scoped.Session
---@field nested boolean
---@field tx? scoped.Transaction a savepoint's handle (nested ones)
---@field is_active boolean
local SessionTransaction = {}

function SessionTransaction:commit() end
function SessionTransaction:rollback() end
function SessionTransaction:close() end

---@class scoped.ScopedSession
---@field registry scoped.ScopeRegistry
---@field session_factory scoped.Sessionmaker|fun(kw?: table): scoped.Session
---@overload fun(kw?: table): scoped.Session
local ScopedSession = {}

---Closes the current scope's session and forgets it.
function ScopedSession:remove() end
---@param kw table
function ScopedSession:configure(kw) end
---@param sql string
---@param params? scoped.Params|scoped.Params[]
---@param opts? scoped.ExecutionOptions
---@return scoped.Result
function ScopedSession:execute(sql, params, opts) end
---@param sql string
---@param param_sets scoped.Params[]
---@return scoped.Result
function ScopedSession:executemany(sql, param_sets) end
---@param sql string
---@param params? scoped.Params
---@return any
function ScopedSession:scalar(sql, params) end
---@param sql string
---@param params? scoped.Params
---@return scoped.ScalarResult
function ScopedSession:scalars(sql, params) end
---@return scoped.Connection
function ScopedSession:connection() end
---@return scoped.Engine?
function ScopedSession:get_bind() end
---@return boolean
function ScopedSession:in_transaction() end
function ScopedSession:commit() end
function ScopedSession:rollback() end
function ScopedSession:close() end
---@return scoped.SessionTransaction
function ScopedSession:begin() end
---@return scoped.SessionTransaction
function ScopedSession:begin_nested() end

---@class scoped.ScopeRegistry
local ScopeRegistry = {}
---@return boolean
function ScopeRegistry:has() end
---@param s scoped.Session
function ScopeRegistry:set(s) end
function ScopeRegistry:clear() end

---@class scoped.scopes
local scopes = {}
---The running coroutine (the default scope).
---@return thread
function scopes.coroutine() end
---The nginx request (OpenResty only).
---@return table
function scopes.ngx_request() end

---@class scoped.event
local event = {}
---@param target scoped.Engine
---@param name scoped.EventName
---@param fn function
function event.listen(target, name, fn) end
---@param target scoped.Engine
---@param name scoped.EventName
---@param fn function
function event.remove(target, name, fn) end
---@param target scoped.Engine
---@param name scoped.EventName
---@param fn function
---@return boolean
function event.contains(target, name, fn) end
---@param engine scoped.Engine
---@param name scoped.EventName
function event.fire(engine, name, ...) end

---@class scoped.metrics
local metrics = {}
---The pools' state and counters in Prometheus' text exposition format.
---@param engines scoped.Engine|scoped.Engine[]
---@return string
function metrics.prometheus(engines) end

---@class scoped.UnitCounters
---@field causal_waits integer
---@field causal_timeouts integer
---@field causal_fallbacks integer
---@field causal_errors integer
---@field causal_stale integer
---@field retries integer
---@field retries_exhausted integer

---The engine's causal read and retry counters (a copy).
---@param engine scoped.Engine
---@return scoped.UnitCounters
function metrics.counters(engine) end

---@class scoped.RetryOptions
---@field sessionmaker fun(): scoped.Session what makes each attempt's Session
---@field attempts? integer at most this many (default 3)
---@field codes? integer[] server error codes retried (default {1213, 1205})
---@field idempotent? boolean redo even a COMMIT of unknown outcome (default false)
---@field on_retry? fun(err: scoped.Error, attempt: integer) before each new attempt

---@class scoped.nonblocking
local nonblocking = {}
---A checkout's place in the pool's queue, given to pool_wait.
---@class scoped.PoolTicket
local PoolTicket = {}
---Seconds left before the checkout's pool_timeout.
---@return number
function PoolTicket:remaining() end
---Whether trying again now gets something: a connection or a slot handed to it, or its timeout.
---@return boolean
function PoolTicket:ready() end

---create_engine options with io_wait, pool_wait and pool_wake for cqueues.
---@param opts? scoped.EngineOptions
---@return scoped.EngineOptions
function nonblocking.cqueues(opts) end
---create_engine options with io_wait, pool_wait and pool_wake for luv (libuv).
---@param opts? scoped.EngineOptions
---@return scoped.EngineOptions
function nonblocking.luv(opts) end

---@class scoped.Error
---@field kind scoped.ErrorKind
---@field message string
---@field commit_unknown? boolean the connection died under a COMMIT: it may or may not have committed
---@field code? integer the server's errno
---@field sqlstate? string
---@field statement? string
---@field params? table
---@field connection_invalidated? boolean
---@field hint? string the next step, one line (also in tostring(err))
---@field checkedout? integer pool TimeoutError: connections checked out
---@field pool_size? integer pool TimeoutError
---@field max_overflow? integer pool TimeoutError
---@field pool_timeout? number pool TimeoutError
---@field phase? string pool TimeoutError under nginx: the phase that cannot wait
---@field checked_out_at? string[] pool TimeoutError with pool_leak_threshold: the checkouts' tracebacks

---@class scoped.exc
---@field hierarchy table<scoped.ErrorKind, scoped.ErrorKind> kind -> parent kind
local exc = {}
---@param err any
---@param kind scoped.ErrorKind
---@return boolean
function exc.is(err, kind) end
---@param kind scoped.ErrorKind
---@param message string
---@param fields? table
---@return scoped.Error
function exc.new(kind, message, fields) end
---@param kind scoped.ErrorKind
---@param fmt string
function exc.raise(kind, fmt, ...) end
---@param in_savepoint? boolean
function exc.pending_rollback(in_savepoint) end
---@param params table
---@return string
function exc.render_params(params) end

return scoped
