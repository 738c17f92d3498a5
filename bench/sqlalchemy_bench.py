"""SQLAlchemy 1.4 + mysqlclient (Debian's python3-sqlalchemy, python3-mysqldb)
doing the benchmark workloads: the reference scoped copies.

    /usr/bin/python3 bench/sqlalchemy_bench.py SOCKET WORKLOAD N
    /usr/bin/python3 bench/sqlalchemy_bench.py SOCKET WORKLOAD serve

prints "RESULT <figure>" and maybe "EXTRA <name> <value>" lines, or serves
bench/interleave.py (w2, w2s, w3, w4one, w4batch), as bench/raw.c; see
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

sock, workload = sys.argv[1], sys.argv[2]
serving = sys.argv[3] == "serve"
n = 0 if serving else int(sys.argv[3])
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


# w2, w2s, w3, w4one, w4batch: a setup returning slice(k) -> ops and an
# optional untimed after(), as in bench/scoped_bench.lua
def w2():
    conn = engine().connect()

    def slice_(k):
        for _ in range(k):
            conn.execute(text("SELECT 1")).all()
        return k
    return slice_, None


def make_session(**kw):
    return scoped_session(sessionmaker(bind=engine(**kw), future=True))


def request(Session):
    Session()
    Session.execute(text("SELECT 1")).all()
    Session.commit()
    Session.remove()


def w2s():
    Session = make_session()

    def slice_(k):
        for _ in range(k):
            request(Session)
        return k
    return slice_, None


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

    def slice_(k):
        return sum(w3_once(conn) for _ in range(k))
    return slice_, None


def truncate(conn):
    conn.execute(text("TRUNCATE TABLE bench_ins"))
    conn.commit()


def w4one():
    """one transaction per slice"""
    conn = engine().connect()
    truncate(conn)

    def slice_(k):
        for i in range(1, k + 1):
            conn.execute(text("INSERT INTO bench_ins (a, b) VALUES (:a, :b)"),
                         {"a": i, "b": "name-%d" % i})
        conn.commit()
        return k
    return slice_, lambda: truncate(conn)


def w4batch():
    """executemany: mysqlclient rewrites it into multi-row INSERTs"""
    conn = engine().connect()
    truncate(conn)

    def slice_(k):
        rows = [{"a": i, "b": "name-%d" % i} for i in range(1, k + 1)]
        conn.execute(text("INSERT INTO bench_ins (a, b) VALUES (:a, :b)"), rows)
        conn.commit()
        return k
    return slice_, lambda: truncate(conn)


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


SLICED = {f.__name__: f for f in (w2, w2s, w3, w4one, w4batch)}
PER_OP_US = ("w2", "w2s")
W = {f.__name__: f for f in (w1, w2s_count, lookup, w5thr)}


def timed(slice_, k):
    t0 = now()
    ops = slice_(k)
    return now() - t0, ops


def main():
    if workload in SLICED:
        slice_, after = SLICED[workload]()
        if serving:
            print("READY", flush=True)
            for line in sys.stdin:
                parts = line.split()
                k = int(parts[0]) if parts and parts[0].isdigit() else 0
                if k <= 0:
                    break
                dt, ops = timed(slice_, k)
                if after:
                    after()
                print("SLICE %.9f %d" % (dt, ops), flush=True)
            return
        if workload == "w3":
            timed(slice_, 1)
        elif workload in PER_OP_US:
            timed(slice_, n // 10 + 100)
        dt, ops = timed(slice_, n)
        if after:
            after()
        if workload in PER_OP_US:
            result(dt * 1e6 / ops)
        else:
            result(ops / dt, "%.0f")
        return
    if workload not in W or serving:
        sys.stderr.write("sqlalchemy_bench.py: unknown workload %s (or no serve mode)\n" % workload)
        sys.exit(2)
    W[workload]()


main()
