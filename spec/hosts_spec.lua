-- Several hosts at connect (issue 21), against the one test server: the
-- other "hosts" are a loopback port nothing listens on (refused) and a
-- listening socket that never accepts (the TCP handshake completes, no
-- greeting ever comes: a hung server), whose queued connections count the
-- attempts made on it. The real topologies (primary + replica, Galera) are
-- in spec/ha/hosts_ha.lua (`make test-scaleout`).
local scoped = require "scoped"
local H = require "helper"

local has_socket, socket = pcall(require, "socket")

local function test_port()
  return tonumber(H.url:match("@[^/:]*:(%d+)"))
end

-- the URL of the test server with these hosts ("S" stands for the server)
-- and query
local function url_with(hosts, query)
  local u = scoped.make_url(H.url)
  local list = {}
  for i, h in ipairs(hosts) do list[i] = h == "S" and ("127.0.0.1:" .. test_port()) or h end
  local q = {}
  for k, v in pairs(u.query) do q[k] = v end
  for k, v in pairs(query or {}) do q[k] = v end
  return u:set({hosts = list, query = q})
end

-- a loopback port nothing listens on
local function closed_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

-- a listener that never accepts; count() tells how many connections
-- reached it since the last count
local function silent_listener()
  local srv = assert(socket.bind("127.0.0.1", 0, 64))
  local _, port = srv:getsockname()
  srv:settimeout(0)
  local l = {port = port}
  function l.count()
    local n = 0
    while true do
      local c = srv:accept()
      if not c then return n end
      n = n + 1
      c:close()
    end
  end
  function l.close() srv:close() end
  return l
end

local port_of = H.port_of

