-- scoped: SQLAlchemy's create_engine / sessionmaker / scoped_session for Lua,
-- over a C core (scoped.core) that talks to MySQL / MariaDB.
local core = require "scoped.core"
local exc = require "scoped.exc"
local url = require "scoped.url"
local engine = require "scoped.engine"
require "scoped.result"

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
}

local session = require "scoped.session"
local scoping = require "scoped.scoping"
scoped.sessionmaker = session.sessionmaker
scoped.Session = session.new_session
scoped.scoped_session = scoping.scoped_session
scoped.scopes = scoping.scopes

--- A standalone connection with no pool, for scripts and tests: the lowest
--- layer that the engine's pool hands out.
function scoped.raw_connect(u)
  return core.connect(url.make_url(u))
end

-- Runtime plug-ins: under OpenResty (an ngx table), scoped.ngx installs its
-- engine hooks and scope registries (it does nothing in the threads of
-- ngx.run_worker_thread, which have an ngx table too).
if rawget(_G, "ngx") ~= nil then require("scoped.ngx").install() end

return scoped
