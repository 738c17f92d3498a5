-- A second Lua process running scoped, for specs that need two sessions to
-- block each other (deadlocks, lock waits): a single Lua thread would wait
-- on itself. require "support.proc".
--
--   local p = proc.spawn([[ ...lua code... ]])   -- runs in the background
--   p:wait_for("locked", 10)   -- waits until the child prints a line "locked"
--   p:signal()                 -- creates the file the child's proc.wait_signal() polls
--   p:finish(30)               -- waits for the end; returns its whole output
--
-- The child gets the same interpreter (SCOPED_LUA), LUA_PATH and LUA_CPATH,
-- and two globals: SIGNAL_FILE and wait_signal(timeout).
local M = {}

local function now() return require("scoped.core").monotonic() end
local function sleep(s) os.execute("sleep " .. s) end

local read = require("helper").read_file

local P = {}
P.__index = P

local prelude = [[
local SIGNAL_FILE = %q
local function wait_signal(timeout)
  local t = os.time() + (timeout or 30)
  while os.time() <= t do
    local f = io.open(SIGNAL_FILE)
    if f then f:close() return true end
    os.execute("sleep 0.02")
  end
  return false
end
io.stdout:setvbuf("line")
]]

function M.spawn(code)
  local base = os.tmpname()
  local self = setmetatable({script = base .. ".lua", out = base .. ".out",
    done = base .. ".done", sig = base .. ".sig", base = base}, P)
  local f = assert(io.open(self.script, "w"))
  f:write(prelude:format(self.sig), code)
  f:close()
  -- the interpreter this process runs on (its LUA_CPATH points at that build)
  local lua = os.getenv("SCOPED_LUA") or (rawget(_G, "jit") and "luajit" or "lua5.4")
  -- the child's exit status lands in .done when it ends, whole: written
  -- beside it and renamed, so that finish() never reads it half written
  assert(os.execute(string.format("(%s %q >%q 2>&1; echo $? >%q; mv %q %q) </dev/null &",
    lua, self.script, self.out, self.done .. ".tmp", self.done .. ".tmp", self.done)))
  return self
end

function P:output() return read(self.out) or "" end

function P:wait_for(line, timeout)
  local deadline = now() + (timeout or 30)
  while now() < deadline do
    local out = self:output()
    if ("\n" .. out):find("\n" .. line .. "\n", 1, true) then return true end
    if read(self.done) then break end
    sleep(0.02)
  end
  local out = self:output()
  if read(self.done) then self:finish(1) end -- it ended: remove its files
  error("child never printed '" .. line .. "'; its output:\n" .. out)
end

function P:signal()
  local f = assert(io.open(self.sig, "w"))
  f:close()
end

--- Waits for the child to end; returns its output and exit status.
function P:finish(timeout)
  local deadline = now() + (timeout or 60)
  local status = read(self.done)
  while not status do
    if now() > deadline then error("child did not end; its output:\n" .. self:output()) end
    sleep(0.02)
    status = read(self.done)
  end
  local out = self:output()
  for _, suffix in ipairs({".lua", ".out", ".done", ".sig", ""}) do
    os.remove(self.base .. suffix)
  end
  return out, tonumber(status:match("%d+"))
end

return M
