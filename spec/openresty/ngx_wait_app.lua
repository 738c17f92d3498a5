-- The OpenResty io_wait's own checks (scoped.ngx section 4, csrc/ngx/ngx_wait.c):
-- handlers that wait on sockets made here (socketpairs, a raw TCP connection
-- to the server), with no statement, so that the wait is tested alone. Each
-- answers JSON about what it saw, including which fds the worker's epoll
-- holds (/proc/self/fdinfo of its eventpoll fd); spec/openresty/checks.lua
-- decides.
local ffi = require "ffi"
local cjson = require "cjson.safe"
local sngx = require "scoped.ngx"

for _, decl in ipairs({
  "int socketpair(int domain, int type, int protocol, int sv[2]);",
  "long write(int fd, const void *buf, unsigned long n);",
  "long read(int fd, void *buf, unsigned long n);",
  "int close(int fd);",
  "int socket(int domain, int type, int protocol);",
  "int connect(int fd, const void *addr, unsigned int len);",
  "unsigned short htons(unsigned short);",
  "int inet_pton(int af, const char *src, void *dst);",
  "typedef struct { unsigned short family; unsigned short port; unsigned int addr; char zero[8]; } scoped_spec_sin_t;",
}) do pcall(ffi.cdef, decl) end

local C = ffi.C
local AF_UNIX, AF_INET, SOCK_STREAM, SOCK_NONBLOCK = 1, 2, 1, 2048

