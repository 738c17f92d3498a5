-- pool:stats() counters (csrc/core/pool.c) and scoped.metrics.prometheus.
-- Connections opened are checked against the server's own count
-- (Connections in SHOW GLOBAL STATUS, read by the observer).
local scoped = require "scoped"
local H = require "helper"

local function server_connects()
  return tonumber(H.observer():execute("SHOW GLOBAL STATUS LIKE 'Connections'"):first()[2])
end

local function engine(opts, url)
  return scoped.create_engine(url or H.url, opts)
end

describe("pool:stats() counters", function()
  it("start at zero", function()
    local e = engine()
    local st = e.pool:stats()
    for _, k in ipairs({"checkouts", "waits", "timeouts", "connects", "connect_failures",
                        "invalidations", "recycles", "preping_failures"}) do
      assert.equal(0, st[k], k)
    end
    assert.equal(0, st.wait_seconds)
    assert.equal(0, st.wait_max)
    e:dispose()
  end)

  it("count checkouts and connects as the server sees them", function()
    H.observer()
    local before = server_connects()
    local e = engine({pool_size = 2})
    for _ = 1, 5 do
      local a, b = e:connect(), e:connect()
      a:scalar("SELECT 1"); b:scalar("SELECT 1")
      a:close(); b:close()
    end
    local st = e.pool:stats()
    assert.equal(10, st.checkouts)
    assert.equal(2, st.connects)
    assert.equal(server_connects() - before, st.connects)
    assert.equal(0, st.waits)
    e:dispose()
  end)

  it("count a timeout, and a wait with its seconds", function()
    local e = engine({pool_size = 1, max_overflow = 0, pool_timeout = 0.3})
    local held = e:connect()
    assert.equal("TimeoutError", H.error_of(e.connect, e).kind)
    local st = e.pool:stats()
    assert.equal(1, st.timeouts)
    assert.equal(1, st.checkouts)
    assert.equal(0, st.waits)
    held:close()
    e:dispose()

    -- a pool_wait that gives the held connection back after 0.1 s: the
    -- waiting checkout gets it, and counts one wait of about 0.1 s
    local out
    e = engine({pool_size = 1, max_overflow = 0, pool_timeout = 2,
      pool_wait = function()
        H.sleep(0.1)
        if out then out:close(); out = nil end
      end})
    out = e:connect()
    local c = e:connect()
    st = e.pool:stats()
    assert.equal(2, st.checkouts)
    assert.equal(1, st.waits)
    assert.truthy(st.wait_seconds >= 0.1 and st.wait_seconds < 1, st.wait_seconds)
    assert.equal(st.wait_seconds, st.wait_max)
    assert.equal(0, st.timeouts)
    c:close()
    e:dispose()
  end)

  it("count a failed connect, which is no checkout", function()
    local u = scoped.make_url(H.url):set({database = "scoped_no_such_db"})
    local e = engine({pool_size = 1}, u)
    assert.equal(1049, H.error_of(e.connect, e).code)
    local st = e.pool:stats()
    assert.equal(1, st.connect_failures)
    assert.equal(0, st.connects)
    assert.equal(0, st.checkouts)
    assert.equal(0, st.open)
    e:dispose()
  end)

  it("count invalidations", function()
    local e = engine({pool_size = 2})
    local c = e:connect()
    c:scalar("SELECT 1")
    c:invalidate()
    c:close()
    assert.equal(1, e.pool:stats().invalidations)
    local d = e:connect() -- a fresh one replaces it
    d:close()
    local st = e.pool:stats()
    assert.equal(1, st.invalidations)
    assert.equal(2, st.connects)
    e:dispose()
  end)

  it("count recycles, each a connect the server sees", function()
    H.observer()
    local before = server_connects()
    local e = engine({pool_size = 1, pool_recycle = 0})
    for _ = 1, 3 do
      local c = e:connect()
      c:scalar("SELECT 1")
      c:close()
      H.sleep(0.01)
    end
    local st = e.pool:stats()
    assert.equal(2, st.recycles) -- the first checkout opened, the next two replaced
    assert.equal(3, st.connects)
    assert.equal(server_connects() - before, st.connects)
    e:dispose()
  end)

  it("count pre-ping failures", function()
    local e = engine({pool_size = 1, pool_pre_ping = true})
    local c = e:connect()
    local id = c:scalar("SELECT CONNECTION_ID()")
    c:close()
    H.observer():execute("KILL :id", {id = id})
    assert.is_true(H.connection_gone(id))
    c = e:connect()
    assert.are_not.equal(id, c:scalar("SELECT CONNECTION_ID()"))
    c:close()
    local st = e.pool:stats()
    assert.equal(1, st.preping_failures)
    assert.equal(2, st.connects)
    assert.equal(0, st.recycles)
    e:dispose()
  end)
end)

