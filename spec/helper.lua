-- Shared by the specs: the test server's URL (SCOPED_TEST_URL, set by
-- spec/support/with-db.sh or by the user) and small conveniences.
local scoped = require "scoped"

-- H.url is looked up when a spec first asks for it, so that the specs that
-- need no database (URL parsing) run without SCOPED_TEST_URL; asking for it
-- without one raises a clear error.
local url = os.getenv("SCOPED_TEST_URL")
local H = setmetatable({}, {__index = function(_, k)
  if k == "url" then
    error("SCOPED_TEST_URL is not set: run the specs through `make test`", 2)
  end
end})

H.url = url
H.socket = os.getenv("SCOPED_TEST_SOCKET")

function H.raw()
  return scoped.raw_connect(H.url)
end

-- The error a function raises (fails the test if it raises none).
function H.error_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, got none")
  return err
end

-- A connection used only to look at the server from outside.
local observer
function H.observer()
  if not observer or observer:closed() then observer = H.raw() end
  return observer
end

-- After a server restart the observer's socket is dead: open a new one.
function H.forget_observer()
  if observer then pcall(observer.close, observer) end
  observer = nil
end

function H.connection_alive(thread_id)
  local n = H.observer():execute(
    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = :id", {id = thread_id}):scalar()
  return n == 1
end

-- Whether the server has let go of thread_id within timeout seconds (default
-- 5): a closed connection's COM_QUIT is handled asynchronously, so the thread
-- may linger in the PROCESSLIST for a moment (longer under ASan or valgrind).
function H.connection_gone(thread_id, timeout)
  local deadline = os.time() + (timeout or 5)
  repeat
    if not H.connection_alive(thread_id) then return true end
    H.sleep(0.02)
  until os.time() > deadline
  return not H.connection_alive(thread_id)
end

-- Connections to the test server other than the observer.
function H.server_connections()
  local o = H.observer()
  return o:execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()" ..
    " AND COMMAND <> 'Daemon' AND USER = 'root'"):scalar()
end

-- The port of the server an engine's next checkout lands on (several
-- hosts: which one it chose).
function H.port_of(engine)
  local c = engine:connect()
  local p = tonumber(c:execute("SELECT @@port"):scalar())
  c:close()
  return p
end

function H.sleep(s)
  local t = os.clock()
  if s > 0.01 then os.execute("sleep " .. s) return end
  while os.clock() - t < s do end
end

-- ---- processes and files the specs share -----------------------------------

function H.sh_ok(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

function H.read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- This Lua process's pid (for a watchdog that outlives nobody).
function H.my_pid()
  local f = io.open("/proc/self/stat")
  local pid = f and f:read("*l"):match("^(%d+)")
  if f then f:close() end
  return pid
end

-- A second throwaway MariaDB by spec/support/<script> (extra-server.sh,
-- tls-server.sh) with these mariadbd options: its port and directory, for
-- H.stop_server. A watchdog stops it if this process dies first.
function H.start_server(script, options)
  local dir = os.tmpname()
  os.remove(dir)
  assert(H.sh_ok("mkdir -m 700 " .. dir))
  local p = io.popen(("bash spec/support/%s start %s %s %s"):format(script, dir, H.my_pid() or "''",
    options or ""))
  local out = p:read("*a")
  p:close()
  local port = tonumber(out:match("^(%d+) %d+"))
  if not port then
    H.sh_ok("bash spec/support/" .. script .. " stop " .. dir)
    error(script .. ": the server did not start: " .. out)
  end
  return port, dir
end

function H.stop_server(script, dir)
  if dir then H.sh_ok("bash spec/support/" .. script .. " stop " .. dir) end
end

return H
