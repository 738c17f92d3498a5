-- The release's version is written in one place, lua/scoped/init.lua's
-- _VERSION; the versioned rockspec and CHANGELOG.md must say the same, and
-- the versioned rockspec must build what the development one builds. (The
-- dist -> pack -> install -> require chain is `make test-release`, a CI
-- stage: it packs HEAD with git archive, so it runs on a clean clone.)
local scoped = require "scoped"
local H = require "helper"

-- the file's text; an error when it cannot be read
local function read(path) return assert(H.read_file(path), "cannot read " .. path) end

-- a rockspec is Lua assignments: run it in an empty environment
local function load_rockspec(path)
  local env = {}
  local chunk
  if setfenv then
    chunk = assert(loadstring(read(path), "@" .. path))
    setfenv(chunk, env)
  else
    chunk = assert(load(read(path), "@" .. path, "t", env))
  end
  chunk()
  return env
end

local function same(a, b, where)
  where = where or "rockspec"
  if type(a) ~= "table" or type(b) ~= "table" then
    assert.are.equal(a, b, where .. " differs")
    return
  end
  for k, v in pairs(a) do same(v, b[k], where .. "." .. tostring(k)) end
  for k in pairs(b) do
    assert.is_not_nil(a[k], where .. "." .. tostring(k) .. " is only in one of them")
  end
end

describe("release", function()
  local V = scoped._VERSION

  it("_VERSION is semver", function()
    assert.is_string(V)
    assert.truthy(V:match("^%d+%.%d+%.%d+$") or V:match("^%d+%.%d+%.%d+%-[%w%.]+$"),
      "_VERSION " .. tostring(V) .. " is not semver")
  end)

  it("the C core carries no version of its own (one place: init.lua)", function()
    assert.is_nil(require("scoped.core").version)
  end)

  it("the Makefile and release.sh read the version init.lua has", function()
    local p = assert(io.popen([[sed -n 's/^ *_VERSION = "\([^"]*\)".*/\1/p' lua/scoped/init.lua]]))
    local got = p:read("*a")
    p:close()
    assert.are.equal(V .. "\n", got)
    assert.truthy(read("Makefile"):find([[_VERSION = "\([^"]*\)"]], 1, true))
    assert.truthy(read("spec/support/release.sh"):find([[_VERSION = "\([^"]*\)"]], 1, true))
  end)

  it("rockspec/scoped-V-1.rockspec is this version, its source the dist tarball", function()
    local rs = load_rockspec("rockspec/scoped-" .. V .. "-1.rockspec")
    assert.are.equal("scoped", rs.package)
    assert.are.equal(V .. "-1", rs.version)
    assert.are.equal("scoped-" .. V .. ".tar.gz", rs.source.url)
    assert.are.equal("scoped-" .. V, rs.source.dir)
  end)

  it("the versioned rockspec builds and depends on what the scm one does", function()
    local rs = load_rockspec("rockspec/scoped-" .. V .. "-1.rockspec")
    local scm = load_rockspec("rockspec/scoped-scm-1.rockspec")
    assert.are.equal("scm-1", scm.version)
    same(scm.build, rs.build, "build")
    same(scm.dependencies, rs.dependencies, "dependencies")
    same(scm.external_dependencies, rs.external_dependencies, "external_dependencies")
    same(scm.description, rs.description, "description")
  end)

  it("CHANGELOG.md has an [Unreleased] section, then this version, dated", function()
    local log = read("CHANGELOG.md")
    local headings = {}
    for h in log:gmatch("\n## ([^\n]+)") do headings[#headings + 1] = h end
    assert.are.equal("[Unreleased]", headings[1])
    local v, date = (headings[2] or ""):match("^%[([^%]]+)%] %- (%d%d%d%d%-%d%d%-%d%d)$")
    assert.are.equal(V, v, "the first release in CHANGELOG.md is not _VERSION")
    assert.is_string(date)
  end)

  it("every release in CHANGELOG.md has its rockspec", function()
    for v in read("CHANGELOG.md"):gmatch("\n## %[(%d+%.%d+%.%d+)%]") do
      assert.truthy(io.open("rockspec/scoped-" .. v .. "-1.rockspec"), "no rockspec for " .. v)
    end
  end)
end)