describe("scoped.metrics.prometheus", function()
  -- name="value" pairs separated by commas, values with \\ \" \n escaped
  local function labels_of(s)
    local t, i = {}, 1
    local unescape = {["\\"] = "\\", ['"'] = '"', n = "\n"}
    while i <= #s do
      local name, j = s:match('^([%a_][%w_]*)="()', i)
      assert.truthy(name, "bad labels: " .. s)
      local v = {}
      while true do
        local ch = s:sub(j, j)
        assert.truthy(ch ~= "", "an unterminated label value: " .. s)
        if ch == "\\" then
          v[#v + 1] = unescape[s:sub(j + 1, j + 1)]
          assert.truthy(v[#v], "a bad escape: " .. s)
          j = j + 2
        elseif ch == '"' then
          j = j + 1
          break
        else
          v[#v + 1] = ch
          j = j + 1
        end
      end
      assert.is_nil(t[name], "a label twice: " .. s)
      t[name] = table.concat(v)
      if s:sub(j, j) == "," then
        j = j + 1
      else
        assert.equal(#s + 1, j, "bad labels: " .. s)
      end
      i = j
    end
    return t
  end

  -- the text format: HELP and TYPE before a family's samples, one family
  -- once, samples "name{labels} value"; returns samples by name and label
  local function parse(text)
    assert.equal("\n", text:sub(-1))
    local families, samples, typed = {}, {}, nil
    for line in text:gmatch("([^\n]*)\n") do
      local name, help = line:match("^# HELP ([%w_]+) (.+)$")
      if name then
        assert.is_nil(families[name], "family twice: " .. name)
        families[name] = {help = help}
      else
        local tname, kind = line:match("^# TYPE ([%w_]+) (%a+)$")
        if tname then
          assert.truthy(kind == "gauge" or kind == "counter", kind)
          assert.truthy(families[tname], "TYPE before HELP: " .. tname)
          families[tname].type = kind
          typed = tname
        else
          local sname, labels, value = line:match('^([%w_]+){(.-)} (%S+)$')
          assert.truthy(sname, "not a sample: " .. line)
          assert.equal(typed, sname, "sample outside its family")
          local l = labels_of(labels)
          assert.truthy(l.engine, labels)
          -- by engine; a host's series by "engine|host" (and "|code")
          local key = l.engine
          if sname:find("^scoped_host_") then
            assert.truthy(l.host, labels)
            key = key .. "|" .. l.host
            if sname == "scoped_host_failures_total" then key = key .. "|" .. assert(l.code, labels) end
          else
            assert.is_nil(l.host, labels)
          end
          assert.truthy(tonumber(value), value)
          samples[sname] = samples[sname] or {}
          assert.is_nil(samples[sname][key], "the same series twice: " .. line)
          samples[sname][key] = tonumber(value)
        end
      end
    end
    return families, samples
  end

  it("reports every engine's stats as gauges and counters", function()
    local a = engine({pool_size = 3})
    local b = engine({pool_size = 1}, scoped.make_url(H.url):set({password = "s3cret"}))
    -- a label value with every character the format escapes: an engine
    -- whose URL prints so (real URLs print them percent-encoded)
    local odd = {url = setmetatable({}, {__tostring = function() return 'we"ird\\db\nname' end}),
                 pool = b.pool}
    local c = a:connect()
    c:scalar("SELECT 1")
    local text = scoped.metrics.prometheus({a, b, odd})
    assert.is_nil(text:find("s3cret", 1, true))
    local families, samples = parse(text)
    assert.equal("counter", families.scoped_pool_checkouts_total.type)
    assert.equal("gauge", families.scoped_pool_checked_out.type)
    local na, nb = tostring(a.url), tostring(b.url)
    assert.equal(1, samples.scoped_pool_size['we"ird\\db\nname'])
    assert.equal(3, samples.scoped_pool_size[na])
    assert.equal(1, samples.scoped_pool_size[nb])
    assert.equal(1, samples.scoped_pool_checked_out[na])
    assert.equal(1, samples.scoped_pool_checkouts_total[na])
    assert.equal(1, samples.scoped_pool_connects_total[na])
    assert.equal(0, samples.scoped_pool_checkouts_total[nb])
    local st = a.pool:stats()
    for name, field in pairs({scoped_pool_open = "open", scoped_pool_timeouts_total = "timeouts",
                              scoped_pool_checkout_wait_seconds_total = "wait_seconds"}) do
      assert.equal(st[field], samples[name][na], name)
    end
    c:close()
    -- one engine alone, and the same URL twice told apart
    local _, one = parse(scoped.metrics.prometheus(a))
    assert.equal(0, one.scoped_pool_checked_out[na])
    local _, twice = parse(scoped.metrics.prometheus({a, a}))
    assert.equal(3, twice.scoped_pool_size[na .. " #2"])
    a:dispose(); b:dispose()
  end)

  it("reports engine:hosts() per host, labelled host=\"h:port\", and the pool's failbacks", function()
    local has_socket, socket = pcall(require, "socket")
    if not has_socket then pending("no luasocket") return end
    local u = scoped.make_url(H.url)
    local port = tonumber(H.url:match("@[^/:]*:(%d+)"))
    local server = "127.0.0.1:" .. port
    -- a loopback port nothing listens on: connects to it are refused
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, dead = s:getsockname()
    s:close()
    dead = "127.0.0.1:" .. dead
    local function with_hosts(hosts, query)
      local q = {}
      for k, v in pairs(u.query) do q[k] = v end
      for k, v in pairs(query or {}) do q[k] = v end
      return u:set({hosts = hosts, query = q})
    end
    -- every host series against engine:hosts() itself
    local fields = {scoped_host_connects_total = "connects", scoped_host_denials_total = "denials",
                    scoped_host_failovers_total = "failovers", scoped_host_open = "open",
                    scoped_host_checked_out = "checkedout", scoped_host_checked_in = "idle",
                    scoped_host_checkout_waits_total = "checkout_waits",
                    scoped_host_checkout_wait_seconds_total = "checkout_wait",
                    scoped_host_checkout_wait_seconds_max = "checkout_wait_max"}
    local function same_as_hosts(samples, e, names)
      local en = tostring(e.url)
      for i, h in ipairs(e:hosts()) do
        local key = en .. "|" .. names[i]
        for metric, field in pairs(fields) do
          assert.equal(h[field], samples[metric][key], metric .. " " .. key)
        end
        assert.equal(h.state == "up" and 1 or 0, samples.scoped_host_up[key])
        for code, n in pairs(h.failures) do
          assert.equal(n, samples.scoped_host_failures_total[key .. "|" .. code])
        end
      end
    end

    -- one host: one entry, named as in the URL
    local a = engine({pool_size = 2}, with_hosts({server}))
    local one = scoped.create_engine(H.url, {pool_size = 2})
    local c1, c2 = a:connect(), one:connect()
    local families, samples = parse(scoped.metrics.prometheus({a, one}))
    assert.equal("counter", families.scoped_host_connects_total.type)
    assert.equal("gauge", families.scoped_host_checked_out.type)
    assert.equal("counter", families.scoped_pool_failbacks_total.type)
    local na, n1 = tostring(a.url), tostring(one.url)
    assert.equal(1, samples.scoped_host_connects_total[na .. "|" .. server])
    assert.equal(1, samples.scoped_host_checked_out[na .. "|" .. server])
    assert.equal(1, samples.scoped_host_up[na .. "|" .. server])
    assert.equal(1, samples.scoped_host_checkout_waits_total[na .. "|" .. server])
    local h1 = one:hosts()[1]
    assert.equal(1, samples.scoped_host_connects_total[n1 .. "|" .. h1.host .. ":" .. h1.port])
    assert.is_nil(samples.scoped_host_failures_total) -- no failure yet: no sample
    same_as_hosts(samples, a, {server})
    c1:close(); c2:close()
    one:dispose()

    -- a refused first host: counted against it, by code; the server serves.
    -- deny_timeout 3: the series and hosts() are read one after the other,
    -- and under valgrind a 1 s denial ended between the two (CI saw up 0
    -- in the series, "up" in hosts())
    local e = engine({pool_size = 2}, with_hosts({dead, server}, {deny_timeout = "3"}))
    local c = e:connect()
    local ne = tostring(e.url)
    _, samples = parse(scoped.metrics.prometheus({a, e}))
    assert.equal(0, samples.scoped_host_up[ne .. "|" .. dead])
    assert.equal(1, samples.scoped_host_up[ne .. "|" .. server])
    assert.equal(1, samples.scoped_host_failures_total[ne .. "|" .. dead .. "|2002"])
    assert.equal(1, samples.scoped_host_denials_total[ne .. "|" .. dead])
    assert.equal(1, samples.scoped_host_failovers_total[ne .. "|" .. dead])
    assert.equal(0, samples.scoped_host_connects_total[ne .. "|" .. dead])
    assert.equal(1, samples.scoped_host_connects_total[ne .. "|" .. server])
    assert.equal(1, samples.scoped_host_checked_out[ne .. "|" .. server])
    assert.equal(0, samples.scoped_pool_failbacks_total[ne])
    same_as_hosts(samples, e, {dead, server})
    same_as_hosts(samples, a, {server})
    c:close()
    -- once its denial ends, the idle connection to the server is replaced
    -- to fail back: host 1 refused again, a new one on the server
    for _ = 1, 300 do
      if e:hosts()[1].state == "up" then break end
      socket.sleep(0.02)
    end
    assert.equal("up", e:hosts()[1].state)
    c = e:connect()
    c:close()
    _, samples = parse(scoped.metrics.prometheus(e))
    assert.equal(1, samples.scoped_pool_failbacks_total[ne])
    assert.equal(e.pool:stats().failbacks, samples.scoped_pool_failbacks_total[ne])
    assert.equal(2, samples.scoped_host_failures_total[ne .. "|" .. dead .. "|2002"])
    assert.equal(2, samples.scoped_host_connects_total[ne .. "|" .. server])
    same_as_hosts(samples, e, {dead, server})
    e:dispose()

    -- the same host twice: told apart; never the user or the password
    local pw = engine({pool_size = 1}, with_hosts({server, server}):set({password = "s3cret"}))
    local text = scoped.metrics.prometheus(pw)
    assert.is_nil(text:find("s3cret", 1, true))
    for host in text:gmatch('host="([^"]*)"') do
      assert.truthy(host == server or host == server .. " #2", host)
    end
    _, samples = parse(text)
    local np = tostring(pw.url)
    assert.equal(1, samples.scoped_host_up[np .. "|" .. server])
    assert.equal(1, samples.scoped_host_up[np .. "|" .. server .. " #2"])
    pw:dispose()
    a:dispose()
  end)

  it("checks what it is given", function()
    assert.equal("ArgumentError", H.error_of(scoped.metrics.prometheus, 42).kind)
    assert.equal("ArgumentError", H.error_of(scoped.metrics.prometheus, {{}}).kind)
  end)
end)
