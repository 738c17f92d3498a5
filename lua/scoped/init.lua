--- scoped: SQLAlchemy's create_engine / sessionmaker / scoped_session for Lua,
-- over a C core (scoped.core) that talks to MySQL / MariaDB.
--
--     local scoped = require "scoped"
--     local engine = scoped.create_engine("mysql://app:secret@127.0.0.1:3306/shop?charset=utf8mb4")
--     local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
--
--     local rows = Session:execute("SELECT * FROM t WHERE id = :id", {id = 1}):all()
--     Session:commit(); Session:remove()
--
-- The README has the rules (transactions, binds, the busy rule, fork,
-- OpenResty) and the Guarantees; this reference has every name.
-- @module scoped
local core = require "scoped.core"
local exc = require "scoped.exc"
local url = require "scoped.url"
local engine = require "scoped.engine"
require "scoped.result"

--- The module's table.
-- @table scoped
-- @field _VERSION (string) the release, semver: "0.2.0"
-- @field null NULL: the NULL lightuserdata, equal to `ngx.null` and `cjson.null`
-- @field exc (table) the error kinds and helpers: `exc`, `ErrorKinds`
-- @field make_url `scoped.url.make_url`
-- @field URL the URL class (`scoped.url.URL`)
-- @field create_engine `scoped.engine.create_engine`
-- @field event `scoped.event`: listen, remove, contains
-- @field sessionmaker `scoped.session.sessionmaker`
-- @field Session `scoped.session.new_session`: a Session without a sessionmaker
-- @field scoped_session `scoped.scoping.scoped_session`
-- @field scopes `scoped.scoping.scopes`: coroutine, ngx_request
-- @field raw_connect `raw_connect`
-- @field metrics `scoped.metrics`: prometheus(engines), the pools for a /metrics location
-- @field nonblocking `scoped.nonblocking`: cqueues{...}, luv{...}, the io_wait adapters
-- @field retry `scoped.retry`: redo a unit of work refused by a deadlock or lock wait timeout
local scoped = {
  -- The release, semver. The one place it is written: the Makefile's dist
  -- reads it from here, spec/release_spec.lua checks that the versioned
  -- rockspec and CHANGELOG.md agree with it. The C core has no version of
  -- its own (a rock installs both halves together).
  _VERSION = "0.2.0",
  null = core.null,   -- NULL: the same lightuserdata as ngx.null and cjson.null
  exc = exc,
  make_url = url.make_url,
  URL = url.URL,
  create_engine = engine.create_engine,
  event = require "scoped.event",
  metrics = require "scoped.metrics", -- metrics.prometheus(engines): the pools for /metrics
  nonblocking = require "scoped.nonblocking", -- cqueues{...}, luv{...}: io_wait adapters
  retry = require "scoped.retry", -- retry(fn, {sessionmaker = ...}): a unit of work redone
}

local session = require "scoped.session"
local scoping = require "scoped.scoping"
scoped.sessionmaker = session.sessionmaker
scoped.Session = session.new_session
scoped.scoped_session = scoping.scoped_session
scoped.scopes = scoping.scopes

--- A standalone connection with no pool, for scripts and tests: the lowest
--- layer that the engine's pool hands out.
-- @tparam string|URL u
-- @treturn RawConnection autocommit as the server's default
-- @function raw_connect
function scoped.raw_connect(u)
  return core.connect(url.make_url(u))
end

-- Runtime plug-ins: under OpenResty (an ngx table), scoped.ngx installs its
-- engine hooks and scope registries (it does nothing in the threads of
-- ngx.run_worker_thread, which have an ngx table too).
if rawget(_G, "ngx") ~= nil then require("scoped.ngx").install() end

