-- scoped: SQLAlchemy's create_engine / sessionmaker / scoped_session for Lua,
-- over a C core (scoped.core) that talks to MySQL / MariaDB.
local core = require "scoped.core"
local exc = require "scoped.exc"
local url = require "scoped.url"
require "scoped.result"

local scoped = {
  _VERSION = core.version,
  null = core.null,   -- NULL: the same lightuserdata as ngx.null and cjson.null
  exc = exc,
  make_url = url.make_url,
  URL = url.URL,
}

--- A standalone connection with no pool, for scripts and tests: the lowest
--- layer that the engine's pool hands out.
function scoped.raw_connect(u)
  return core.connect(url.make_url(u))
end

return scoped