describe("several hosts at connect", function()
  before_each(function()
    if not has_socket then pending("no luasocket") end
  end)

  it("a refused first host: the checkout lands on the second", function()
    if not has_socket then return end
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. closed_port(), "S"}), {poolclass = "NullPool"})
    assert.equal(test_port(), port_of(e))
    assert.equal(test_port(), port_of(e))
    e:dispose()
  end)

  it("a hung first host: the second serves after connect_timeout, and the hung one is denied", function()
    if not has_socket then return end
    local l = silent_listener()
    finally(l.close)
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. l.port, "S"}, {connect_timeout = "1"}),
      {poolclass = "NullPool"})
    assert.equal(test_port(), port_of(e))
    assert.equal(1, l.count()) -- one attempt on it
    for _ = 1, 20 do assert.equal(test_port(), port_of(e)) end
    assert.equal(0, l.count()) -- denied: 20 checkouts, no attempt on it
    e:dispose()
  end)

  it("deny_timeout=0: a failed host is tried again at every checkout", function()
    if not has_socket then return end
    local l = silent_listener()
    finally(l.close)
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. l.port, "S"}, {connect_timeout = "1",
      deny_timeout = "0"}), {poolclass = "NullPool"})
    assert.equal(test_port(), port_of(e))
    assert.equal(test_port(), port_of(e))
    assert.equal(2, l.count())
    e:dispose()
  end)

  it("every host failing: one attempt each, then the last host's error", function()
    if not has_socket then return end
    local l = silent_listener()
    finally(l.close)
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. l.port, "127.0.0.1:" .. closed_port()},
      {connect_timeout = "1"}), {poolclass = "NullPool"})
    local err = H.error_of(e.connect, e)
    assert.equal("OperationalError", err.kind)
    assert.equal(2002, err.code) -- the refused one's, tried last
    assert.equal(1, l.count())
    -- both denied now: the next checkout still tries each once, the soonest
    -- restored first (the hung one, denied first), so the refused one is last again
    err = H.error_of(e.connect, e)
    assert.equal(2002, err.code)
    assert.equal(1, l.count())
    e:dispose()
  end)

  it("an auth error (1045) fails the checkout at once: the next host is not tried", function()
    if not has_socket then return end
    local l = silent_listener()
    finally(l.close)
    local u = url_with({"S", "127.0.0.1:" .. l.port}):set({username = "no_such_user", password = "x"})
    local e = scoped.create_engine(u, {poolclass = "NullPool"})
    local err = H.error_of(e.connect, e)
    assert.equal(1045, err.code)
    assert.equal(0, l.count())
    e:dispose()
  end)

  it("round_robin alternates the first attempt over the hosts", function()
    if not has_socket then return end
    local l = silent_listener()
    finally(l.close)
    local e = scoped.create_engine(url_with({"S", "127.0.0.1:" .. l.port}, {ha_mode = "round_robin",
      connect_timeout = "1", deny_timeout = "0"}), {poolclass = "NullPool"})
    for _ = 1, 4 do assert.equal(test_port(), port_of(e)) end
    assert.equal(2, l.count()) -- checkouts 2 and 4 started on the listener
    e:dispose()
  end)

  it("target_session_attrs against a read-write server", function()
    if not has_socket then return end
    local rw = scoped.create_engine(url_with({"S"}, {target_session_attrs = "read-write"}), {poolclass = "NullPool"})
    assert.equal(test_port(), port_of(rw))
    local pro = scoped.create_engine(url_with({"S"}, {target_session_attrs = "prefer-read-only"}),
      {poolclass = "NullPool"})
    assert.equal(test_port(), port_of(pro)) -- no read-only host: the read-write one
    local ro = scoped.create_engine(url_with({"S"}, {target_session_attrs = "read-only"}), {poolclass = "NullPool"})
    local err = H.error_of(ro.connect, ro)
    assert.equal("OperationalError", err.kind)
    assert.truthy(tostring(err):find("is read-write (target_session_attrs=read-only)", 1, true), tostring(err))
    -- a checked connection is handed out as a fresh one: no transaction left open
    local c = rw:connect()
    assert.equal(0, tonumber(c:execute("SELECT COUNT(*) FROM information_schema.INNODB_TRX " ..
      "WHERE trx_mysql_thread_id = CONNECTION_ID()"):scalar()))
    c:close()
    for _, e in ipairs({rw, pro, ro}) do e:dispose() end
  end)

  it("galera=true on a server without Galera: refused as a node not ready (1047)", function()
    if not has_socket then return end
    local e = scoped.create_engine(url_with({"S"}, {galera = "true"}), {poolclass = "NullPool"})
    local err = H.error_of(e.connect, e)
    assert.equal(1047, err.code)
    assert.truthy(tostring(err):find("wsrep_ready", 1, true), tostring(err))
    e:dispose()
  end)

  it("with io_wait (inside a coroutine): a refused first host, the checkout lands on the second", function()
    if not has_socket then return end
    -- the non-blocking open goes through the host choice too (the host
    -- loop under cqueues is the last describe below); statements wait
    -- through io_wait
    local waits = 0
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. closed_port(), "S"}), {poolclass = "NullPool",
      io_wait = function(_, fd, events, timeout)
        waits = waits + 1
        local obj = {getfd = function() return fd end, dirty = function() return false end}
        local r, w = socket.select(events:find("r", 1, true) and {obj} or nil,
          events:find("w", 1, true) and {obj} or nil, timeout)
        return (r and r[1] ~= nil) or (w and w[1] ~= nil) or false
      end})
    local got
    local co = coroutine.wrap(function()
      -- a statement that must wait for its reply (a small one may be read
      -- back at once over loopback, with no wait at all)
      local c = e:connect()
      got = tonumber(c:execute("SELECT @@port, SLEEP(0.01)"):first()[1])
      c:close()
    end)
    co()
    assert.equal(test_port(), got)
    assert.is_true(waits > 0, "the statement did not go through io_wait")
    e:dispose()
  end)

  it("raw_connect tries the hosts in order too", function()
    if not has_socket then return end
    local c = scoped.raw_connect(url_with({"127.0.0.1:" .. closed_port(), "S"}))
    assert.equal(test_port(), tonumber(c:execute("SELECT @@port"):scalar()))
    c:close()
  end)
