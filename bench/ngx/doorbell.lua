-- Design (b) of issue 19 as an io_wait, for the measurements only
-- (bench/ngx.sh --with-b, bench/ngx_cost.sh): a helper thread per worker
-- (bench/ngx/doorbell.c) polls the fd and rings a doorbell, a unix-socket
-- cosocket this light thread reads one byte from. Not part of scoped.
local ffi = require "ffi"
pcall(ffi.cdef, "int scoped_doorbell_start(const char *path);")

local M = {}
local lib, path
local EV = {r = 1, w = 2, rw = 3}
local msg = ffi.new("int32_t[2]")

local function start()
  lib = ffi.load(assert(package.searchpath("doorbell", package.cpath)))
  path = "/tmp/scoped-doorbell-" .. ngx.worker.pid() .. ".sock"
  assert(lib.scoped_doorbell_start(path) == 0, "doorbell thread")
end

function M.io_wait(raw, fd, events, timeout) -- luacheck: ignore raw
  if path == nil then start() end
  local sock = ngx.socket.tcp()
  sock:settimeout(timeout and math.max(1, math.floor(timeout * 1000)) or 60000)
  local ok, err = sock:connect("unix:" .. path) -- from the keepalive pool after the first
  if not ok then error("doorbell: " .. tostring(err)) end
  msg[0], msg[1] = fd, EV[events]
  ok, err = sock:send(ffi.string(msg, 8))
  if not ok then sock:close(); error("doorbell: " .. tostring(err)) end
  local b
  b, err = sock:receive(1)
  if not b then
    sock:close() -- the helper drops the registration on EOF
    if err == "timeout" then return false end
    error("doorbell: " .. tostring(err))
  end
  sock:setkeepalive(60000, 256)
  return true
end

return M