--- `scoped.exc`: the error kinds (SQLAlchemy's) and their helpers.
-- @section exc

--- The error kinds, each below its parent (SQLAlchemy's hierarchy);
-- `scoped.exc.is(err, "DBAPIError")` follows it. Server errors map to kinds
-- as mysqlclient maps them.
-- @table ErrorKinds
-- @field SQLAlchemyError the root of every kind
-- @field ArgumentError bad arguments: a URL, an option, a bind (SQLAlchemyError)
-- @field InvalidRequestError a call the object's state refuses: a busy connection,
-- an inactive transaction (SQLAlchemyError)
-- @field ResourceClosedError a closed Connection or SessionTransaction (InvalidRequestError)
-- @field PendingRollbackError "rollback first" after a lost connection or a failed
-- COMMIT (InvalidRequestError)
-- @field NoResultFound `one()` found no row (InvalidRequestError)
-- @field MultipleResultsFound `one()` or `one_or_none()` found several (InvalidRequestError)
-- @field TimeoutError no connection within pool_timeout (SQLAlchemyError)
-- @field DBAPIError every error of the driver or the server (SQLAlchemyError)
-- @field InterfaceError the client side: a refused charset, a connect failure with
-- code 0 (DBAPIError)
-- @field DatabaseError errors of the database (DBAPIError)
-- @field DataError bad data: out of range, too long (DatabaseError)
-- @field OperationalError the server's operation: lost connections, lock wait,
-- deadlock, timeouts (DatabaseError)
-- @field IntegrityError constraints: duplicate key, foreign key (DatabaseError)
-- @field InternalError the server's internal errors (DatabaseError)
-- @field ProgrammingError SQL errors: syntax, unknown table (DatabaseError)
-- @field NotSupportedError a feature the server lacks (DatabaseError)

--- Whether err is of kind `kind` or a kind below it.
-- @function exc.is
-- @param err anything caught
-- @tparam string kind one of the `ErrorKinds`
-- @treturn boolean

--- A new error table of kind (fields are copied onto it).
-- @function exc.new
-- @tparam string kind
-- @tparam string message
-- @tparam[opt] table fields
-- @treturn Error

--- Raises an error of kind; extra arguments format the message (string.format).
-- @function exc.raise
-- @tparam string kind
-- @tparam string fmt
-- @param ...

--- Raises the "rollback first" `PendingRollbackError` (SQLAlchemy 2.0's text).
-- @function exc.pending_rollback
-- @tparam[opt] boolean in_savepoint

--- `[parameters: {...}]` as error texts and echo show bind values.
-- @function exc.render_params
-- @tparam table params
-- @treturn string

--- Kind -> parent kind (the `ErrorKinds` as a table).
-- @table exc.hierarchy

--- Errors. Every error is a table with one metatable: `err.kind`,
-- `err.message`, `tostring(err)` as SQLAlchemy prints it:
--
--     (scoped.IntegrityError) (1062, "Duplicate entry '1' for key 'PRIMARY'")
--     [SQL: INSERT INTO t VALUES (:id)]
--     [parameters: {id=1}]
-- @type Error

--- (string) one of the `ErrorKinds`
-- @field kind

--- (string) the message alone
-- @field message

--- (integer) database errors: the server's errno (0 for a client-side one)
-- @field code

--- (string) database errors: the SQLSTATE
-- @field sqlstate

--- (string) database errors: the statement
-- @field statement

--- (table) database errors: the binds (a generic text with hide_parameters)
-- @field params

--- (boolean) database errors: the connection died with it
-- @field connection_invalidated

--- A connection with no pool (`raw_connect`) or the one a pool hands out:
-- what event listeners and `Connection:get_raw` get. Its methods are C
-- (csrc/lua/lconn.c, lexec.c); statements on it obey the busy rule and the
-- fork check as a Connection's.
-- @type RawConnection

--- Runs a statement (binds as `Connection:execute`).
-- @function RawConnection:execute
-- @tparam string sql
-- @tparam[opt] table params
-- @treturn Result

--- Runs sql once per parameter set.
-- @function RawConnection:executemany
-- @tparam string sql
-- @tparam table param_sets
-- @treturn Result

--- Runs sql with no bind parsing.
-- @function RawConnection:exec_driver_sql
-- @tparam string sql
-- @treturn Result

--- Runs a statement whose rows are read as they are asked for
-- (`stream_results`): a streaming Result, or a plain one for a statement
-- that returns no rows. Until that Result is read to its end or closed the
-- connection is busy.
-- @function RawConnection:stream
-- @tparam string sql
-- @tparam[opt] table params
-- @tparam[opt] integer yield_per
-- @treturn Result

--- The statement as it would be sent, binds written in.
-- @function RawConnection:render
-- @tparam string sql
-- @tparam[opt] table params
-- @treturn string

--- COMMIT.
-- @function RawConnection:commit

--- ROLLBACK, sent only when the reset rule says a transaction may be open.
-- @function RawConnection:rollback

--- Ends the unit of work and gives the connection back in one call
-- (COMMIT when commit is true, else ROLLBACK by the reset rule): what a
-- Session on a plain engine does.
-- @function RawConnection:finish
-- @tparam boolean commit

--- Pings the server.
-- @function RawConnection:ping
-- @treturn boolean

--- Back to the pool (reset by its mode), or closed when it has none.
-- @function RawConnection:close
-- @tparam[opt] boolean rollback end the transaction first

--- Whether it is closed.
-- @function RawConnection:closed
-- @treturn boolean

--- Whether a transaction may be open on the server (a rollback would send ROLLBACK).
-- @function RawConnection:in_transaction
-- @treturn boolean

--- The server's connection id (`CONNECTION_ID()`).
-- @function RawConnection:thread_id
-- @treturn integer

--- The GTID of the last COMMIT this connection sent, as its OK packet
-- carried it (engine option `track_gtid`); nil when the flag is off, no
-- COMMIT was sent, or the server sent none (no binlog, nothing written).
-- @function RawConnection:last_gtid
-- @treturn string|nil

--- Marks it to be discarded instead of pooled.
-- @function RawConnection:invalidate

--- Whether it was invalidated (by a disconnect or `invalidate()`).
-- @function RawConnection:is_invalidated
-- @treturn boolean

--- The disconnect error that made it unusable, or nil.
-- @function RawConnection:invalidation_error
-- @treturn Error|nil

--- The pool's reset on return (pool_reset_on_return), done now.
-- @function RawConnection:reset

--- Keep bind values out of its errors (what hide_parameters sets).
-- @function RawConnection:set_hide_parameters
-- @tparam boolean on

return scoped
