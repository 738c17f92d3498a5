-- TLS against a second throwaway server started with a self-signed CA and a
-- server certificate for IP 127.0.0.1 (spec/support/tls-server.sh): ssl_ca +
-- ssl_mode=REQUIRED encrypts, VERIFY_IDENTITY checks the name, VERIFY_CA the
-- chain, and every refusal is a clean OperationalError.
local scoped = require "scoped"
local H = require "helper"

local sh_ok = H.sh_ok

local function have(tool) return sh_ok("command -v " .. tool .. " >/dev/null 2>&1") end

local usable = have("openssl") and have("mariadbd") or have("/usr/sbin/mariadbd")
usable = usable and have("openssl") and have("mariadb-install-db")

describe("TLS", function()
  local dir, port
  local function url(host, query)
    return ("mysql://root@%s:%d/mysql?connect_timeout=5&%s"):format(host, port, query)
  end
  local function cipher(c)
    return c:execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'"):first()[2]
  end

  setup(function()
    if not usable then return end
    port, dir = H.start_server("tls-server.sh")
  end)
  teardown(function() H.stop_server("tls-server.sh", dir) end)

  local test = usable and it or pending

  test("ssl_ca with ssl_mode=REQUIRED connects over TLS", function()
    local c = scoped.raw_connect(url("127.0.0.1", "ssl_ca=" .. dir .. "/ca.pem&ssl_mode=REQUIRED"))
    assert.is_true(#cipher(c) > 0)
    c:close()
    local e = scoped.create_engine(url("127.0.0.1", "ssl_mode=REQUIRED"),
      {connect_args = {ssl_ca = dir .. "/ca.pem"}})
    local s = scoped.sessionmaker{bind = e}()
    assert.is_true(#s:execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'"):first()[2] > 0)
    s:close()
    e:dispose()
  end)

  test("with io_wait, a TLS connection is opened and used the blocking way (io_wait never called)", function()
    local has_cq, cqueues = pcall(require, "cqueues")
    assert(has_cq, "lua-cqueues is not installed")
    local calls = 0
    local opts = scoped.nonblocking.cqueues{pool_size = 1, connect_args = {ssl_ca = dir .. "/ca.pem"}}
    local base = opts.io_wait
    opts.io_wait = function(...)
      calls = calls + 1
      return base(...)
    end
    local e = scoped.create_engine(url("127.0.0.1", "ssl_mode=REQUIRED"), opts)
    local cq = cqueues.new()
    local got, rows
    cq:wrap(function()
      local conn = e:connect()
      got = cipher(conn)
      rows = conn:execute("SELECT REPEAT('x', 100000) AS big, 2 AS n"):first()
      conn:commit()
      conn:close()
    end)
    assert(cq:loop())
    assert.is_true(#got > 0)
    assert.equal(100000, #rows[1])
    assert.equal(2, rows[2])
    assert.equal(0, calls)
    e:dispose()
  end)

  test("VERIFY_IDENTITY connects when the certificate names the host", function()
    local c = scoped.raw_connect(url("127.0.0.1", "ssl_ca=" .. dir .. "/ca.pem&ssl_mode=VERIFY_IDENTITY"))
    assert.is_true(#cipher(c) > 0)
    c:close()
  end)

  test("VERIFY_IDENTITY against a host name the certificate does not name fails cleanly", function()
    -- 127.1 is 127.0.0.1 to the resolver, but not the name in the certificate
    local e = scoped.create_engine(url("127.1", "ssl_ca=" .. dir .. "/ca.pem&ssl_mode=VERIFY_IDENTITY"),
      {pool_size = 1, max_overflow = 0, pool_timeout = 1})
    for _ = 1, 2 do
      local err = H.error_of(e.connect, e)
      assert.equal("OperationalError", err.kind, tostring(err))
      assert.equal(2026, err.code, tostring(err))
    end
    assert.equal(0, e.pool:stats().open) -- no slot lost
  end)

  test("VERIFY_CA against a certificate from another CA fails cleanly", function()
    local err = H.error_of(scoped.raw_connect,
      url("127.0.0.1", "ssl_ca=" .. dir .. "/other-ca.pem&ssl_mode=VERIFY_CA"))
    assert.equal("OperationalError", err.kind, tostring(err))
    assert.equal(2026, err.code, tostring(err))
  end)

  test("VERIFY_CA with the right CA connects", function()
    local c = scoped.raw_connect(url("127.0.0.1", "ssl_ca=" .. dir .. "/ca.pem&ssl_mode=VERIFY_CA"))
    assert.is_true(#cipher(c) > 0)
    c:close()
  end)

  test("REQUIRED against a server without TLS fails cleanly instead of going on in clear", function()
    local err = H.error_of(scoped.raw_connect, H.url .. "?ssl_mode=REQUIRED&connect_timeout=5")
    assert.equal("OperationalError", err.kind, tostring(err))
    assert.equal(2026, err.code, tostring(err))
  end)

  test("VERIFY_CA without ssl_ca is refused, not silently unverified", function()
    local err = H.error_of(scoped.raw_connect, url("127.0.0.1", "ssl_mode=VERIFY_CA"))
    assert.equal("OperationalError", err.kind, tostring(err))
    assert.truthy(err.message:find("needs ssl_ca", 1, true), err.message)
  end)

  test("PREFERRED uses TLS when the server has it, and goes on in clear when it has not", function()
    local c = scoped.raw_connect(url("127.0.0.1", "ssl_mode=PREFERRED"))
    assert.is_true(#cipher(c) > 0)
    c:close()
    c = scoped.raw_connect(H.url .. "?ssl_mode=PREFERRED")
    assert.equal("", cipher(c))
    c:close()
  end)

  test("VERIFY_IDENTITY against a server without TLS fails cleanly, and an engine loses no slot", function()
    local e = scoped.create_engine(H.url .. "?ssl_mode=VERIFY_IDENTITY&ssl_ca=" .. dir .. "/ca.pem",
      {pool_size = 1, max_overflow = 0, pool_timeout = 1})
    for _ = 1, 2 do
      local err = H.error_of(e.connect, e)
      assert.equal("OperationalError", err.kind, tostring(err))
      assert.equal(2026, err.code, tostring(err))
    end
    assert.equal(0, e.pool:stats().open)
  end)

  test("DISABLED stays in clear even with ssl_ca given", function()
    local c = scoped.raw_connect(url("127.0.0.1", "ssl_ca=" .. dir .. "/ca.pem&ssl_mode=DISABLED"))
    assert.equal("", cipher(c))
    c:close()
  end)
end)

-- TLS stripping (a server, or a man in the middle, that offers no TLS and
-- asks for an authentication method that sends the password): whenever
-- the URL requires TLS, the password must never leave the process in
-- clear. spec/support/fake_mysql.lua plays the server and records every
-- byte it receives.
describe("TLS required against a server that offers none", function()
  local PASSWORD = "Pw-Stripped-4471"
  local lua = os.getenv("SCOPED_LUA") or "lua5.4"
  local ca = "/etc/ssl/certs/ca-certificates.crt" -- any readable PEM: TLS never starts

  local function hex(s)
    return (s:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
  end

  local read = H.read_file

  -- Runs the fake server with `plugin`, connects with `query`; returns the
  -- error and the hex of every byte the server received.
  local function strip(plugin, query)
    local base = os.tmpname()
    local ready, out = base .. ".ready", base .. ".out"
    assert(sh_ok(("%s spec/support/fake_mysql.lua %s %s %s >/dev/null 2>&1 &"):format(lua, ready, out, plugin)))
    local port
    for _ = 1, 200 do
      port = tonumber(read(ready) or "")
      if port then break end
      H.sleep(0.02)
    end
    assert(port, "the fake server did not start")
    local url = ("mysql://app:%s@127.0.0.1:%d/db?connect_timeout=5&%s"):format(PASSWORD, port, query)
    local ok, err = pcall(scoped.raw_connect, url)
    local got
    for _ = 1, 300 do
      got = read(out)
      if got then break end
      H.sleep(0.02)
    end
    os.remove(base); os.remove(ready); os.remove(out)
    assert(got, "the fake server wrote nothing")
    assert.is_false(ok, "connected to a fake server")
    return err, got
  end

  for _, plugin in ipairs({"mysql_clear_password", "caching_sha2_password"}) do
    for _, query in ipairs({"ssl_mode=REQUIRED&ssl_ca=" .. ca, "ssl_mode=VERIFY_CA&ssl_ca=" .. ca,
                            "ssl_ca=" .. ca, "ssl_mode=VERIFY_IDENTITY&ssl_ca=" .. ca}) do
      it(("never sends the password (%s, %s)"):format(plugin, query:match("^[^&]*")), function()
        local err, got = strip(plugin, query)
        assert.equal("OperationalError", err.kind)
        assert.is_nil(got:find(hex(PASSWORD), 1, true), "the password reached the server")
        assert.falsy(tostring(err):find(PASSWORD, 1, true))
      end)
    end
  end

  it("without TLS asked for, the same server does get it (the check above is not vacuous)", function()
    local _, got = strip("mysql_clear_password", "ssl_mode=DISABLED")
    assert.truthy(got:find(hex(PASSWORD), 1, true))
  end)
end)
