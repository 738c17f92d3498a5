"""SQLAlchemy 1.4 + mysqlclient (Debian's python3-sqlalchemy, python3-mysqldb)
doing the benchmark workloads: the reference scoped copies.

    /usr/bin/python3 bench/sqlalchemy_bench.py SOCKET WORKLOAD N

prints "RESULT <figure>" and maybe "EXTRA <name> <value>" lines; see
bench/README.md. 2.0-style engine and sessions (future=True), default pool
(QueuePool, reset on return = rollback) unless a workload says otherwise.
"""
import sys
import threading
import time

import MySQLdb
from sqlalchemy import create_engine, text
from sqlalchemy.orm import scoped_session, sessionmaker

now = time.perf_counter

sock, workload, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
URL = "mysql+mysqldb://root@/scoped_test?unix_socket=%s&charset=utf8mb4" % sock


def result(v, fmt="%.3f"):
    print(("RESULT " + fmt) % v)


def extra(k, v):
    print("EXTRA %s %.3f" % (k, v))


def engine(**kw):
    return create_engine(URL, future=True, **kw)


def w1():
    e = engine()
    for _ in range(n // 10 + 100):
        e.connect().close()
    t0 = now()
    for _ in range(n):
        c = e.connect()
        c.close()
    result((now() - t0) * 1e6 / n)


def w2():
    conn = engine().connect()
    for _ in range(n // 10 + 100):
        conn.execute(text("SELECT 1")).all()
    t0 = now()
    for _ in range(n):
        conn.execute(text("SELECT 1")).all()
    result((now() - t0) * 1e6 / n)


def make_session(**kw):
    return scoped_session(sessionmaker(bind=engine(**kw), future=True))


def request(Session):
    Session()
    Session.execute(text("SELECT 1")).all()
    Session.commit()
    Session.remove()


def w2s():
    Session = make_session()
    for _ in range(n // 10 + 100):
        request(Session)
    t0 = now()
    for _ in range(n):
        request(Session)
    result((now() - t0) * 1e6 / n)


def counters(mon):
    cur = mon.cursor()
    cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN "
                "('Questions','Com_select','Com_commit','Com_rollback')")
    c = {k.lower(): int(v) for k, v in cur.fetchall()}
    cur.close()
    return c


def w2s_count():
    Session = make_session()
    request(Session)
    mon = MySQLdb.connect(unix_socket=sock, user="root", db="scoped_test")
    a = counters(mon)
    b = counters(mon)
    for _ in range(n):
        request(Session)
    c = counters(mon)
    result(((c["questions"] - b["questions"]) - (b["questions"] - a["questions"])) / n, "%.2f")
    extra("select", (c["com_select"] - b["com_select"]) / n)
    extra("commit", (c["com_commit"] - b["com_commit"]) / n)
    extra("rollback", (c["com_rollback"] - b["com_rollback"]) / n)
    mon.close()


W3_SQL = "SELECT id, name, score, big, created, note FROM bench_rows"


def w3_once(conn):
    rows = conn.execute(text(W3_SQL)).all()
    isum, dsum, nbytes = 0, 0.0, 0
    for r in rows:
        id_, name, score, big, created, note = r[0], r[1], r[2], r[3], r[4], r[5]
        isum += id_ + big
        dsum += score
        nbytes += len(name) + created.second
        nbytes += len(note) if note is not None else 1
    conn.commit()
    return len(rows)


def w3():
    conn = engine().connect()
    w3_once(conn)
    rows = 0
    t0 = now()
    for _ in range(n):
        rows += w3_once(conn)
    result(rows / (now() - t0), "%.0f")


def truncate(conn):
    conn.execute(text("TRUNCATE TABLE bench_ins"))
    conn.commit()


def w4one():
    conn = engine().connect()
    truncate(conn)
    t0 = now()
    for i in range(1, n + 1):
        conn.execute(text("INSERT INTO bench_ins (a, b) VALUES (:a, :b)"),
                     {"a": i, "b": "name-%d" % i})
    conn.commit()
    result(n / (now() - t0), "%.0f")
    truncate(conn)


def w4batch():
    """executemany: mysqlclient rewrites it into multi-row INSERTs"""
    conn = engine().connect()
    truncate(conn)
    t0 = now()
    rows = [{"a": i, "b": "name-%d" % i} for i in range(1, n + 1)]
    conn.execute(text("INSERT INTO bench_ins (a, b) VALUES (:a, :b)"), rows)
    conn.commit()
    result(n / (now() - t0), "%.0f")
    truncate(conn)


def lookup():
    Session = make_session()
    s = Session()

    def best(f):
        return min(f() for _ in range(3))

    def loop_empty():
        t0 = now()
        for _ in range(n):
            pass
        return now() - t0

    def loop_lookup():
        t0 = now()
        for _ in range(n):
            Session()
        return now() - t0

    def loop_direct():
        t0 = now()
        for _ in range(n):
            s.get_bind()
        return now() - t0

    def loop_proxied():
        t0 = now()
        for _ in range(n):
            Session.get_bind()
        return now() - t0

    empty, look, direct, proxied = (best(loop_empty), best(loop_lookup),
                                    best(loop_direct), best(loop_proxied))
    result((look - empty) * 1e9 / n, "%.1f")
    extra("proxy_overhead_ns", (proxied - direct) * 1e9 / n)
    extra("direct_call_ns", (direct - empty) * 1e9 / n)


def w5thr():
    """8 threads, scoped_session (thread-local scope), pool of 4, no overflow"""
    nthreads = 8
    per = max(1, n // nthreads)
    Session = make_session(pool_size=4, max_overflow=0, pool_timeout=60)
    waits = []
    lock = threading.Lock()
    barrier = threading.Barrier(nthreads + 1)

    def worker():
        mine = []
        request(Session)  # warm
        barrier.wait()
        for _ in range(per):
            t0 = now()
            Session()
            Session.connection()
            t1 = now()
            Session.execute(text("SELECT 1")).all()
            Session.commit()
            Session.remove()
            mine.append(t1 - t0)
        with lock:
            waits.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(nthreads)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = now()
    for t in threads:
        t.join()
    dt = now() - t0
    waits.sort()
    result(len(waits) / dt, "%.0f")
    extra("p50_wait_us", waits[max(0, int(len(waits) * 0.50) - 1)] * 1e6)
    extra("p99_wait_us", waits[max(0, int(len(waits) * 0.99) - 1)] * 1e6)


W = {f.__name__: f for f in (w1, w2, w2s, w2s_count, w3, w4one, w4batch, lookup, w5thr)}

if workload not in W:
    sys.stderr.write("sqlalchemy_bench.py: unknown workload %s\n" % workload)
    sys.exit(2)
W[workload]()
