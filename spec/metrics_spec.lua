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
          local engine = labels:match('^engine="(.*)"$')
          assert.truthy(engine, labels)
          engine = engine:gsub('\\(.)', {["\\"] = "\\", ['"'] = '"', n = "\n"})
          assert.truthy(tonumber(value), value)
          samples[sname] = samples[sname] or {}
          samples[sname][engine] = tonumber(value)
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

  it("checks what it is given", function()
    assert.equal("ArgumentError", H.error_of(scoped.metrics.prometheus, 42).kind)
    assert.equal("ArgumentError", H.error_of(scoped.metrics.prometheus, {{}}).kind)
  end)
end)