local function pair()
  local sv = ffi.new("int[2]")
  assert(C.socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair")
  return sv[0], sv[1]
end

local function poke(fd) return C.write(fd, "x", 1) == 1 end

-- the fds this worker's epoll holds, as a set {[fd] = true}
local epfd
local function epoll_fds()
  if epfd == nil then
    for i = 0, 4096 do
      local f = io.open("/proc/self/fdinfo/" .. i)
      if f then
        local s = f:read("*a")
        f:close()
        if s:find("\ntfd:") then epfd = i break end
      end
    end
  end
  local set = {}
  if epfd == nil then return set end
  local f = io.open("/proc/self/fdinfo/" .. epfd)
  if not f then return set end
  for fd in f:read("*a"):gmatch("tfd:%s*(%d+)") do set[tonumber(fd)] = true end
  f:close()
  return set
end

return function(H, reply)
  local io_wait = sngx.io_wait_hook()

  function H.nbwait_status()
    local ok, why = sngx.io_wait_status()
    reply({ok = ok, why = why})
  end

  -- N light threads, each waiting on its own socketpair; all are registered
  -- (in epoll) before the first byte is written, each wakes after its own
  -- write. The registrations stay while the sockets are open (a second wait
  -- makes no epoll call) and are freed by a sweep once they are closed.
  function H.nbwait_overlap()
    local N = 4
    local a, b, threads, woke, log = {}, {}, {}, {}, {}
    for i = 1, N do a[i], b[i] = pair() end
    for i = 1, N do
      threads[i] = ngx.thread.spawn(function()
        log[#log + 1] = "wait" .. i
        local r = io_wait(nil, a[i], "r", 5)
        log[#log + 1] = "woke" .. i
        woke[i] = r
      end)
    end
    -- every thread has run up to its yield: all waiting
    local _, waiting_all = sngx._io_wait_counts()
    local ep = epoll_fds()
    local in_epoll = 0
    for i = 1, N do if ep[a[i]] then in_epoll = in_epoll + 1 end end
    for i = N, 1, -1 do -- in reverse: each wakes for its own fd
      log[#log + 1] = "poke" .. i
      poke(b[i])
      ngx.thread.wait(threads[i])
    end
    local _, waiting_after, _, fds = sngx._io_wait_counts()
    ep = epoll_fds()
    local kept = 0
    for i = 1, N do if ep[a[i]] and fds[a[i]] then kept = kept + 1 end end
    -- a new socket already readable: at once (its registration finds it)
    local c, d = pair()
    poke(d)
    local ready_r = io_wait(nil, c, "r", 5)
    C.close(c); C.close(d)
    -- writable: at once
    local ready_w = io_wait(nil, a[1], "w", 5)
    local ready_rw = io_wait(nil, a[2], "rw", 5)
    -- read to EAGAIN (as libmariadb does before it waits): no longer
    -- readable, although an event came while nobody waited
    local buf = ffi.new("char[1]")
    C.read(a[3], buf, 1)
    local drained = io_wait(nil, a[3], "r", 0.05)
    -- and a byte that comes later wakes the next wait
    poke(b[3])
    local again = io_wait(nil, a[3], "r", 5)
    for i = 1, N do C.close(a[i]); C.close(b[i]) end
    local _, _, stale = sngx._io_wait_counts()
    local _, _, stale_swept, fds_swept = sngx._io_wait_counts(true)
    local left = 0
    for i = 1, N do if fds_swept[a[i]] then left = left + 1 end end
    reply({n = N, waiting_all = waiting_all, in_epoll = in_epoll, waiting_after = waiting_after,
           kept = kept, woke = woke, log = table.concat(log, " "), ready_r = ready_r,
           ready_w = ready_w, ready_rw = ready_rw, drained = drained, again = again, stale = stale,
           stale_swept = stale_swept, left = left})
  end

  function H.nbwait_timeout()
    local a, b = pair()
    local r = io_wait(nil, a, "r", 0.05)
    local r0 = io_wait(nil, a, "r", 0)     -- a poll, no wait
    local _, waiting = sngx._io_wait_counts()
    poke(b)
    local after = io_wait(nil, a, "r", 5)  -- the registration reused, not woken for nothing
    C.close(a); C.close(b)
    local _, _, stale, fds = sngx._io_wait_counts(true)
    reply({timed_out = r, polled = r0, waiting = waiting, after = after, stale = stale,
           left = fds[a] == true})
  end

  -- A waiter killed while waiting: its registration stays (waiting) while
  -- the socket is open, the socket's next event posts a semaphore nobody
  -- waits on; once the socket is closed a sweep frees it. Then one whose fd
  -- was closed and its number reused by a new socket before any sweep: the
  -- next wait on that number registers the new socket.
  function H.nbwait_kill()
    local out = {}
    local a, b = pair()
    local t = ngx.thread.spawn(function() return io_wait(nil, a, "r", 10) end)
    out.armed = epoll_fds()[a] == true
    assert(ngx.thread.kill(t))
    local _, waiting = sngx._io_wait_counts()
    out.waiting_killed = waiting
    poke(b) -- its event comes with nobody waiting
    ngx.sleep(0.01)
    C.close(a); C.close(b)
    out.gone_from_epoll = not epoll_fds()[a]
    local _, _, stale = sngx._io_wait_counts()
    out.stale_closed = stale
    local _, _, stale_swept, fds = sngx._io_wait_counts(true)
    out.stale_swept = stale_swept
    out.swept = not fds[a]
    -- killed, then its fd closed (libmariadb closes it with no hook) and
    -- the number taken by a new socket that another light thread waits on
    local a2, b2 = pair()
    t = ngx.thread.spawn(function() return io_wait(nil, a2, "r", 10) end)
    assert(ngx.thread.kill(t))
    C.close(a2); C.close(b2)
    local a3, b3 = pair()
    out.reused = a3 == a2 or b3 == a2
    local fd = a3 == a2 and a3 or b3
    local peer = fd == a3 and b3 or a3
    local t2 = ngx.thread.spawn(function() return io_wait(nil, fd, "r", 5) end)
    out.new_armed = epoll_fds()[fd] == true
    local _, _, stale_new = sngx._io_wait_counts(true) -- the sweep must not touch the new one
    out.stale_new = stale_new
    out.new_still_armed = epoll_fds()[fd] == true
    poke(peer)
    local okw, woke = ngx.thread.wait(t2)
    out.new_woke = okw and woke
    C.close(a3); C.close(b3)
    local _, _, stale_end, fds_end = sngx._io_wait_counts(true)
    out.stale_end = stale_end
    out.left_end = fds_end[fd] == true
    reply(out)
  end

  -- Leaves a killed waiter registered, and a registration whose socket is
  -- closed (no sweep follows in this request): the graceful shutdown must
  -- release both (no "open socket ... left" alert). The first fd stays
  -- open in this worker until it exits.
  function H.nbwait_leave()
    local a = pair()
    local t = ngx.thread.spawn(function() return io_wait(nil, a, "r", 100) end)
    assert(ngx.thread.kill(t))
    local c, d = pair()
    poke(d)
    io_wait(nil, c, "r", 1)
    C.close(c); C.close(d)
    local live = sngx._io_wait_counts()
    reply({fd = a, live = live, armed = epoll_fds()[a] == true})
  end

  -- One wait of `secs` on a socket nobody writes to, and nothing after it
  -- (a graceful shutdown wakes it early: a spurious wake-up)
  function H.nbwait_hold()
    local a, b = pair()
    local r = io_wait(nil, a, "r", tonumber(ngx.var.arg_secs) or 1)
    C.close(a); C.close(b)
    reply({woke = r})
  end

  -- A raw TCP connection to the server: io_wait for the connect (w) and for
  -- its greeting (r), with its timeout; the wait is all this request does
  function H.nbwait_tcp()
    local port = tonumber(ngx.var.arg_port)
    local fd = C.socket(AF_INET, SOCK_STREAM + SOCK_NONBLOCK, 0)
    assert(fd >= 0, "socket")
    local sin = ffi.new("scoped_spec_sin_t")
    sin.family = AF_INET
    sin.port = C.htons(port)
    C.inet_pton(AF_INET, "127.0.0.1", ffi.cast("void *", ffi.cast("char *", sin) + 4))
    C.connect(fd, sin, ffi.sizeof(sin))
    local w = io_wait(nil, fd, "w", 5)
    local r = io_wait(nil, fd, "r", 5)
    local buf = ffi.new("char[256]")
    local n = tonumber(C.read(fd, buf, 256))
    C.close(fd)
    reply({w = w, r = r, n = n})
  end

  function H.nbwait_counts()
    local live, waiting, stale = sngx._io_wait_counts(ngx.var.arg_sweep == "1")
    reply({live = live, waiting = waiting, stale = stale, epoll = epoll_fds(), pid = ngx.worker.pid()})
  end

  return cjson
end
