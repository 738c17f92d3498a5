--- URL objects, as SQLAlchemy's sqlalchemy.engine.URL: parsed in C, and
-- printed with the password masked.
--
-- `mysql://user:pass@host:port/db?charset=utf8mb4`, also `mysql+<driver>://`,
-- `mariadb://`, `mariadb+<driver>://`; user, password and database are
-- percent-decoded. Query parameters: `charset` (utf8mb4, the default;
-- utf8mb3 or utf8, latin1, ascii, binary), `unix_socket`, `connect_timeout`
-- (10 s), `read_timeout`, `write_timeout`, `ssl_ca`, `ssl_cert`, `ssl_key`,
-- `ssl_mode` (DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY),
-- `init_command`; anything else raises `ArgumentError`.
-- @module scoped.url
local core = require "scoped.core"
local exc = require "scoped.exc"

local URL = {}
URL.__index = URL

local function encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

--- A parsed URL; `tostring(url)` shows the password as `***`.
-- @type URL

--- (string) "mysql", "mariadb", "mysql+pymysql", ...
-- @field drivername

--- (string|nil)
-- @field username

--- (string|nil)
-- @field password

--- (string|nil) nil with `?unix_socket=`
-- @field host

--- (integer|nil)
-- @field port

--- (string|nil)
-- @field database

--- (table) the query parameters, strings
-- @field query

--- The URL as a string; the password shows as *** unless hide_password is false.
-- @tparam[opt=true] boolean hide_password
-- @treturn string
function URL:render_as_string(hide_password)
  local s = self.drivername .. "://"
  if self.username then
    s = s .. encode(self.username)
    if self.password then
      s = s .. ":" .. (hide_password == false and encode(self.password) or "***")
    end
    s = s .. "@"
  end
  if self.host then
    s = s .. (self.host:find(":", 1, true) and "[" .. self.host .. "]" or self.host)
  end
  if self.port then s = s .. ":" .. self.port end
  if self.database then s = s .. "/" .. encode(self.database) end
  local keys = {}
  for k in pairs(self.query) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do
    s = s .. (i == 1 and "?" or "&") .. k .. "=" .. encode(self.query[k])
  end
  return s
end

URL.__tostring = function(self) return self:render_as_string(true) end

local FIELDS = {drivername = "string", username = "string", password = "string", host = "string",
  port = "number", database = "string", query = "table"}

--- A copy with some fields changed (SQLAlchemy's URL.set).
-- @tparam table fields e.g. `{database = "other", query = {charset = "latin1"}}`
-- @treturn URL
function URL:set(fields)
  if type(fields) ~= "table" then
    exc.raise("ArgumentError", "URL:set() takes a table of fields, got %s", type(fields))
  end
  for k, v in pairs(fields) do
    if FIELDS[k] == nil then
      exc.raise("ArgumentError", "URL:set(): no URL field '%s'", tostring(k))
    elseif type(v) ~= FIELDS[k] then
      exc.raise("ArgumentError", "URL:set(): %s must be a %s, got %s", k, FIELDS[k], type(v))
    elseif k == "port" and (v ~= math.floor(v) or v < 1 or v > 65535) then
      exc.raise("ArgumentError", "URL:set(): port must be a whole number from 1 to 65535")
    elseif k == "query" then
      for qk, qv in pairs(v) do
        if type(qk) ~= "string" or type(qv) ~= "string" then
          exc.raise("ArgumentError", "URL:set(): query must map names to strings")
        end
        core.check_url_param(qk, qv)
      end
    end
  end
  local u = setmetatable({}, URL)
  for k, v in pairs(self) do u[k] = v end
  u.query = {}
  for k, v in pairs(self.query) do u.query[k] = v end
  for k, v in pairs(fields) do u[k] = v end
  return u
end

--- Making URLs.
-- @section make_url

local M = {URL = URL}

--- make_url(string or URL) -> URL; raises ArgumentError naming what is wrong.
-- No parse error ever echoes the password or the port's text.
-- @tparam string|URL s
-- @treturn URL
function M.make_url(s)
  if getmetatable(s) == URL then return s end
  if type(s) ~= "string" then
    exc.raise("ArgumentError", "url must be a string or URL, got %s", type(s))
  end
  return setmetatable(core.parse_url(s), URL)
end

--- Whether u is a URL.
-- @treturn boolean
function M.is_url(u) return getmetatable(u) == URL end

return M
