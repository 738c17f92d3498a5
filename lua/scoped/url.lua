-- URL objects, as SQLAlchemy's sqlalchemy.engine.URL: parsed in C, and
-- printed with the password masked.
local core = require "scoped.core"
local exc = require "scoped.exc"

local URL = {}
URL.__index = URL

local function encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

--- The URL as a string; the password shows as *** unless hide_password is false.
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

local M = {URL = URL}

--- make_url(string or URL) -> URL; raises ArgumentError naming what is wrong.
function M.make_url(s)
  if getmetatable(s) == URL then return s end
  if type(s) ~= "string" then
    exc.raise("ArgumentError", "url must be a string or URL, got %s", type(s))
  end
  return setmetatable(core.parse_url(s), URL)
end

function M.is_url(u) return getmetatable(u) == URL end

return M
