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

  describe("several hosts (issue 21)", function()
    it("parses a host list in the authority, each host with its port, IPv6 in brackets", function()
      local u = scoped.make_url("mysql://u:p@db1:3306,db2,[fd00::1]:3307/shop")
      assert.same({{host = "db1", port = 3306}, {host = "db2"}, {host = "fd00::1", port = 3307}}, u.hosts)
      assert.equal("db1", u.host) -- the first host's, for whatever knows of one host
      assert.equal(3306, u.port)
      assert.equal("shop", u.database)
      assert.equal("p", u.password)
      assert.equal("mysql://u:***@db1:3306,db2,[fd00::1]:3307/shop", tostring(u))
    end)

    it("no longer refuses h1:3306,h2:3306 nor passes h1,h2 through as one host", function()
      assert.same({{host = "h1", port = 3306}, {host = "h2", port = 3306}},
        scoped.make_url("mysql://h1:3306,h2:3306/d").hosts)
      local u = scoped.make_url("mysql://h1,h2/d")
      assert.same({{host = "h1"}, {host = "h2"}}, u.hosts)
      assert.equal("h1", u.host)
    end)

    it("parses repeated ?host= (the psycopg2 form) into the same list", function()
      local u = scoped.make_url("mysql://u:p@/shop?host=db1:3306&host=db2&host=fd00::1&host=[::1]:3307"
        .. "&charset=latin1")
      assert.same({{host = "db1", port = 3306}, {host = "db2"}, {host = "fd00::1"},
        {host = "::1", port = 3307}}, u.hosts)
      assert.same({charset = "latin1"}, u.query) -- host is no query parameter
      assert.equal("mysql://u:***@db1:3306,db2,[fd00::1],[::1]:3307/shop?charset=latin1", tostring(u))
      -- one ?host= is a URL with one host
      u = scoped.make_url("mysql://u@/shop?host=db1:3307")
      assert.is_nil(u.hosts)
      assert.equal("db1", u.host)
      assert.equal(3307, u.port)
    end)

    it("round-trips the host list through render_as_string and make_url", function()
      for _, s in ipairs({"mysql://u:p%40w@a:1,b,[::1]:3/d?ha_mode=round_robin",
          "mariadb+x://a,b", "mysql://[fd00::1],[fd00::2]:5/d?deny_timeout=0"}) do
        local u = scoped.make_url(s)
        assert.equal(s, u:render_as_string(false))
        local v = scoped.make_url(u:render_as_string(false))
        assert.same(u.hosts, v.hosts)
        assert.equal(u.password, v.password)
      end
    end)

    it("set() changes the host list, checked as make_url checks it", function()
      local u = scoped.make_url("mysql://u:pw@a:1,b/d")
      local v = u:set({hosts = {"x:5", {host = "y", port = 6}, "[::1]"}})
      assert.same({{host = "x", port = 5}, {host = "y", port = 6}, {host = "::1"}}, v.hosts)
      assert.equal("x", v.host)
      assert.equal("mysql://u:pw@x:5,y:6,[::1]/d", v:render_as_string(false))
      assert.same({{host = "a", port = 1}, {host = "b"}}, u.hosts) -- u unchanged
      local w = u:set({hosts = {"z:7"}}) -- one host: an ordinary URL
      assert.is_nil(w.hosts)
      assert.equal("mysql://u:***@z:7/d", tostring(w))
      assert.same({{host = "a", port = 1}, {host = "b"}}, u:set({database = "e"}).hosts)
      for _, case in ipairs({
        {{host = "z"}, "set hosts instead"},
        {{hosts = {"a", "b"}, host = "c"}, "not both"},
        {{hosts = {}}, "at least one host"},
        {{hosts = {"a", "b:0"}}, "port is not a number"},
        {{hosts = {"a,b", "c"}}, "cannot contain ','"},
        {{hosts = {"a", 5}}, "must be a string or a table"},
        {{query = {unix_socket = "/s"}}, "unix_socket cannot be given with several hosts"},
      }) do
        local err = H.error_of(u.set, u, case[1])
        assert.equal("ArgumentError", err.kind)
        assert.truthy(err.message:find(case[2], 1, true), err.message)
      end
    end)

    it("validates ha_mode, target_session_attrs, galera and deny_timeout", function()
      local u = scoped.make_url("mysql://a,b/d?ha_mode=round_robin&target_session_attrs=prefer-read-only"
        .. "&galera=true&deny_timeout=5")
      assert.same({ha_mode = "round_robin", target_session_attrs = "prefer-read-only", galera = "true",
        deny_timeout = "5"}, u.query)
      for _, v in ipairs({"any", "read-write", "read-only", "prefer-read-only"}) do
        assert.equal(v, scoped.make_url("mysql://h/d?target_session_attrs=" .. v).query.target_session_attrs)
      end
    end)

    it("takes the new options as create_engine connect_args too, checked alike", function()
      local e = scoped.create_engine("mysql://a,b/d", {connect_args = {ha_mode = "round_robin",
        galera = false, deny_timeout = 2}})
      assert.same({ha_mode = "round_robin", galera = "false", deny_timeout = "2"}, e.url.query)
      local err = H.error_of(scoped.create_engine, "mysql://a,b/d", {connect_args = {ha_mode = "random"}})
      assert.equal("ArgumentError", err.kind)
      err = H.error_of(scoped.create_engine, "mysql://a,b/d", {connect_args = {unix_socket = "/s"}})
      assert.equal("ArgumentError", err.kind)
      assert.truthy(err.message:find("unix_socket cannot be given with several hosts", 1, true))
    end)

    local bad_hosts = {
      {"mysql://u:p@h/shop?host=db1", "either in the authority or as ?host=, not both"},
      {"mysql://u:p@:3306/shop?host=db1", "not both"},
      {"mysql://h1,h2/d?unix_socket=/s", "unix_socket cannot be given with several hosts"},
      {"mysql://u@/d?host=a&host=b&unix_socket=/s", "unix_socket cannot be given with several hosts"},
      {"mysql://h1,,h2/d", "empty host in the host list"},
      {"mysql://,h2/d", "empty host in the host list"},
      {"mysql://h1,/d", "empty host in the host list"},
      {"mysql://h1,:3306/d", "empty host in the host list"},
      {"mysql://h/d?host=", "empty host in the host list"},
      {"mysql://h1,h2:99999/d", "the port is not a number from 1 to 65535"},
      {"mysql://h1,h2:0/d", "the port is not a number from 1 to 65535"},
      {"mysql://h1,h2:/d", "empty port"},
      {"mysql://h1,[::1/d", "unterminated '['"},
      {"mysql://h1,[::1]x/d", "unexpected text after the host"},
      {"mysql://u@/d?host=h:x", "the port is not a number"},
      {"mysql://h1%2Ch2/d", "a host name cannot contain ','"},
      {"mysql://h/d?ha_mode=random", "ha_mode must be sequential or round_robin"},
      {"mysql://h/d?target_session_attrs=primary", "target_session_attrs must be one of any"},
      {"mysql://h/d?galera=maybe", "galera must be true or false"},
      {"mysql://h/d?deny_timeout=-1", "deny_timeout must be a whole number of seconds"},
      {"mysql://h/d?ha_mode=sequential&ha_mode=round_robin", "given twice"},
    }
    for _, case in ipairs(bad_hosts) do
      it("refuses " .. case[1] .. " naming what is wrong", function()
        local err = H.error_of(scoped.make_url, case[1])
        assert.equal("ArgumentError", err.kind)
        assert.truthy(err.message:find(case[2], 1, true), err.message)
      end)
    end

    it("refuses more than 64 hosts", function()
      local l = {}
      for i = 1, 65 do l[i] = "h" .. i end
      local err = H.error_of(scoped.make_url, "mysql://" .. table.concat(l, ",") .. "/d")
      assert.truthy(err.message:find("more than 64 hosts", 1, true), err.message)
      l[65] = nil
      assert.equal(64, #scoped.make_url("mysql://" .. table.concat(l, ",") .. "/d").hosts)
    end)

    it("never puts the password in a host list's error or tostring", function()
      local err = H.error_of(scoped.make_url, "mysql://root:hunter2@a,b:bad/d")
      assert.falsy(tostring(err):find("hunter2", 1, true))
      err = H.error_of(scoped.make_url, "mysql://root:hunter2@a,,b/d")
      assert.falsy(tostring(err):find("hunter2", 1, true))
      assert.falsy(tostring(scoped.make_url("mysql://root:hunter2@a,b/d")):find("hunter2", 1, true))
    end)
  end)

  it("refuses a non-string", function()
    local err = H.error_of(scoped.make_url, 42)
    assert.equal("ArgumentError", err.kind)
  end)
end)
