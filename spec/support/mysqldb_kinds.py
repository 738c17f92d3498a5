#!/usr/bin/python3
"""The other half of spec/error_kinds_spec.lua: runs the spec's cases
through Python's MySQLdb (mysqlclient, Debian's python3-mysqldb) and prints
one line per case, "name<TAB>code<TAB>ExceptionClass" (code and class "-"
when no error was raised). The cases come as JSON on stdin, written by the
spec; each one is run the same way there through scoped:

  setup       statements run first on a root connection
  connect     how the case's own connection connects: host, port,
              unix_socket, user, password, database, read_timeout,
              connect_timeout (5 when not given), ssl_ca, ssl_cert, ssl_key
  env         environment variables set while the case runs (Connector/C
              reads MARIADB_PLUGIN_DIR when it loads a plugin)
  pre         statements run on that connection before the test
  background  one SQL text run meanwhile by the mariadb client (lock holders)
  wait        a COUNT(*) query on the root connection: go on once it is > 0
  kill_self   the root connection KILLs the case's connection first
  sql         the statement expected to fail
  signal      instead: SIGNAL each MYSQL_ERRNO in these [from, to] ranges

Environment: SCOPED_TEST_SOCKET (the root connections), MARIADB_CLIENT.
"""
import json
import os
import subprocess
import sys
import time

import MySQLdb

SOCKET = os.environ["SCOPED_TEST_SOCKET"]
CLIENT = os.environ.get("MARIADB_CLIENT", "mariadb")


def root():
    return MySQLdb.connect(unix_socket=SOCKET, user="root", db="scoped_test")


def connect(spec):
    kw = {"user": spec.get("user", "root"), "connect_timeout": spec.get("connect_timeout", 5)}
    ssl = {k[4:]: spec[k] for k in ("ssl_ca", "ssl_cert", "ssl_key") if spec.get(k)}
    if ssl:
        kw["ssl"] = ssl
    if spec.get("unix_socket"):
        kw["unix_socket"] = spec["unix_socket"]
    else:
        kw["host"] = spec["host"]
        kw["port"] = spec["port"]
    if spec.get("password") is not None:
        kw["passwd"] = spec["password"]
    if spec.get("database"):
        kw["db"] = spec["database"]
    if spec.get("read_timeout"):
        kw["read_timeout"] = spec["read_timeout"]
    return MySQLdb.connect(**kw)


def wait_for(r, query, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur = r.cursor()
        cur.execute(query)
        if cur.fetchone()[0] > 0:
            return
        # information_schema.INNODB_TRX is a cache InnoDB refreshes only
        # when nobody read it for 0.1 s: polling faster would starve it
        time.sleep(0.2)
    raise RuntimeError("timed out waiting for: " + query)


def run(case, r):
    for sql in case.get("setup", []):
        r.cursor().execute(sql)
    r.commit()
    bg = None
    conn = None
    saved = {k: os.environ.get(k) for k in case.get("env", {})}
    os.environ.update(case.get("env", {}))
    try:
        conn = connect(case["connect"])
        cur = conn.cursor()
        for sql in case.get("pre", []):
            cur.execute(sql)
        if case.get("background"):
            bg = subprocess.Popen([CLIENT, "--no-defaults", "-uroot", "-S", SOCKET, "scoped_test",
                                   "-e", case["background"]],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(r, case["wait"])
        if case.get("kill_self"):
            cur.execute("SELECT CONNECTION_ID()")
            (tid,) = cur.fetchone()
            r.cursor().execute("KILL %d" % tid)
            time.sleep(0.3)
        cur.execute(case["sql"])
        return None
    except MySQLdb.Error as e:
        return e
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if conn is not None:
            try:
                conn.close()
            except MySQLdb.Error:
                pass
        if bg is not None:
            bg.wait(60)


def main():
    cases = json.load(sys.stdin)
    r = root()
    out = sys.stdout
    for case in cases:
        if case.get("signal"):
            cur = r.cursor()
            for lo, hi in case["signal"]:
                for code in range(lo, hi + 1):
                    try:
                        cur.execute("SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = %d" % code)
                        out.write("signal %d\t-\t-\n" % code)
                    except MySQLdb.Error as e:
                        out.write("signal %d\t%s\t%s\n" % (code, e.args[0], type(e).__name__))
            continue
        e = run(case, r)
        if e is None:
            out.write("%s\t-\t-\n" % case["name"])
        else:
            out.write("%s\t%s\t%s\n" % (case["name"], e.args[0], type(e).__name__))
        out.flush()


main()
