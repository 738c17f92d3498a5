/* The floor: the benchmark workloads written straight against libmariadb
 * (MariaDB Connector/C's libmysqlclient API), the library scoped, LuaSQL and
 * mysqlclient all sit on.
 *
 *   raw SOCKET WORKLOAD N
 *   raw SOCKET WORKLOAD serve
 *
 * The first form prints "RESULT <figure>" (and maybe "EXTRA <name> <value>"
 * lines); the second serves bench/interleave.py (protocol there: READY, then
 * one "SLICE <seconds> <ops>" per "<n>" line read). Workloads:
 *   w2        SELECT 1 + store + fetch, N times on one connection: us/statement
 *   w2s       w2 plus COMMIT, the seed request's two statements: us/request
 *   w2s_count statements the server counts per w2s request (global deltas)
 *   w3        SELECT the 100,000 x 6 rows, store, convert INT/DOUBLE/BIGINT
 *             cells to numbers and touch every other cell: rows/s
 *   w4one     N single-row INSERTs, value escaped, one transaction: rows/s
 *   w4batch   one multi-row INSERT of N rows built with escaping: rows/s
 *
 * The connection is opened as scoped opens its pooled ones: utf8mb4,
 * CLIENT_MULTI_RESULTS | CLIENT_FOUND_ROWS, autocommit off. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <mysql.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(MYSQL *m, const char *what)
{
    fprintf(stderr, "raw: %s: %s\n", what, m ? mysql_error(m) : "?");
    exit(1);
}

static MYSQL *open_db(const char *sock)
{
    MYSQL *m = mysql_init(NULL);
    if (m == NULL)
        die(NULL, "mysql_init");
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (!mysql_real_connect(m, NULL, "root", NULL, "scoped_test", 0, sock,
                            CLIENT_MULTI_RESULTS | CLIENT_FOUND_ROWS))
        die(m, "connect");
    if (mysql_autocommit(m, 0) != 0)
        die(m, "autocommit");
    return m;
}

static void query(MYSQL *m, const char *sql, size_t len)
{
    if (mysql_real_query(m, sql, (unsigned long)len) != 0)
        die(m, sql);
}
#define QUERY(m, lit) query((m), (lit), sizeof(lit) - 1)

static volatile long sink;

static void select1(MYSQL *m)
{
    QUERY(m, "SELECT 1");
    MYSQL_RES *res = mysql_store_result(m);
    if (res == NULL)
        die(m, "store");
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL)
        sink += row[0][0];
    mysql_free_result(res);
}

static void w2s_request(MYSQL *m)
{
    select1(m);
    QUERY(m, "COMMIT");
}

/* global status counters, read on a second connection */
typedef struct { long long questions, select, commit, rollback; } counters;

static counters read_counters(MYSQL *mon)
{
    counters c = {0, 0, 0, 0};
    QUERY(mon, "SHOW GLOBAL STATUS WHERE Variable_name IN "
               "('Questions','Com_select','Com_commit','Com_rollback')");
    MYSQL_RES *res = mysql_store_result(mon);
    if (res == NULL)
        die(mon, "status");
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        long long v = atoll(row[1]);
        if (strcasecmp(row[0], "Questions") == 0) c.questions = v;
        else if (strcasecmp(row[0], "Com_select") == 0) c.select = v;
        else if (strcasecmp(row[0], "Com_commit") == 0) c.commit = v;
        else if (strcasecmp(row[0], "Com_rollback") == 0) c.rollback = v;
    }
    mysql_free_result(res);
    return c;
}

static long w3_fetch(MYSQL *m)
{
    QUERY(m, "SELECT id, name, score, big, created, note FROM bench_rows");
    MYSQL_RES *res = mysql_store_result(m);
    if (res == NULL)
        die(m, "store");
    long n = 0;
    double dsum = 0;
    long long isum = 0;
    size_t bytes = 0;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        unsigned long *len = mysql_fetch_lengths(res);
        isum += strtol(row[0], NULL, 10);
        bytes += len[1];
        dsum += strtod(row[2], NULL);
        isum += strtoll(row[3], NULL, 10);
        bytes += len[4];
        bytes += row[5] ? len[5] : 1;
        n++;
    }
    mysql_free_result(res);
    sink += (long)isum + (long)dsum + (long)bytes;
    QUERY(m, "COMMIT");
    return n;
}

static char *escape_row(MYSQL *m, char *p, int i)
{
    char val[32], esc[65];
    int vl = snprintf(val, sizeof val, "name-%d", i);
    mysql_real_escape_string(m, esc, val, (unsigned long)vl);
    return p + sprintf(p, "(%d,'%s')", i, esc);
}

static void truncate_ins(MYSQL *m)
{
    QUERY(m, "TRUNCATE TABLE bench_ins");
    QUERY(m, "COMMIT");
}

