-- Stopping and restarting the throwaway server of spec/support/with-db.sh,
-- for the fault specs: require "support.server".
--
-- with-db.sh exports the server binary and its exact arguments; a restart
-- runs the same command, so the server comes back on the same port, socket,
-- datadir and pid file (with-db.sh's cleanup reads the pid file, so it stops
-- the restarted server too). With a server of the user's own
-- (SCOPED_TEST_URL set by hand) none of this is available: M.available is
-- false and the specs that need it are pending.
local scoped = require "scoped"

local M = {}

local datadir = os.getenv("SCOPED_TEST_DATADIR")
local mariadbd = os.getenv("SCOPED_TEST_MARIADBD")
local args = os.getenv("SCOPED_TEST_MARIADBD_ARGS")
local url = os.getenv("SCOPED_TEST_URL")

M.available = datadir ~= nil and mariadbd ~= nil and args ~= nil and url ~= nil

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local read = require("helper").read_file

local function now()
  return require("scoped.core").monotonic()
end

local function sleep(s) sh("sleep " .. s) end

function M.pid()
  local s = read(datadir .. "/mysqld.pid")
  return s and tonumber(s:match("%d+"))
end

-- alive and not a zombie (the first server is with-db.sh's child: it is
-- reaped only when with-db.sh gets to it)
local function alive(pid)
  local stat = read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z"
end
M.alive = alive

--- Stops the server with signal sig ("TERM": a clean shutdown; "KILL": a
--- crash) and waits until it is gone.
function M.stop(sig)
  local pid = assert(M.pid(), "no pid file in " .. datadir)
  assert(sh("kill -" .. (sig or "TERM") .. " " .. pid), "kill failed")
  local deadline = now() + 60
  while alive(pid) do
    assert(now() < deadline, "mariadbd " .. pid .. " did not stop within 60 s")
    sleep(0.05)
  end
  -- after a KILL the pid file stays: remove it so that start() can tell
  -- the new server's from the old one's
  os.remove(datadir .. "/mysqld.pid")
end

--- Whether a new connection can be made right now.
function M.up()
  local ok, c = pcall(scoped.raw_connect, url)
  if ok then c:close() end
  return ok
end

--- Starts the server again (same command as with-db.sh) and waits until it
--- accepts connections.
function M.start()
  assert(sh('sh -c "exec $SCOPED_TEST_MARIADBD $SCOPED_TEST_MARIADBD_ARGS" ' ..
    '</dev/null >/dev/null 2>>"$SCOPED_TEST_DATADIR/mysqld.err" &'), "could not start mariadbd")
  local deadline = now() + 60
  while not (M.pid() and M.up()) do
    assert(now() < deadline, "mariadbd did not come back within 60 s:\n" ..
      (read(datadir .. "/mysqld.err") or ""):sub(-2000))
    sleep(0.05)
  end
end

--- stop, then start; returns the seconds the server was down.
function M.restart(sig)
  local t0 = now()
  M.stop(sig)
  M.start()
  return now() - t0
end

--- SET GLOBAL name = value, returning a function that puts the old value back.
function M.set_global(name, value)
  local c = scoped.raw_connect(url)
  local old = c:exec_driver_sql("SELECT @@GLOBAL." .. name):scalar()
  c:execute("SET GLOBAL " .. name .. " = :v", {v = value})
  c:close()
  return function()
    local r = scoped.raw_connect(url)
    r:execute("SET GLOBAL " .. name .. " = :v", {v = old})
    r:close()
  end
end

return M
