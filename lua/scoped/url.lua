--- URL objects, as SQLAlchemy's sqlalchemy.engine.URL: parsed in C, and
-- printed with the password masked.
--
-- `mysql://user:pass@host:port/db?charset=utf8mb4`, also `mysql+<driver>://`,
-- `mariadb://`, `mariadb+<driver>://`; user, password and database are
-- percent-decoded. Query parameters: `charset` (utf8mb4, the default;
-- utf8mb3 or utf8, latin1, ascii, binary), `unix_socket`, `connect_timeout`
-- (10 s), `read_timeout`, `write_timeout`, `ssl_ca`, `ssl_cert`, `ssl_key`,
-- `ssl_mode` (DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY),
-- `init_command`; for several hosts (README, "Several servers"): `ha_mode`
-- (sequential, round_robin), `target_session_attrs` (any, read-write,
-- read-only, prefer-read-only), `galera` (true, false), `deny_timeout`
-- (30 s); anything else raises `ArgumentError`.
--
-- Several hosts: `mysql://u:p@db1:3306,db2,[fd00::1]:3306/shop`, or
-- `mysql://u:p@/shop?host=db1:3306&host=db2` (SQLAlchemy's psycopg2 form),
-- not both; `unix_socket` with several hosts is an `ArgumentError`. Such a
-- URL has `hosts`, and `host`/`port` are the first host's.
-- @module scoped.url
local core = require "scoped.core"
local exc = require "scoped.exc"

local URL = {}
URL.__index = URL

local function encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- a host name as written in the authority: only what would end or split it
-- is escaped (a name with ':' goes in brackets, where only '%', '[' and ']' need it)
local function encode_host(h, set)
  return (h:gsub(set, function(c) return string.format("%%%02X", c:byte()) end))
end

--- A parsed URL; `tostring(url)` shows the password as `***`.
-- @type URL

--- (string) "mysql", "mariadb", "mysql+pymysql", ...
-- @field drivername

--- (string|nil)
-- @field username

--- (string|nil)
-- @field password

--- (string|nil) nil with `?unix_socket=`; with several hosts, the first one
-- @field host

--- (table|nil) with several hosts only: `{{host = "db1", port = 3306}, {host = "db2"}, ...}`
-- (the port nil when left out), in the URL's order
-- @field hosts

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
  local hosts = self.hosts or {{host = self.host, port = self.port}}
  for i, h in ipairs(hosts) do
    if i > 1 then s = s .. "," end
    if h.host then
      s = s .. (h.host:find(":", 1, true) and "[" .. encode_host(h.host, "[%%%[%]]") .. "]"
        or encode_host(h.host, "[%%,/?@#%[%]]"))
    end
    if h.port then s = s .. ":" .. h.port end
  end
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
  port = "number", database = "string", query = "table", hosts = "table"}

-- a hosts list for set(): each "host[:port]" or {host = s, port = n}
local function copy_hosts(list)
  local out = {}
  for i, h in ipairs(list) do
    if type(h) == "string" then
      local host, port = core.parse_host(h)
      out[i] = {host = host, port = port}
    elseif type(h) == "table" then
      if type(h.host) ~= "string" then
        exc.raise("ArgumentError", "URL:set(): hosts[%d].host must be a string", i)
      end
      out[i] = {host = h.host, port = h.port}
    else
      exc.raise("ArgumentError", "URL:set(): hosts[%d] must be a string or a table, got %s", i, type(h))
    end
  end
  if #out == 0 then exc.raise("ArgumentError", "URL:set(): hosts must list at least one host") end
  return out
end

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
  if fields.hosts ~= nil and (fields.host ~= nil or fields.port ~= nil) then
    exc.raise("ArgumentError", "URL:set(): give hosts, or host and port, not both")
  end
  if self.hosts and fields.hosts == nil and (fields.host ~= nil or fields.port ~= nil) then
    exc.raise("ArgumentError", "URL:set(): this URL has several hosts: set hosts instead of host or port")
  end
  local u = setmetatable({}, URL)
  for k, v in pairs(self) do u[k] = v end
  u.query = {}
  for k, v in pairs(self.query) do u.query[k] = v end
  for k, v in pairs(fields) do u[k] = v end
  if fields.hosts ~= nil then
    local hosts = copy_hosts(fields.hosts)
    u.host, u.port = hosts[1].host, hosts[1].port
    u.hosts = #hosts > 1 and hosts or nil
  elseif self.hosts then
    u.hosts = copy_hosts(self.hosts)
  end
  core.check_url(u) -- unix_socket with several hosts, a ',' in a host name, ...
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
