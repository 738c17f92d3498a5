-- pool_leak_threshold: HikariCP's leakDetectionThreshold. A connection held
-- longer than the threshold is reported once through the engine's logger,
-- with the traceback of where it was checked out.
local scoped = require "scoped"
local H = require "helper"

local function engine(lines, opts)
  opts = opts or {}
  opts.logger = function(_, l) lines[#lines + 1] = l end
  return scoped.create_engine(H.url, opts)
end

local function reports(lines)
  local n = 0
  for _, l in ipairs(lines) do
    if l:find("pool_leak_threshold", 1, true) then n = n + 1 end
  end
  return n
end

describe("pool_leak_threshold", function()
  after_each(function() collectgarbage(); collectgarbage() end)

  it("reports a connection held past the threshold once, with where it was checked out", function()
    local lines = {}
    local e = engine(lines, {pool_leak_threshold = 0.2})
    local function leaky_checkout_site()
      local c = e:connect() -- not a tail call: this frame shows in the traceback
      return c
    end
    local held = leaky_checkout_site()
    held:execute("SELECT 1")
    local c = e:connect() -- activity before the threshold: nothing to report
    c:close()
    assert.equal(0, reports(lines))
    H.sleep(0.3)
    c = e:connect() -- the next checkout scans: one report
    c:close()       -- and the checkin scans again: still one
    for _ = 1, 3 do e:connect():close() end
    assert.equal(0, e:check_leaks())
    assert.equal(1, reports(lines))
    local text = lines[1]
    assert.truthy(text:find("connection held for", 1, true), text)
    assert.truthy(text:find("leak_threshold_spec.lua", 1, true), text)
    assert.truthy(text:find("leaky_checkout_site", 1, true), text)
    held:close()
    for _ = 1, 3 do e:connect():close() end
    assert.equal(1, reports(lines))
    assert.equal(0, e.pool:checkedout())
    e:dispose()
  end)

  it("reports nothing for connections returned in time, sessions included", function()
    local lines = {}
    local e = engine(lines, {pool_leak_threshold = 0.2})
    local Session = scoped.sessionmaker{bind = e}
    for _ = 1, 20 do
      local s = Session()
      s:execute("SELECT 1")
      s:commit()
      local c = e:connect()
      c:close()
    end
    H.sleep(0.3)
    e:connect():close()
    assert.equal(0, e:check_leaks())
    assert.equal(0, reports(lines))
    e:dispose()
  end)

  it("reports a session that keeps its connection, and forgets it once returned", function()
    local lines = {}
    local e = engine(lines, {pool_leak_threshold = 0.2})
    local s = scoped.sessionmaker{bind = e}()
    s:execute("SELECT 1") -- checked out here, held until commit
    H.sleep(0.3)
    assert.equal(1, e:check_leaks())
    assert.equal(0, e:check_leaks())
    s:commit()
    H.sleep(0.3)
    assert.equal(0, e:check_leaks())
    assert.equal(1, reports(lines))
    e:dispose()
  end)

  it("does not report a connection replaced after a disconnect", function()
    local lines = {}
    local e = engine(lines, {pool_leak_threshold = 0.2})
    local c = e:connect()
    c:invalidate() -- closes the raw connection behind the engine
    H.sleep(0.3)
    assert.equal(0, e:check_leaks())
    c:close()
    assert.equal(0, reports(lines))
    e:dispose()
  end)

  it("costs nothing by default: no traceback is taken at checkout", function()
    local calls = 0
    local real = debug.traceback
    debug.traceback = function(...) calls = calls + 1; return real(...) end
    local ok, err = pcall(function()
      local e = scoped.create_engine(H.url, {echo = true, logger = function() end})
      for _ = 1, 10 do e:connect():close() end
      e:dispose()
      assert.equal(0, e:check_leaks())
    end)
    debug.traceback = real
    assert(ok, err)
    assert.equal(0, calls)
  end)

  it("refuses a threshold that is not a positive number", function()
    for _, v in ipairs({0, -1, 0 / 0, "10", true}) do
      local err = H.error_of(scoped.create_engine, H.url, {pool_leak_threshold = v})
      assert.equal("ArgumentError", err.kind)
      assert.truthy(err.message:find("pool_leak_threshold", 1, true), err.message)
    end
  end)
end)
