rockspec_format = "3.0"
package = "scoped"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- `luarocks make` builds from the checkout itself
}
description = {
  summary = "SQLAlchemy's create_engine, sessionmaker and scoped_session for Lua, over libmysqlclient",
  detailed = [[
A connection pool in C (pool_size, max_overflow, pool_timeout, pool_recycle,
pre-ping), sessions with transactions, and one session per coroutine, for
Lua 5.4 and LuaJIT / OpenResty against MySQL or MariaDB.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
}
external_dependencies = {
  -- MariaDB Connector/C (Debian: libmariadb-dev) puts mysql.h under
  -- include/mariadb; override with MYSQL_INCDIR=... MYSQL_LIBDIR=...
  MYSQL = {
    header = "mariadb/mysql.h",
    library = "mariadb",
  },
}
build = {
  type = "builtin",
  modules = {
    ["scoped"] = "lua/scoped/init.lua",
    ["scoped.exc"] = "lua/scoped/exc.lua",
    ["scoped.url"] = "lua/scoped/url.lua",
    ["scoped.result"] = "lua/scoped/result.lua",
    ["scoped.engine"] = "lua/scoped/engine.lua",
    ["scoped.event"] = "lua/scoped/event.lua",
    ["scoped.session"] = "lua/scoped/session.lua",
    ["scoped.scoping"] = "lua/scoped/scoping.lua",
    ["scoped.ngx"] = "lua/scoped/ngx.lua",
    ["scoped.nonblocking"] = "lua/scoped/nonblocking.lua",
    ["scoped.retry"] = "lua/scoped/retry.lua",
    ["scoped.metrics"] = "lua/scoped/metrics.lua",
    ["scoped.core"] = {
      sources = {
        "csrc/core/binds.c", "csrc/core/buf.c", "csrc/core/clock.c", "csrc/core/conn.c",
        "csrc/core/connector.c", "csrc/core/error.c", "csrc/core/hosts.c", "csrc/core/pid.c",
        "csrc/core/pool.c", "csrc/core/url.c",
        "csrc/lua/lbinds.c", "csrc/lua/lconn.c", "csrc/lua/lcore.c", "csrc/lua/lexec.c",
        "csrc/lua/llease.c", "csrc/lua/lnb.c", "csrc/lua/lpool.c", "csrc/lua/lregistry.c",
        "csrc/lua/lresult.c", "csrc/lua/lstream.c", "csrc/lua/lurl.c", "csrc/lua/lutil.c",
      },
      defines = {"_POSIX_C_SOURCE=200809L"},
      incdirs = {"csrc/core", "$(MYSQL_INCDIR)/mariadb", "$(MYSQL_INCDIR)"},
      libdirs = {"$(MYSQL_LIBDIR)"},
      libraries = {"mariadb", "pthread", "m"},
    },
  },
}
