-- An independent client of the test server, for specs that check what the
-- server really holds (transactions, locks, connections, rows) without
-- trusting the module under test: LuaSQL (Debian's lua-sql-mysql, its own
-- libmariadb binding), connected as the user of SCOPED_TEST_URL over
-- SCOPED_TEST_SOCKET when set, else over the URL's host and port.
-- require "support.independent".
--
--   local I = require "support.independent"
--   if not I.available then error(I.why) end
--   local c = I.connect()          -- autocommit on: each SELECT sees the latest commits
--   c:rows(sql)  -> {{col = value, ...}, ...}   (values as LuaSQL gives them: strings)
--   c:scalar(sql) -> the first column of the first row, or nil
--   c:exec(sql)  -> true, or nil and the server's message (never raises)
--   c:run(sql)   -> as exec, but raises on an error
--   c:thread_id(), c:autocommit(on), c:commit(), c:rollback(), c:close()
local M = {}

local ok, driver = pcall(require, "luasql.mysql")
M.available = ok and type(driver) == "table" and driver.mysql ~= nil
M.why = not M.available and ("LuaSQL is not installed (" .. tostring(driver):match("[^\n]*") ..
  "): apt-get install -y lua-sql-mysql") or nil

local function unescape(s)
  return s and (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- The parts of a mysql:// URL that LuaSQL needs (the module under test is
--- not asked to parse it).
function M.parse_url(url)
  local scheme, rest = url:match("^([%w+]+)://(.*)$")
  assert(scheme, "not a URL: " .. tostring(url))
  local query = rest:match("%?(.*)$") or ""
  rest = rest:gsub("%?.*$", "")
  local userinfo, hostpart = rest:match("^(.*)@([^@]*)$")
  if not userinfo then hostpart = rest end
  local user, password
  if userinfo then
    user, password = userinfo:match("^([^:]*):(.*)$")
    if not user then user = userinfo end
  end
  local hostport, db = hostpart:match("^([^/]*)/?(.*)$")
  local host, port = hostport:match("^%[(.*)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
  local q = {}
  for k, v in query:gmatch("([^&=]+)=([^&]*)") do q[k] = unescape(v) end
  return {
    user = unescape(user), password = unescape(password),
    host = host ~= "" and host or nil, port = tonumber(port),
    database = db ~= "" and unescape(db) or nil,
    socket = q.unix_socket,
  }
end

local C = {}
C.__index = C

local env
--- A new connection; opts may override user and password (another account),
--- and url and socket (another server: the several-hosts specs' nodes).
function M.connect(opts)
  assert(M.available, M.why)
  env = env or driver.mysql()
  local u = M.parse_url(opts and opts.url or assert(os.getenv("SCOPED_TEST_URL"), "SCOPED_TEST_URL is not set"))
  local socket = opts and opts.socket or (not (opts and opts.url) and os.getenv("SCOPED_TEST_SOCKET")) or u.socket
  local user = opts and opts.user or u.user
  local password = opts and opts.password or u.password
  local conn, err
  if socket and socket ~= "" then
    conn, err = env:connect(u.database or "", user, password, nil, nil, socket)
  else
    conn, err = env:connect(u.database or "", user, password, u.host or "127.0.0.1", u.port or 3306)
  end
  assert(conn, "independent client: cannot connect: " .. tostring(err))
  local self = setmetatable({conn = conn}, C)
  self:autocommit(true)
  self.id = tonumber(self:scalar("SELECT CONNECTION_ID()"))
  return self
end

function C:exec(sql)
  local cur, err = self.conn:execute(sql)
  if not cur then return nil, err end
  if type(cur) ~= "number" then cur:close() end
  return true
end

function C:run(sql)
  local okk, err = self:exec(sql)
  if not okk then error("independent client: " .. tostring(err) .. "\n[SQL: " .. sql .. "]", 2) end
  return true
end

function C:rows(sql)
  local cur, err = self.conn:execute(sql)
  if not cur then error("independent client: " .. tostring(err) .. "\n[SQL: " .. sql .. "]", 2) end
  local out = {}
  if type(cur) == "number" then return out end
  local row = cur:fetch({}, "a")
  while row do
    out[#out + 1] = row
    row = cur:fetch({}, "a")
  end
  cur:close()
  return out
end

function C:scalar(sql)
  local cur, err = self.conn:execute(sql)
  if not cur then error("independent client: " .. tostring(err) .. "\n[SQL: " .. sql .. "]", 2) end
  if type(cur) == "number" then return nil end
  local v = cur:fetch()
  cur:close()
  return v
end

-- Whether the server holds an InnoDB transaction for thread_id.
-- information_schema.innodb_trx is a copy refreshed at most every 0.1 s
-- (and only when nobody read it in the last 0.1 s): trx_gone polls it every
-- 0.15 s, for up to 1.5 s, before believing a transaction is still there.
function C:has_trx(thread_id)
  return self:scalar("SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = " ..
    string.format("%d", thread_id)) ~= "0"
end

function C:trx_gone(thread_id)
  for _ = 1, 10 do
    if not self:has_trx(thread_id) then return true end
    os.execute("sleep 0.15")
  end
  return false
end

function C:thread_id() return self.id end
function C:autocommit(on) assert(self.conn:setautocommit(on)) end
function C:commit() return self.conn:commit() end
function C:rollback() return self.conn:rollback() end
function C:close()
  if self.conn then self.conn:close() end
  self.conn = nil
end

return M
