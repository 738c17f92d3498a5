local scoped = require "scoped"
local H = require "helper"

describe("make_url", function()
  it("parses the seed's URL, ignoring the driver part", function()
    local u = scoped.make_url("mysql+pymysql://root:123@47.93.4.198:3306/s6?charset=utf8")
    assert.equal("mysql+pymysql", u.drivername)
    assert.equal("root", u.username)
    assert.equal("123", u.password)
    assert.equal("47.93.4.198", u.host)
    assert.equal(3306, u.port)
    assert.equal("s6", u.database)
    assert.same({charset = "utf8"}, u.query)
  end)

  it("accepts mysql://, mariadb:// and mariadb+driver://", function()
    assert.equal("mysql", scoped.make_url("mysql://u@h/d").drivername)
    assert.equal("mariadb", scoped.make_url("mariadb://u@h/d").drivername)
    assert.equal("mariadb+mariadbconnector", scoped.make_url("mariadb+mariadbconnector://h").drivername)
  end)

  it("percent-decodes user, password and database", function()
    local u = scoped.make_url("mysql://us%40er:p%40ss%3Aw%2Fd@localhost/my%20db")
    assert.equal("us@er", u.username)
    assert.equal("p@ss:w/d", u.password)
    assert.equal("my db", u.database)
  end)

  it("allows the host to be omitted with a unix socket", function()
    local u = scoped.make_url("mysql://root@/test?unix_socket=/tmp/x.sock")
    assert.is_nil(u.host)
    assert.equal("/tmp/x.sock", u.query.unix_socket)
    assert.equal("test", u.database)
  end)

  it("takes every documented query parameter", function()
    local u = scoped.make_url("mysql://h/d?charset=latin1&unix_socket=/s&connect_timeout=3" ..
      "&read_timeout=4&write_timeout=5&ssl_ca=/ca&ssl_cert=/c&ssl_key=/k&ssl_mode=REQUIRED" ..
      "&init_command=SET%20@a%3D1")
    assert.same({charset = "latin1", unix_socket = "/s", connect_timeout = "3", read_timeout = "4",
      write_timeout = "5", ssl_ca = "/ca", ssl_cert = "/c", ssl_key = "/k", ssl_mode = "REQUIRED",
      init_command = "SET @a=1"}, u.query)
  end)

  it("parses an IPv6 host in brackets", function()
    local u = scoped.make_url("mysql://root@[::1]:3307/db")
    assert.equal("::1", u.host)
    assert.equal(3307, u.port)
    assert.equal("mysql://root@[::1]:3307/db", tostring(u))
  end)

  it("masks the password in tostring", function()
    local u = scoped.make_url("mysql://root:s3cr%21t@localhost:3306/db?charset=utf8mb4")
    assert.equal("mysql://root:***@localhost:3306/db?charset=utf8mb4", tostring(u))
    assert.equal("mysql://root:s3cr%21t@localhost:3306/db?charset=utf8mb4", u:render_as_string(false))
  end)

  it("returns a URL object unchanged", function()
    local u = scoped.make_url("mysql://h/d")
    assert.equal(u, scoped.make_url(u))
  end)

  local bad = {
    {"postgresql://h/d", "unsupported dialect"},
    {"mysql:/h/d", "expected 'mysql://"},
    {"mysql://h:99999/d", "the port is not a number from 1 to 65535"},
    {"mysql://h:abc/d", "the port is not a number"},
    {"mysql://h/d?colour=red", "unknown query parameter 'colour'"},
    {"mysql://h/d?charset", "has no value"},
    {"mysql://h/d?connect_timeout=soon", "connect_timeout must be a whole number"},
    {"mysql://h/d?ssl_mode=SOMETIMES", "ssl_mode must be one of"},
    {"mysql://u:p%zz@h/d", "bad percent-escape in the password"},
    {"mysql://u%00@h/d", "contains a NUL byte"},
    {"mysql://h/d?charset=a&charset=b", "given twice"},
    {"mysql+a+b://h", "bad driver name"},
  }
  for _, case in ipairs(bad) do
    it("refuses " .. case[1] .. " naming what is wrong", function()
      local err = H.error_of(scoped.make_url, case[1])
      assert.equal("ArgumentError", err.kind)
      assert.truthy(err.message:find(case[2], 1, true), err.message)
    end)
  end

  it("never puts the password in a parse error", function()
    local err = H.error_of(scoped.make_url, "mysql://root:hunter2@h:bad/d")
    assert.falsy(tostring(err):find("hunter2", 1, true))
    -- '@host' left out: the password stands where the port would
    err = H.error_of(scoped.make_url, "mysql://root:hunter2/d")
    assert.falsy(tostring(err):find("hunter2", 1, true))
    -- a password of digits, '@host' left out: too big for a port, never echoed
    for _, digits in ipairs({"123456", "99999", "7319046825"}) do
      err = H.error_of(scoped.make_url, "mysql://root:" .. digits .. "/d")
      assert.falsy(tostring(err):find(digits, 1, true), tostring(err))
    end
  end)

  it("keeps an unescaped '@' of a password in the password, never in the host or tostring", function()
    for _, case in ipairs({
      {"mysql://app:p@ss@db.example:3306/shop", "p@ss", "db.example"},
      {"mysql://app:s3cr@t!@127.0.0.1/shop", "s3cr@t!", "127.0.0.1"},
      {"mysql://app:a@b@c@h?unix_socket=/tmp/x@y", "a@b@c", "h"},
      {"mysql://app:pw@h/db@x", "pw", "h"}, -- an '@' after the host belongs to the database
    }) do
      local u = scoped.make_url(case[1])
      assert.equal(case[2], u.password)
      assert.equal(case[3], u.host)
      assert.falsy(tostring(u):find(case[2], 1, true), tostring(u))
      assert.equal(case[2], scoped.make_url(u:render_as_string(false)).password) -- renders back
    end
  end)

  it("refuses a non-string", function()
    local err = H.error_of(scoped.make_url, 42)
    assert.equal("ArgumentError", err.kind)
  end)
end)