end)

-- One pool per host: what a host's failure does to the pool's connections,
-- fail-back, engine:hosts() and the host events. A second "host" that is
-- the test server again (same address listed twice) stands for a healthy
-- second server; a connection killed from an independent client stands for
-- its server going away (the client sees 2013).
describe("several hosts: one pool per host", function()
  local I = require "support.independent"

  before_each(function()
    if not has_socket then pending("no luasocket") end
    if not I.available then pending(I.why) end
  end)

  local function thread_id(c)
    return tonumber(c:execute("SELECT CONNECTION_ID()"):scalar())
  end

  -- the independent client's view: is that thread still connected?
  local function alive(ind, id)
    return tonumber(ind:scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = " .. id)) == 1
  end

  local function gone(ind, id)
    for _ = 1, 250 do
      if not alive(ind, id) then return true end
      socket.sleep(0.02)
    end
    return false
  end

  local function listen_all(e)
    local evs = {}
    for _, n in ipairs({"host_denied", "host_restored", "failover"}) do
      scoped.event.listen(e, n, function(info) evs[#evs + 1] = {name = n, info = info} end)
    end
    return evs
  end

  local function names(evs)
    local t = {}
    for i, ev in ipairs(evs) do t[i] = ev.name end
    return table.concat(t, ",")
  end

  -- waits (bounded) until host i's denial has ended
  local function until_up(e, i)
    for _ = 1, 300 do
      if e:hosts()[i].state == "up" then return end
      socket.sleep(0.02)
    end
    error("host " .. i .. " still denied")
  end

  it("a disconnect denies its host and invalidates that host's connections only", function()
    if not (has_socket and I.available) then return end
    local ind = I.connect()
    finally(function() ind:close() end)
    -- round_robin: a on host 1, b on host 2, c on host 1
    local e = scoped.create_engine(url_with({"S", "S"}, {ha_mode = "round_robin"}), {pool_size = 4})
    local evs = listen_all(e)
    local a, b, c = e:connect(), e:connect(), e:connect()
    local ida, idb, idc = thread_id(a), thread_id(b), thread_id(c)
    c:close() -- idle, on host 1
    local h = e:hosts()
    assert.same({2, 1, 1}, {h[1].open, h[1].checkedout, h[1].idle})
    assert.same({1, 1, 0}, {h[2].open, h[2].checkedout, h[2].idle})
    ind:run("KILL CONNECTION " .. ida)
    assert.is_true(gone(ind, ida))
    local err = H.error_of(a.execute, a, "SELECT 1")
    assert.equal(2013, err.code)
    assert.is_true(err.connection_invalidated)
    a:close()
    h = e:hosts()
    assert.equal("denied", h[1].state)
    assert.is_true(h[1].restored_in > 0)
    assert.equal(1, h[1].denials)
    assert.equal(1, h[1].failures[2013])
    assert.same({0, 0, 0}, {h[1].open, h[1].checkedout, h[1].idle})
    assert.equal("up", h[2].state)
    assert.same({1, 1, 0}, {h[2].open, h[2].checkedout, h[2].idle})
    -- on the server: host 1's idle connection is closed, host 2's is kept
    assert.is_true(gone(ind, idc))
    assert.is_true(alive(ind, idb))
    assert.equal(idb, thread_id(b))
    b:close()
    assert.equal(1, e.pool:stats().checkedin) -- b went back to the pool: not invalidated
    assert.equal("host_denied", names(evs))
    assert.same({host = "127.0.0.1", port = test_port(), code = 2013}, {host = evs[1].info.host,
      port = evs[1].info.port, code = evs[1].info.code})
    assert.is_true(evs[1].info["until"] > 0)
    e:dispose()
  end)

  it("with one host a disconnect still invalidates the whole pool, and denies nothing", function()
    if not (has_socket and I.available) then return end
    local ind = I.connect()
    finally(function() ind:close() end)
    local e = scoped.create_engine(H.url, {pool_size = 4})
    local a, b = e:connect(), e:connect()
    local ida, idb = thread_id(a), thread_id(b)
    b:close()
    ind:run("KILL CONNECTION " .. ida)
    assert.is_true(gone(ind, ida))
    assert.equal(2013, H.error_of(a.execute, a, "SELECT 1").code)
    a:close()
    assert.is_true(gone(ind, idb))
    local h = e:hosts()
    assert.equal(1, #h)
    assert.equal("up", h[1].state)
    assert.equal(0, h[1].denials)
    assert.equal(1, h[1].failures[2013])
    assert.equal(2, h[1].connects)
    e:dispose()
  end)

  it("a refused first host: no attempt on it while denied, one after deny_timeout (fail-back)", function()
    if not has_socket then return end
    local dead = tonumber(closed_port())
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. dead, "S"}, {deny_timeout = "1"}), {pool_size = 2})
    local evs = listen_all(e)
    assert.equal(test_port(), port_of(e))
    local h = e:hosts()
    assert.equal("denied", h[1].state)
    assert.same({[2002] = 1}, h[1].failures)
    assert.equal(1, h[2].connects)
    assert.equal("host_denied,failover", names(evs))
    assert.same({from_host = "127.0.0.1", from_port = dead, host = "127.0.0.1", port = test_port(), code = 2002},
      evs[2].info)
    for _ = 1, 100 do
      local c = e:connect()
      c:close()
    end
    h = e:hosts()
    assert.same({[2002] = 1}, h[1].failures) -- 100 checkouts, no attempt on host 1
    assert.equal(1, h[2].connects)
    assert.equal(0, e.pool:stats().failbacks)
    until_up(e, 1)
    -- the idle connection to host 2 is replaced to fail back: one attempt
    -- on host 1 (refused again), then host 2
    assert.equal(test_port(), port_of(e))
    h = e:hosts()
    assert.same({[2002] = 2}, h[1].failures)
    assert.equal(2, h[1].denials)
    assert.equal(2, h[2].connects)
    assert.equal(1, e.pool:stats().failbacks)
    assert.equal(1, h[2].open)
    e:dispose()
  end)

  it("checkout waits per host: a checkout that opened a connection counts, an idle one taken at once not", function()
    if not has_socket then return end
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. closed_port(), "S"}), {pool_size = 2})
    local h = e:hosts()
    assert.same({0, 0}, {h[1].checkout_waits, h[2].checkout_waits})
    local c = e:connect() -- host 1 refused, a new connection on host 2
    c:close()
    h = e:hosts()
    assert.same({0, 1}, {h[1].checkout_waits, h[2].checkout_waits})
    assert.is_true(h[2].checkout_wait > 0 and h[2].checkout_wait == h[2].checkout_wait_max)
    for _ = 1, 5 do -- the idle one, taken at once: not a wait
      c = e:connect()
      c:close()
    end
    h = e:hosts()
    assert.same({0, 1}, {h[1].checkout_waits, h[2].checkout_waits})
    assert.equal(0, h[1].checkout_wait)
    e:dispose()
  end)

  it("fail-back to a restored host: idle connections move, checked-out ones are kept", function()
    if not (has_socket and I.available) then return end
    local ind = I.connect()
    finally(function() ind:close() end)
    local e = scoped.create_engine(url_with({"S", "S"}, {deny_timeout = "1"}), {pool_size = 4})
    local evs = listen_all(e)
    local a = e:connect() -- host 1
    ind:run("KILL CONNECTION " .. thread_id(a))
    assert.equal(2013, H.error_of(a.execute, a, "SELECT 1").code)
    a:close()
    local b, c = e:connect(), e:connect() -- host 1 denied: both on host 2
    local idb, idc = thread_id(b), thread_id(c)
    assert.same({0, 2}, {e:hosts()[1].open, e:hosts()[2].open})
    assert.equal("host_denied,failover", names(evs))
    assert.same({test_port(), test_port(), 2013}, {evs[2].info.from_port, evs[2].info.port, evs[2].info.code})
    c:close() -- idle on host 2
    until_up(e, 1)
    local d = e:connect() -- c is retired, d opened on host 1
    assert.is_true(gone(ind, idc))
    assert.equal(1, e.pool:stats().failbacks)
    local h = e:hosts()
    assert.same({1, 1}, {h[1].open, h[2].open})
    assert.equal("host_denied,failover,host_restored", names(evs))
    assert.same({host = "127.0.0.1", port = test_port()}, evs[3].info)
    assert.equal(idb, thread_id(b)) -- the checked-out one on host 2 still works
    assert.is_true(alive(ind, idb))
    b:close()
    d:close()
    e:dispose()
  end)

  it("engine:hosts() and the host events never carry the password", function()
    if not (has_socket and I.available) then return end
    local ind = I.connect()
    local user, pw = "scoped_h16_hosts", "pw-Secret-7731"
    ind:exec("DROP USER IF EXISTS '" .. user .. "'@'%'")
    ind:run("CREATE USER '" .. user .. "'@'%' IDENTIFIED BY '" .. pw .. "'")
    ind:run("GRANT ALL ON *.* TO '" .. user .. "'@'%'")
    finally(function()
      ind:exec("DROP USER IF EXISTS '" .. user .. "'@'%'")
      ind:close()
    end)
    local dead = closed_port()
    local u = url_with({"127.0.0.1:" .. dead, "S"}, {deny_timeout = "0"}):set({username = user, password = pw})
    local e = scoped.create_engine(u, {pool_size = 1})
    local evs = listen_all(e)
    local c = e:connect()
    c:close()
    assert.equal("host_denied,failover", names(evs))
    local function walk(v, path)
      if type(v) == "table" then
        for k, x in pairs(v) do walk(k, path .. "/key"); walk(x, path .. "/" .. tostring(k)) end
      else
        assert.is_falsy(tostring(v):find(pw, 1, true), "the password in " .. path)
        assert.is_falsy(tostring(v):find(user, 1, true), "the user name in " .. path)
      end
    end
    walk(evs, "events")
    walk(e:hosts(), "hosts")
    e:dispose()
  end)
