-- The throwaway topologies of spec/support/topology.sh from a spec:
-- require "support.topology".
--
--   local T = topology.start("replication")   -- or "galera"
--   T.nodes.primary.port, T.nodes.replica.port, T.ready_ms
--   T:url({"primary", "replica"}, "target_session_attrs=read-write")
--   T:signal("primary", "STOP") / T:kill("primary") / T:restart("primary")
--   T:launch("primary") (restart without waiting) / T:answers("primary")
--   T:stop()
local H = require "helper"
local core = require "scoped.core"

local M = {}
local T = {}
T.__index = T

function M.start(kind)
  local dir = os.tmpname()
  os.remove(dir)
  assert(H.sh_ok("mkdir -m 700 " .. dir))
  local p = io.popen(("bash spec/support/topology.sh start %s %s %s 2>&1"):format(kind, dir, H.my_pid() or "''"))
  local out = p:read("*a")
  p:close()
  local t = setmetatable({kind = kind, dir = dir, nodes = {}}, T)
  for name, port, pid in out:gmatch("node (%S+) (%d+) (%d+)") do
    t.nodes[name] = {name = name, port = tonumber(port), pid = tonumber(pid)}
  end
  t.ready_ms = tonumber(out:match("ready (%d+)"))
  if not t.ready_ms then
    H.sh_ok("bash spec/support/topology.sh stop " .. dir)
    error("topology.sh " .. kind .. " did not start:\n" .. out)
  end
  return t
end

function T:stop()
  if self.dir then H.sh_ok("bash spec/support/topology.sh stop " .. self.dir) end
  self.dir = nil
end

-- the URL for the application user over these nodes, in this order
function T:url(names, query)
  local hosts = {}
  for i, n in ipairs(names) do hosts[i] = "127.0.0.1:" .. assert(self.nodes[n], n).port end
  return "mysql://scoped:scoped@" .. table.concat(hosts, ",") .. "/scoped_test" ..
    (query and ("?" .. query) or "")
end

-- root over the node's unix socket (never through the host list)
function T:root(name)
  return require("scoped").raw_connect(("mysql://root@/scoped_test?unix_socket=%s/%s/mysqld.sock")
    :format(self.dir, name))
end

-- an independent client (LuaSQL, spec/support/independent.lua) as root
-- over the node's unix socket, autocommit on
function T:independent(name)
  return require("support.independent").connect{
    url = ("mysql://root@/scoped_test?unix_socket=%s/%s/mysqld.sock"):format(self.dir, name)}
end

function T:pid(name)
  local s = H.read_file(self.dir .. "/" .. name .. "/mysqld.pid")
  return s and tonumber(s:match("%d+")) or self.nodes[name].pid
end

local function alive(pid)
  local stat = H.read_file("/proc/" .. pid .. "/stat")
  local state = stat and stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z"
end

local function state(pid)
  local stat = H.read_file("/proc/" .. pid .. "/stat")
  return stat and stat:match("^%d+ %b() (%a)")
end

-- sends the signal; a STOP returns once the kernel says the server is
-- stopped (T), a CONT once it is not
function T:signal(name, sig)
  local pid = self:pid(name)
  assert(H.sh_ok(("kill -%s %d"):format(sig, pid)), "kill -" .. sig .. " failed")
  if sig ~= "STOP" and sig ~= "CONT" then return end
  local deadline = core.monotonic() + 5
  while (state(pid) == "T") ~= (sig == "STOP") do
    assert(core.monotonic() < deadline, ("%s (pid %d) is in state %s after SIG%s")
      :format(name, pid, tostring(state(pid)), sig))
    H.sleep(0.01)
  end
end

-- the server's process state as the kernel has it ("S", "R", "T" stopped, ...)
function T:state(name) return state(self:pid(name)) end

-- SIGKILL, and wait until it is gone
function T:kill(name)
  local pid = self:pid(name)
  self:signal(name, "KILL")
  local deadline = core.monotonic() + 30
  while alive(pid) do
    assert(core.monotonic() < deadline, name .. " did not die")
    H.sleep(0.02)
  end
  os.remove(self.dir .. "/" .. name .. "/mysqld.pid")
end

-- starts a stopped node again (same port and datadir) without waiting for
-- it: T:answers(name) says when it does
function T:launch(name)
  assert(H.sh_ok(("sh %s/%s/restart.sh &"):format(self.dir, name)), "restart failed")
end

-- whether the node's socket answers root now (one quick attempt)
function T:answers(name)
  return H.read_file(self.dir .. "/" .. name .. "/mysqld.pid") ~= nil
    and pcall(function() self:root(name):close() end)
end

-- starts a stopped node again (same port and datadir) and waits until its
-- socket answers
function T:restart(name)
  local d = self.dir .. "/" .. name
  self:launch(name)
  local deadline = core.monotonic() + 60
  while not self:answers(name) do
    assert(core.monotonic() < deadline, name .. " did not come back:\n" ..
      (H.read_file(d .. "/mysqld.err") or ""):sub(-2000))
    H.sleep(0.05)
  end
end

return M
