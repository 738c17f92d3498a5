-- The rockspec must ship every source file: a module added to csrc/core/,
-- csrc/lua/ or
-- lua/scoped/ but not to the rockspec installs a broken rock.
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function files(dir, ext)
  local out = {}
  local p = assert(io.popen("ls " .. dir))
  for name in p:lines() do
    if name:sub(-#ext) == ext then out[#out + 1] = dir .. "/" .. name end
  end
  p:close()
  return out
end

describe("rockspec", function()
  local spec = read("rockspec/scoped-scm-1.rockspec")

  it("lists every C source of the core and the binding", function()
    local all = files("csrc/core", ".c")
    for _, f in ipairs(files("csrc/lua", ".c")) do all[#all + 1] = f end
    assert.is_true(#all > 10)
    for _, f in ipairs(all) do
      assert.truthy(spec:find('"' .. f .. '"', 1, true), f .. " is missing from the rockspec")
    end
  end)

  it("lists every Lua module", function()
    for _, f in ipairs(files("lua/scoped", ".lua")) do
      local mod = f:gsub("^lua/", ""):gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.truthy(spec:find('["' .. mod .. '"] = "' .. f .. '"', 1, true), f .. " is missing from the rockspec")
    end
  end)
end)