end)

-- Several hosts with io_wait under cqueues: the host loop itself (each
-- connect, the role check and its ROLLBACK) goes through io_wait, so a hung
-- or slow host never stalls the event loop.
describe("several hosts under cqueues (the non-blocking host loop)", function()
  local has_cq, cqueues = pcall(require, "cqueues")
  local nonblocking = require "scoped.nonblocking"

  before_each(function()
    if not has_socket then pending("no luasocket") end
    if not has_cq then pending("no lua-cqueues") end
  end)

  -- cqueues options whose io_wait records, while rec.on is set, each wait's
  -- timeout (false: none)
  local function recording(opts)
    local o = nonblocking.cqueues(opts)
    local base = o.io_wait
    local rec = {on = false, waits = {}}
    o.io_wait = function(raw, fd, events, timeout)
      if rec.on then rec.waits[#rec.waits + 1] = timeout or false end
      return base(raw, fd, events, timeout)
    end
    return o, rec
  end

  -- runs fn in a cqueues coroutine beside a 10 ms ticker; returns the
  -- ticks counted while fn ran
  local function with_ticker(fn)
    local cq = cqueues.new()
    local ticks, done = 0, false
    cq:wrap(function()
      fn()
      done = true
    end)
    cq:wrap(function()
      while not done do
        cqueues.sleep(0.01)
        ticks = ticks + 1
      end
    end)
    assert(cq:loop())
    assert.is_true(done)
    return ticks
  end

  local function checkout_port(e, rec)
    rec.on = true
    local c = e:connect()
    rec.on = false
    local p = tonumber(c:execute("SELECT @@port"):scalar())
    return c, p
  end

  it("a hung first host: the loop runs during connect_timeout, the checkout lands on the server", function()
    if not (has_socket and has_cq) then return end
    local l = silent_listener()
    finally(l.close)
    local opts, rec = recording({pool_size = 2})
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. l.port, "S"}, {connect_timeout = "1"}), opts)
    local evs = {}
    for _, n in ipairs({"host_denied", "failover"}) do
      scoped.event.listen(e, n, function(info) evs[#evs + 1] = n .. ":" .. tostring(info.code) end)
    end
    local port, open_on_2
    local ticks = with_ticker(function()
      local c
      c, port = checkout_port(e, rec)
      open_on_2 = e:hosts()[2].open
      c:close()
    end)
    assert.equal(test_port(), port)
    -- the blocking loop would hold the whole process for connect_timeout (1 s)
    assert.is_true(ticks >= 20, "the ticker ran only " .. ticks .. " times during the connect")
    -- the hung host's wait was told connect_timeout, the server's handshake waited too
    local max = 0
    for _, t in ipairs(rec.waits) do if t and t > max then max = t end end
    assert.is_true(#rec.waits >= 2, "io_wait called " .. #rec.waits .. " times for the connect")
    assert.is_true(max > 0.5 and max <= 1.0, "io_wait was told " .. tostring(max))
    assert.equal(1, l.count()) -- one attempt on it
    local h = e:hosts()
    assert.equal("denied", h[1].state)
    assert.equal(1, h[1].denials)
    assert.equal(0, h[1].connects)
    assert.equal(1, h[1].failovers)
    assert.equal(1, h[2].connects)
    assert.equal(1, open_on_2) -- the connection is host 2's (its pool)
    -- its checkout's wait (the hung host's connect_timeout included) is host 2's
    assert.same({0, 1}, {h[1].checkout_waits, h[2].checkout_waits})
    assert.is_true(h[2].checkout_wait_max > 0.5 and h[2].checkout_wait >= h[2].checkout_wait_max,
      ("checkout wait %.3f s, max %.3f s"):format(h[2].checkout_wait, h[2].checkout_wait_max))
    assert.same({"host_denied:" .. next(h[1].failures), "failover:" .. next(h[1].failures)}, evs)
    -- denied: the next checkouts make no attempt on it
    with_ticker(function()
      for _ = 1, 5 do
        local c, p = checkout_port(e, rec)
        assert.equal(test_port(), p)
        c:invalidate() -- a new connect each time
        c:close()
      end
    end)
    assert.equal(0, l.count())
    assert.equal(5, e:hosts()[2].connects) -- the first reused the idle one
    e:dispose()
  end)

  it("a checkout that waited for a free connection counts as a checkout wait on its host", function()
    if not (has_socket and has_cq) then return end
    local e = scoped.create_engine(H.url, nonblocking.cqueues{pool_size = 1, max_overflow = 0, pool_timeout = 5})
    local cq = cqueues.new()
    local order = {}
    cq:wrap(function()
      local c = e:connect() -- opens: a wait
      order[#order + 1] = "a"
      cqueues.sleep(0.2) -- holds the only connection
      c:close()
    end)
    cq:wrap(function()
      cqueues.sleep(0.05)
      local c = e:connect() -- waits in the queue for a's connection
      order[#order + 1] = "b"
      c:close()
    end)
    assert(cq:loop())
    assert.same({"a", "b"}, order)
    local h = e:hosts()[1]
    assert.equal(2, h.checkout_waits)
    assert.equal(1, h.connects)
    assert.is_true(h.checkout_wait_max > 0.1, ("the longest wait %.3f s"):format(h.checkout_wait_max))
    e:dispose()
  end)

  it("a refused first host: the connect goes through io_wait and lands on the second", function()
    if not (has_socket and has_cq) then return end
    local opts, rec = recording({pool_size = 2})
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. closed_port(), "S"}), opts)
    local port
    with_ticker(function()
      local c
      c, port = checkout_port(e, rec)
      c:close()
    end)
    assert.equal(test_port(), port)
    assert.is_true(#rec.waits >= 1, "the connect did not go through io_wait")
    local h = e:hosts()
    assert.equal("denied", h[1].state)
    assert.same({[2002] = 1}, h[1].failures)
    assert.equal(1, h[1].failovers)
    assert.equal(1, h[2].connects)
    e:dispose()
  end)

  it("every host failing: one attempt each, the last host's error, nothing left open", function()
    if not (has_socket and has_cq) then return end
    local l = silent_listener()
    finally(l.close)
    local opts, rec = recording({pool_size = 2})
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. l.port, "127.0.0.1:" .. closed_port()},
      {connect_timeout = "1"}), opts)
    local err
    local ticks = with_ticker(function()
      rec.on = true
      local ok, e2 = pcall(e.connect, e)
      rec.on = false
      assert.is_false(ok)
      err = e2
    end)
    assert.is_true(ticks >= 20, "the ticker ran only " .. ticks .. " times during the connect")
    assert.is_true(scoped.exc.is(err, "OperationalError"), tostring(err))
    assert.equal(2002, err.code) -- the refused one's, tried last
    assert.equal(1, l.count())
    local st = e.pool:stats()
    assert.equal(0, st.checkedout)
    assert.equal(0, st.open)
    assert.equal(0, e:hosts()[1].open + e:hosts()[2].open)
    e:dispose()
  end)

  it("a host loop given up mid-way (its coroutine collected, its wait raising): the slot back", function()
    if not (has_socket and has_cq) then return end
    local l = silent_listener()
    finally(l.close)
    -- collected while the first (hung) host's connect waits
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. l.port, "S"}, {connect_timeout = "1"}),
      {pool_size = 1, max_overflow = 0, pool_timeout = 0.5, io_wait = function() coroutine.yield("waiting") end})
    local co = coroutine.create(function() e:connect() end)
    local ok, what = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal("waiting", what)
    assert.equal(1, e.pool:stats().checkedout)
    co = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local st = e.pool:stats()
    assert.same({0, 0}, {st.checkedout, st.open})
    assert.same({0, 0}, {e:hosts()[1].open, e:hosts()[2].open})
    e:dispose()
    -- a wait that raises on the second host, after the first was refused
    local n = 0
    local base = nonblocking.cqueues{}
    local opts = nonblocking.cqueues{pool_size = 1, max_overflow = 0}
    opts.io_wait = function(raw, fd, events, timeout)
      n = n + 1
      -- the refused host's connect waits once too (a non-blocking connect
      -- learns of the refusal from its socket): the second host's raises
      if n == 1 then return base.io_wait(raw, fd, events, timeout) end
      error("gave up", 0)
    end
    e = scoped.create_engine(url_with({"127.0.0.1:" .. closed_port(), "S"}), opts)
    local err
    local cq = cqueues.new()
    cq:wrap(function()
      local ok2, e2 = pcall(e.connect, e)
      assert.is_false(ok2)
      err = e2
    end)
    assert(cq:loop())
    assert.equal("gave up", err)
    assert.equal(2, n)
    st = e.pool:stats()
    assert.same({0, 0}, {st.checkedout, st.open})
    local h = e:hosts()
    assert.same({[2002] = 1}, h[1].failures)
    assert.same({0, 0, 0}, {h[2].connects, h[2].open, h[2].checkout_waits})
    -- the slot is usable again: through io_wait that waits
    opts.io_wait = base.io_wait
    e:dispose()
    e = scoped.create_engine(url_with({"127.0.0.1:" .. closed_port(), "S"}), opts)
    cq = cqueues.new()
    local port
    cq:wrap(function()
      local c = e:connect()
      port = tonumber(c:execute("SELECT @@port"):scalar())
      c:close()
    end)
    assert(cq:loop())
    assert.equal(test_port(), port)
    e:dispose()
  end)

  it("an auth error (1045) fails the checkout at once: the next host is not tried", function()
    if not (has_socket and has_cq) then return end
    local u = url_with({"S", "S"}):set({password = "surely-not-the-password", username = "scoped_nobody"})
    local opts, rec = recording({pool_size = 2})
    local e = scoped.create_engine(u, opts)
    local err
    with_ticker(function()
      rec.on = true
      local ok, e2 = pcall(e.connect, e)
      rec.on = false
      assert.is_false(ok)
      err = e2
    end)
    assert.equal(1045, err.code)
    assert.is_true(#rec.waits >= 1, "the connect did not go through io_wait")
    local h = e:hosts()
    assert.same({[1045] = 1}, h[1].failures)
    assert.equal("up", h[1].state) -- not denied
    assert.same({}, h[2].failures)
    assert.equal(0, h[2].connects)
    e:dispose()
  end)

  it("target_session_attrs through io_wait: read-write lands, read-only is refused, galera 1047", function()
    if not (has_socket and has_cq) then return end
    local opts, rec = recording({pool_size = 2})
    local rw = scoped.create_engine(url_with({"S"}, {target_session_attrs = "read-write"}), opts)
    local ro = scoped.create_engine(url_with({"S"}, {target_session_attrs = "read-only"}), opts)
    local pro = scoped.create_engine(url_with({"S", "S"}, {target_session_attrs = "prefer-read-only"}), opts)
    local ga = scoped.create_engine(url_with({"S"}, {galera = "true"}), opts)
    local port, in_trans, ro_err, pro_port, ga_err
    with_ticker(function()
      local c
      rec.on = true
      c = rw:connect()
      rec.on = false
      -- the check's SELECT (autocommit off on pooled connections) was rolled
      -- back: handed out as a fresh connection, no transaction left open
      in_trans = c.raw:in_transaction()
      port = tonumber(c:execute("SELECT @@port"):scalar())
      c:close()
      rec.on = true
      local ok
      ok, ro_err = pcall(ro.connect, ro)
      assert.is_false(ok)
      ok, ga_err = pcall(ga.connect, ga)
      assert.is_false(ok)
      c, pro_port = checkout_port(pro, rec)
      c:close()
    end)
    assert.equal(test_port(), port)
    -- the handshake's waits, and the role check's: more than a bare connect
    assert.is_true(#rec.waits >= 2, "io_wait called " .. #rec.waits .. " times")
    assert.equal("read-write", rw:hosts()[1].role)
    assert.equal(1, rw:hosts()[1].connects)
    assert.equal("OperationalError", ro_err.kind)
    assert.truthy(tostring(ro_err):find("is read-write (target_session_attrs=read-only)", 1, true), tostring(ro_err))
    assert.equal("denied", ro:hosts()[1].state)
    assert.equal(0, ro:hosts()[1].open)
    assert.equal(1047, ga_err.code)
    assert.truthy(tostring(ga_err):find("wsrep_ready", 1, true), tostring(ga_err))
    -- prefer-read-only: both hosts read-write, the first one kept aside and used
    assert.equal(test_port(), pro_port)
    local ph = pro:hosts()
    assert.same({1, 0}, {ph[1].connects, ph[2].connects})
    assert.same({1, 0}, {ph[1].open, ph[2].open}) -- the second one's connection closed
    assert.is_false(in_trans)
    for _, e in ipairs({rw, ro, pro, ga}) do e:dispose() end
  end)
end)
