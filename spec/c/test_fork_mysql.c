/* fork() with real MySQL connections, in C so that it runs on every
 * runtime (Debian packages lua-posix for the 5.1 ABI only): a pool used in
 * the parent, fork, then parent and child both run queries, and the
 * parent's connection is still alive afterwards — the child dropped the
 * inherited one without a COM_QUIT on the parent's socket. Then a
 * connection the parent holds checked out across the fork: the child's
 * statements on it are refused before a byte is sent (issue 17, finding 5:
 * the child read the parent's results and the parent the child's), and the
 * parent's conversation on it goes on undisturbed.
 * Needs SCOPED_TEST_URL; prints TAP lines and a summary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conn.h"
#include "connector.h"
#include "pool.h"

static int n_tests, n_failed;

static void check(int cond, const char *what)
{
    n_tests++;
    if (!cond)
        n_failed++;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", n_tests, what);
    fflush(stdout);
}

/* SELECT CONNECTION_ID() on an entry's connection; 0 on error */
static unsigned long long connection_id(sc_pool_entry *e)
{
    sc_conn *c = e->conn;
    sc_error err;
    const char *q = "SELECT CONNECTION_ID()";
    if (sc_conn_query(c, q, strlen(q), &err) != 0)
        return 0;
    MYSQL_RES *res = sc_conn_use_result(c, &err);
    if (res == NULL)
        return 0;
    MYSQL_ROW row = mysql_fetch_row(res);
    unsigned long long id = row && row[0] ? strtoull(row[0], NULL, 10) : 0;
    mysql_free_result(res); /* reads what is left of a used result */
    return id;
}

int main(void)
{
    const char *url_s = getenv("SCOPED_TEST_URL");
    if (url_s == NULL) {
        printf("1..0 # SKIP SCOPED_TEST_URL not set\n");
        return 0;
    }
    sc_url url;
    sc_error err;
    if (sc_url_parse(url_s, strlen(url_s), &url, &err) != 0) {
        printf("not ok 1 - parse SCOPED_TEST_URL: %s\n", err.message);
        return 1;
    }
    sc_pool_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.pool_size = 2;
    cfg.max_overflow = 0;
    cfg.timeout = 5;
    cfg.recycle = -1;
    /* the module's own connector (connector.c), with the server's defaults:
     * it takes the URL over, and the pool frees it */
    sc_connector conn;
    if (sc_mysql_connector(&url, NULL, &conn) != 0) {
        printf("not ok 1 - out of memory\n");
        return 1;
    }
    sc_pool *p = sc_pool_new(&cfg, &conn);

    sc_pool_entry *e = NULL;
    int rc = sc_pool_checkout(p, &e, &err);
    check(rc == SC_POOL_OK, "parent checks out a connection");
    if (rc != SC_POOL_OK) {
        printf("# %u %s\n", err.code, err.message);
        printf("1..%d\n%d passed, %d failed\n", n_tests, n_tests - n_failed, n_failed);
        return 1;
    }
    unsigned long long parent_id = connection_id(e);
    check(parent_id != 0, "parent runs a query");
    sc_pool_checkin(p, e, 0);

    pid_t pid = fork();
    if (pid == 0) {
        sc_pool_entry *ce = NULL;
        int ok = sc_pool_checkout(p, &ce, &err) == SC_POOL_OK && ce->fresh;
        unsigned long long child_id = ok ? connection_id(ce) : 0;
        ok = ok && child_id != 0 && child_id != parent_id;
        if (ce != NULL)
            sc_pool_checkin(p, ce, 0);
        sc_pool_free(p);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "child checks out a fresh connection of its own and runs a query");

    e = NULL;
    rc = sc_pool_checkout(p, &e, &err);
    check(rc == SC_POOL_OK && !e->fresh, "parent gets its pooled connection back");
    check(rc == SC_POOL_OK && connection_id(e) == parent_id,
          "the parent's connection survived the child (no COM_QUIT on its socket)");
    if (rc == SC_POOL_OK)
        sc_pool_checkin(p, e, 0);

    /* a connection checked out in the parent, in the middle of a
     * transaction, when the child is forked */
    e = NULL;
    rc = sc_pool_checkout(p, &e, &err);
    check(rc == SC_POOL_OK, "parent checks out a connection and keeps it across fork");
    if (rc == SC_POOL_OK) {
        sc_conn *c = e->conn;
        sc_error qerr;
        const char *begin = "START TRANSACTION";
        int in_tx = sc_conn_query(c, begin, strlen(begin), &qerr) == 0;
        MYSQL_RES *res = NULL;
        unsigned long long held_id = connection_id(e);
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            /* the child: every call that would talk refuses, nothing is sent */
            int ok = 1;
            sc_error cerr;
            const char *q = "SELECT 'from the child'";
            ok &= sc_conn_query(c, q, strlen(q), &cerr) == -1 && cerr.code == 0 &&
                  strstr(cerr.message, "fork") != NULL;
            ok &= sc_conn_end(c, 1, &cerr) == -1;
            ok &= sc_conn_set_autocommit(c, 1, &cerr) == -1;
            ok &= sc_conn_ping(c) != 0 && !c->broken;
            ok &= sc_conn_reset(c, SC_RESET_ROLLBACK, &cerr) == -1;
            sc_pool_checkin(p, e, 0); /* discarded: no COM_QUIT either */
            _exit(ok ? 0 : 1);
        }
        status = 0;
        waitpid(pid, &status, 0);
        check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the child's query, COMMIT, autocommit, ping and reset on the parent's connection "
              "are refused (nothing sent)");
        check(held_id != 0 && connection_id(e) == held_id,
              "the parent's connection answers its own next query with its own result");
        const char *tx = "SELECT @@in_transaction";
        int still = 0;
        if (sc_conn_query(c, tx, strlen(tx), &qerr) == 0 && (res = sc_conn_use_result(c, &qerr)) != NULL) {
            MYSQL_ROW row = mysql_fetch_row(res);
            still = row && row[0] && strcmp(row[0], "1") == 0;
            mysql_free_result(res);
        }
        check(in_tx && still, "the parent's transaction is still open after the child is gone");
        sc_error eerr;
        sc_conn_end(c, 0, &eerr);
        sc_pool_checkin(p, e, 0);
    }
    sc_pool_free(p);
    printf("1..%d\n%d passed, %d failed\n", n_tests, n_tests - n_failed, n_failed);
    return n_failed ? 1 : 0;
}
