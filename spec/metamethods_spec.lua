-- Every C metamethod that getmetatable() (or the registry) hands out checks
-- its self argument: called by hand with a value of another type it raises
-- ArgumentError instead of reading that value's memory as its own (issue 17,
-- finding 9: getmetatable(raw).__gc(io.stdout) crashed, Pool.__gc(raw) read
-- invalid memory, Result.__index(other_userdata, "rowcount") returned foreign
-- memory). A finalizer called on its own type never raises.
local scoped = require "scoped"
local core = require "scoped.core"
local H = require "helper"

-- the C functions among a metatable's metamethods
local function c_metamethods(mt)
  local out = {}
  for k, v in pairs(mt) do
    if type(k) == "string" and k:sub(1, 2) == "__" and type(v) == "function"
        and debug.getinfo(v, "S").what == "C" then
      out[k] = v
    end
  end
  return out
end

local function refuses(label, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, label .. ": accepted a foreign self")
  assert.equal("table", type(err), label .. ": " .. tostring(err))
  assert.equal("ArgumentError", err.kind, label .. ": " .. tostring(err.message))
end

describe("C metamethods check their self argument", function()
  local engine, tiny, objects
  setup(function()
    engine = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0})
    tiny = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0, pool_timeout = 5})
    local raw = H.raw()
    local held = tiny._cpool:try_checkout()
    local _, ticket = tiny._cpool:try_checkout() -- the pool is exhausted: a ticket
    local leased = engine._cpool:checkout()
    local lease = core.lease(leased)
    local result = raw:execute("SELECT 1 AS id")
    objects = {
      ["scoped.RawConnection"] = raw, ["scoped.Pool"] = engine._cpool,
      ["scoped.PoolTicket"] = ticket, ["scoped.Lease"] = lease, ["scoped.Result"] = result,
      held = held, leased = leased,
    }
  end)
  teardown(function()
    objects["scoped.PoolTicket"]:cancel()
    objects.held:close()
    objects["scoped.Lease"]:restore(objects.leased)
    objects.leased:close()
    objects["scoped.RawConnection"]:close()
    engine:dispose()
    tiny:dispose()
  end)

  local function foreign(except)
    local list = {
      {"a FILE* userdata", io.stdout}, {"a table", {}}, {"a number", 42}, {"a string", "x"},
      {"nil", nil}, {"true", true}, {"a coroutine", coroutine.create(function() end)},
      {"scoped.null (a NULL lightuserdata)", scoped.null}, {"a function", print},
    }
    for name, obj in pairs(objects) do
      if name:sub(1, 7) == "scoped." and name ~= except then list[#list + 1] = {"a " .. name, obj} end
    end
    return list
  end

  it("every scoped.* metatable's C metamethods refuse every other type (never a crash)", function()
    local seen = {}
    for name, mt in pairs(debug.getregistry()) do
      if type(name) == "string" and name:sub(1, 7) == "scoped." and type(mt) == "table" then
        for mm, f in pairs(c_metamethods(mt)) do
          seen[#seen + 1] = name .. "." .. mm
          for _, w in ipairs(foreign(name)) do
            -- __index with a field name, the others as they are called
            refuses(name .. "." .. mm .. "(" .. w[1] .. ")", f, w[2], "rowcount")
          end
        end
      end
    end
    table.sort(seen)
    -- the ones the issue names are among them (a metatable made lazily, as
    -- scoped.OwnedURL, is there once an engine was created)
    for _, want in ipairs({"scoped.RawConnection.__gc", "scoped.RawConnection.__close",
        "scoped.RawConnection.__tostring", "scoped.Pool.__gc", "scoped.PoolTicket.__gc",
        "scoped.Lease.__gc", "scoped.Result.__index", "scoped.OwnedURL.__gc"}) do
      local found = false
      for _, s in ipairs(seen) do found = found or s == want end
      assert.is_true(found, want .. " not found among " .. table.concat(seen, ", "))
    end
  end)

  it("the cases of the issue: RawConnection.__gc(io.stdout), Pool.__gc(raw), Result.__index(raw, 'rowcount')", function()
    local raw = objects["scoped.RawConnection"]
    refuses("RawConnection.__gc(io.stdout)", getmetatable(raw).__gc, io.stdout)
    refuses("Pool.__gc(raw)", debug.getregistry()["scoped.Pool"].__gc, raw)
    local result = objects["scoped.Result"]
    refuses("Result.__index(raw, 'rowcount')", getmetatable(result).__index, raw, "rowcount")
    refuses("Result.__index(io.stdout, 'lastrowid')", getmetatable(result).__index, io.stdout, "lastrowid")
    -- the connection and the result are untouched
    assert.equal(1, raw:execute("SELECT 1"):scalar())
    assert.equal(1, result.rowcount)
    -- a method looked up through __index still comes back (it checks its own self)
    assert.equal("function", type(getmetatable(result).__index(result, "fetchone")))
    refuses("Result method on a foreign self", getmetatable(result).__index(result, "fetchone"), raw)
  end)

  it("a row's __index refuses anything but a row table; on a row it reads the column", function()
    local row = objects["scoped.RawConnection"]:execute("SELECT 7 AS id"):first()
    local index = getmetatable(row).__index
    assert.equal(7, index(row, "id"))
    for _, w in ipairs(foreign()) do
      if type(w[2]) ~= "table" then refuses("row.__index(" .. w[1] .. ")", index, w[2], "id") end
    end
  end)

  it("a finalizer called by hand on its own type does not raise, and the real one later is harmless", function()
    local e = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0, pool_timeout = 5})
    local cpool = e._cpool
    local raw = cpool:checkout()
    local tid = raw:thread_id()
    getmetatable(raw).__gc(raw) -- gives it back, as the garbage collector would
    assert.is_true(raw:closed())
    getmetatable(raw).__gc(raw) -- twice: nothing left to do
    assert.equal(0, e.pool:checkedout())
    local again = cpool:checkout()
    assert.equal(tid, again:thread_id()) -- it went back to the pool, not lost
    local lease = core.lease(again)
    getmetatable(lease).__gc(lease) -- a parked lease given up: its connection goes back
    assert.equal(0, e.pool:checkedout())
    local held = cpool:try_checkout()
    local _, ticket = cpool:try_checkout()
    getmetatable(ticket).__gc(ticket)
    getmetatable(ticket).__gc(ticket)
    held:close()
    local closed = H.raw()
    closed:close()
    getmetatable(closed).__gc(closed)
    e:dispose()
    collectgarbage()
    collectgarbage()
  end)
end)
