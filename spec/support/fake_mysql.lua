-- A fake MySQL server for one connection, for the TLS-stripping specs
-- (spec/tls_spec.lua): it offers no TLS and, once the client has answered
-- its handshake, asks for an auth switch to a plugin that would send the
-- password in clear. Everything the client sends is written, hex-encoded,
-- to OUT, so the spec can check the password never arrived.
--
--   lua fake_mysql.lua READY OUT PLUGIN
--     READY   file it writes its port to once it listens (127.0.0.1 only)
--     OUT     file it writes the client's bytes to when the client is done
--     PLUGIN  mysql_clear_password, or caching_sha2_password (answered
--             with "full authentication required", which Connector/C
--             meets by sending the password in clear when it believes the
--             connection is TLS)
-- It serves one connection and exits; it gives up after 10 s.
local socket = require "socket"

local ready_path, out_path, plugin = arg[1], arg[2], arg[3]

local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(10)
local _, port = server:getsockname()
local f = assert(io.open(ready_path .. ".tmp", "w"))
f:write(port, "\n")
f:close()
assert(os.rename(ready_path .. ".tmp", ready_path))

local received = {}

local function u16(n) return string.char(n % 256, math.floor(n / 256) % 256) end
local function u24(n) return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256) end

local function send(c, seq, payload)
  c:send(u24(#payload) .. string.char(seq % 256) .. payload)
end

-- one packet: its sequence number and payload, or nil when the client hung up
local function recv(c)
  local head = c:receive(4)
  if not head then return nil end
  received[#received + 1] = head
  local len = head:byte(1) + head:byte(2) * 256 + head:byte(3) * 65536
  local body = len > 0 and c:receive(len) or ""
  if not body then return nil end
  received[#received + 1] = body
  return head:byte(4), body
end

local CLIENT_LONG_PASSWORD, CLIENT_CONNECT_WITH_DB, CLIENT_PROTOCOL_41 = 0x1, 0x8, 0x200
local CLIENT_TRANSACTIONS, CLIENT_SECURE_CONNECTION = 0x2000, 0x8000
local CLIENT_MULTI_RESULTS, CLIENT_PLUGIN_AUTH = 0x20000, 0x80000
-- no CLIENT_SSL (0x800): this server "has no TLS"
local caps = CLIENT_LONG_PASSWORD + CLIENT_CONNECT_WITH_DB + CLIENT_PROTOCOL_41 + CLIENT_TRANSACTIONS +
  CLIENT_SECURE_CONNECTION + CLIENT_MULTI_RESULTS + CLIENT_PLUGIN_AUTH

local scramble = "abcdefghijklmnopqrst" -- 20 bytes
local function handshake()
  return string.char(10) .. "5.5.5-10.11.0-fake\0" .. "\1\0\0\0" .. scramble:sub(1, 8) .. "\0" ..
    u16(caps % 65536) .. string.char(45) .. u16(2) .. u16(math.floor(caps / 65536)) ..
    string.char(21) .. string.rep("\0", 10) .. scramble:sub(9, 20) .. "\0" .. "mysql_native_password\0"
end

local c = server:accept()
if c then
  c:settimeout(10)
  send(c, 0, handshake())
  local seq = recv(c) -- the handshake response (user, a native-password hash)
  if seq then
    send(c, seq + 1, "\254" .. plugin .. "\0" .. scramble .. "\0") -- auth switch
    seq = recv(c)
    if seq and plugin == "caching_sha2_password" then
      send(c, seq + 1, "\1\4") -- perform full authentication
      seq = recv(c)
    end
    if seq then send(c, seq + 1, "\255" .. u16(1045) .. "#28000Access denied (fake server)") end
    recv(c) -- whatever comes before the client hangs up
  end
  c:close()
end
server:close()

local hex = table.concat(received):gsub(".", function(ch) return string.format("%02x", ch:byte()) end)
f = assert(io.open(out_path .. ".tmp", "w"))
f:write(hex)
f:close()
assert(os.rename(out_path .. ".tmp", out_path))