/* ---- serve mode (bench/interleave.py) -------------------------------------
 * One slice: n iterations of the workload, timed; ops is what the figure
 * counts (statements, requests, rows). A W4 slice is whole transactions,
 * committed and then (untimed) truncated: the systems share bench_ins and
 * take turns, so none may leave a transaction open on it between slices (the
 * next one's TRUNCATE would wait for it forever). */
static double slice(MYSQL *m, const char *w, long n, long *ops)
{
    double t0 = now();
    *ops = n;
    if (strcmp(w, "w2") == 0) {
        for (long i = 0; i < n; i++)
            select1(m);
    } else if (strcmp(w, "w2s") == 0) {
        for (long i = 0; i < n; i++)
            w2s_request(m);
    } else if (strcmp(w, "w3") == 0) {
        long rows = 0;
        for (long i = 0; i < n; i++)
            rows += w3_fetch(m);
        *ops = rows;
    } else if (strcmp(w, "w4one") == 0) {
        char sql[256];
        for (long i = 1; i <= n; i++) {
            char *p = sql + sprintf(sql, "INSERT INTO bench_ins (a, b) VALUES ");
            p = escape_row(m, p, (int)i);
            query(m, sql, (size_t)(p - sql));
        }
        QUERY(m, "COMMIT");
    } else if (strcmp(w, "w4batch") == 0) {
        char *sql = malloc((size_t)n * 100 + 100);
        if (sql == NULL)
            die(NULL, "malloc");
        char *p = sql + sprintf(sql, "INSERT INTO bench_ins (a, b) VALUES ");
        for (long i = 1; i <= n; i++) {
            if (i > 1)
                *p++ = ',';
            p = escape_row(m, p, (int)i);
        }
        query(m, sql, (size_t)(p - sql));
        QUERY(m, "COMMIT");
        free(sql);
    } else {
        fprintf(stderr, "raw: workload %s has no serve mode\n", w);
        exit(2);
    }
    double dt = now() - t0;
    /* untimed: W4 starts every transaction on an empty table */
    if (strcmp(w, "w4one") == 0 || strcmp(w, "w4batch") == 0)
        truncate_ins(m);
    return dt;
}

static int serve(MYSQL *m, const char *w)
{
    char line[64];
    if (strcmp(w, "w4one") == 0 || strcmp(w, "w4batch") == 0)
        truncate_ins(m);
    printf("READY\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        long n = 0;
        if (sscanf(line, "%ld", &n) != 1 || n <= 0)
            break;
        long ops;
        double dt = slice(m, w, n, &ops);
        printf("SLICE %.9f %ld\n", dt, ops);
        fflush(stdout);
    }
    mysql_close(m);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: raw SOCKET WORKLOAD N|serve\n");
        return 2;
    }
    const char *sock = argv[1], *w = argv[2];
    if (strcmp(argv[3], "serve") == 0)
        return serve(open_db(sock), w);
    long n = atol(argv[3]);
    MYSQL *m = open_db(sock);
    /* BENCH_NOWARM (bench/profile.sh): no warm-up, so that runs of two sizes
     * differ by exactly the timed iterations */
    int nowarm = getenv("BENCH_NOWARM") != NULL;
    long ops;

    if (strcmp(w, "w2s_count") == 0) {
        MYSQL *mon = open_db(sock);
        w2s_request(m);
        counters a = read_counters(mon), b = read_counters(mon);
        for (long i = 0; i < n; i++)
            w2s_request(m);
        counters c = read_counters(mon);
        double q = (double)((c.questions - b.questions) - (b.questions - a.questions)) / (double)n;
        printf("RESULT %.2f\n", q);
        printf("EXTRA select %.2f\nEXTRA commit %.2f\nEXTRA rollback %.2f\n",
               (double)(c.select - b.select) / (double)n, (double)(c.commit - b.commit) / (double)n,
               (double)(c.rollback - b.rollback) / (double)n);
        mysql_close(mon);
    } else if (strcmp(w, "w2") == 0 || strcmp(w, "w2s") == 0) {
        if (!nowarm)
            slice(m, w, n / 10 + 100, &ops);
        double dt = slice(m, w, n, &ops);
        printf("RESULT %.3f\n", dt * 1e6 / (double)ops);
    } else if (strcmp(w, "w3") == 0 || strcmp(w, "w4one") == 0 || strcmp(w, "w4batch") == 0) {
        if (strcmp(w, "w3") == 0 && !nowarm)
            slice(m, w, 1, &ops); /* warm: the rows in the buffer pool, the allocator grown */
        if (strcmp(w, "w3") != 0)
            truncate_ins(m);
        double dt = slice(m, w, n, &ops);
        printf("RESULT %.0f\n", (double)ops / dt);
    } else {
        fprintf(stderr, "raw: unknown workload %s\n", w);
        return 2;
    }
    mysql_close(m);
    return 0;
}
