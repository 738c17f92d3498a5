-- The mutants `make mutants` runs (spec/mutants/run.sh; CONTRIBUTING.md).
--
-- Each is one plausible bug in one rule, and the specs must catch it. An
-- entry:
--   id      unique: letters, digits, _ . -
--   file    the file it changes, from the repository's root
--   before  the exact text it replaces: it must occur in the file exactly
--           once (else the mutant is STALE and the run fails: give enough
--           of the surrounding text to make it unique)
--   after   the text put in its place (it must still compile)
--   why     the rule it breaks, and what goes wrong for a user
--   specs   optional: the spec files most likely to kill it, run first
--   equivalent  optional: why no spec can tell it from the original; the
--           mutant is then reported, not run, and not counted
-- Adding a rule? Add its mutant here, run `make mutants MUTANTS=<id>`, and
-- write the spec that kills it if it survives.
return {
  -- ---- escaping (csrc/core/binds.c, sc_render_string) ----------------------
  {
    id = "esc-quote-double",
    file = "csrc/core/binds.c",
    before = [[if (s[i] == '\'')]],
    after = [[if (s[i] == '\0')]],
    why = "a quote in a bound string is no longer doubled: the value ends the literal (SQL injection), in both modes",
    specs = {"spec/injection_spec.lua", "spec/binds_spec.lua"},
  },
  {
    id = "esc-backslash-raw",
    file = "csrc/core/binds.c",
    before = [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, B_H, 0, 0, 0, /* 0x50-0x5F: \ */]],
    after = [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x50-0x5F: \ */]],
    why = "a backslash is written as is: with backslash escapes on, '\\' escapes the closing quote (injection); its meaning depends on NO_BACKSLASH_ESCAPES",
    specs = {"spec/injection_spec.lua", "spec/binds_spec.lua"},
  },
  {
    id = "esc-star-slash",
    file = "csrc/core/binds.c",
    before = [[else if (k == B_H || (i + 1 < len && s[i + 1] == '/'))]],
    after = [[else if (k == B_H)]],
    why = "a value holding the end of a C comment is written as text: inside an executable comment it would end the comment",
    specs = {"spec/injection_spec.lua", "spec/binds_spec.lua"},
  },
  {
    id = "esc-nobackslash-lexer",
    file = "csrc/core/binds.c",
    before = [[if (!m->no_backslash)]],
    after = [[if (!m->ansi_quotes)]],
    why = "the lexer asks the wrong sql_mode flag: under NO_BACKSLASH_ESCAPES it still reads '\\' as an escape: 'a\\' does not end the string, and placeholders after it are taken for text (or text for placeholders)",
    specs = {"spec/injection_spec.lua", "spec/lexer_diff_spec.lua", "spec/binds_spec.lua"},
  },
  -- ---- the bind lexer (csrc/core/binds.c, sc_binds_parse) -------------------
  {
    id = "lex-string-not-skipped",
    file = "csrc/core/binds.c",
    before = [[        if (c == '\'') {
            i = skip_string(sql, len, i, c, m, &flags);]],
    after = [[        if (c == '\x01') {
            i = skip_string(sql, len, i, c, m, &flags);]],
    why = "a ? or :name inside a '...' string is taken for a placeholder",
    specs = {"spec/binds_spec.lua", "spec/injection_spec.lua"},
  },
  {
    id = "lex-double-colon",
    file = "csrc/core/binds.c",
    before = [[push_tok(plan, SC_TOK_SQL, seg, i + 1 - seg)]],
    after = [[push_tok(plan, SC_TOK_SQL, seg, i + 2 - seg)]],
    why = "'::' (an escaped colon) is sent as two colons",
    specs = {"spec/binds_spec.lua"},
  },
  {
    id = "lex-colon-after-word",
    file = "csrc/core/binds.c",
    before = [[(i == 0 || (!sc_ident_char((unsigned char)sql[i - 1]) && sql[i - 1] != ':'))]],
    after = [[(i == 0 || sql[i - 1] != ':')]],
    why = "a colon right after a word (x:y, a time in code) starts a named placeholder",
    specs = {"spec/binds_spec.lua", "spec/injection_spec.lua"},
  },
  {
    id = "lex-hash-comment",
    file = "csrc/core/binds.c",
    before = [[i = skip_line(sql, len, i + 1);]],
    after = [[i = i + 1;]],
    why = "a # comment is lexed as code: a ? in it becomes a placeholder",
    specs = {"spec/binds_spec.lua", "spec/injection_spec.lua"},
  },
  {
    id = "lex-dash-space",
    file = "csrc/core/binds.c",
    before = [[return c <= ' ' || c == 0x7F || (m->latin1 && c == 0xA0);]],
    after = [[return c < ' ' || c == 0x7F || (m->latin1 && c == 0xA0);]],
    why = "'-- ' (the usual comment) is not a comment to the lexer: a ? in it becomes a placeholder",
    specs = {"spec/binds_spec.lua", "spec/injection_spec.lua"},
  },
  {
    id = "lex-version-comment",
    file = "csrc/core/binds.c",
    before = [[if (version <= m->server_version && (version < 50700 || version > 99999 || maria)) {]],
    after = [[if (version >= m->server_version && (version < 50700 || version > 99999 || maria)) {]],
    why = "a versioned comment /*!NNNNN ... */ the server runs is skipped as a comment (and the other way): its placeholders go unbound or a bound value lands in dead text",
    specs = {"spec/binds_spec.lua", "spec/injection_spec.lua"},
  },
  -- ---- IN lists (csrc/lua/lbinds.c) -------------------------------------------
  {
    id = "in-list-close",
    file = "csrc/lua/lbinds.c",
    before = [[sc_buf_add(b, i < n ? "," : ")", 1)]],
    after = [[sc_buf_add(b, i <= n ? "," : ")", 1)]],
    why = "an IN list never closes its parenthesis",
    specs = {"spec/binds_spec.lua"},
  },
  {
    id = "in-list-empty",
    file = "csrc/lua/lbinds.c",
    before = [[rc = sc_buf_add(b, "(SELECT 1 FROM DUAL WHERE 1=0)", 30);]],
    after = [[rc = sc_buf_add(b, "(NULL)", 6);]],
    why = "an empty IN list as (NULL): x NOT IN :ids is then never true (SQLAlchemy's empty IN: NOT IN is true)",
    specs = {"spec/binds_spec.lua"},
  },
  {
    id = "in-list-nested",
    file = "csrc/lua/lbinds.c",
    before = [[        if (in_list)
            bind_error(L, name, namelen, pos, "a list inside a list cannot be bound");]],
    after = [[        if (in_list && 0)
            bind_error(L, name, namelen, pos, "a list inside a list cannot be bound");]],
    why = "a list inside a list is rendered as a row constructor instead of refused",
    specs = {"spec/binds_spec.lua", "spec/args_spec.lua"},
  },
  -- ---- the pool (csrc/core/pool.c) ---------------------------------------------
  {
    id = "pool-lifo-ignored",
    file = "csrc/core/pool.c",
    before = [[sc_pool_entry *e = p->cfg.use_lifo ? p->idle_tail : p->idle_head;]],
    after = [[sc_pool_entry *e = p->idle_head;]],
    why = "pool_use_lifo=true hands out the oldest idle connection",
    specs = {"spec/pool_spec.lua"},
  },
  {
    id = "pool-limit-off-by-one",
    file = "csrc/core/pool.c",
    before = [[return (long long)p->open < (long long)p->cfg.pool_size + p->cfg.max_overflow;]],
    after = [[return (long long)p->open <= (long long)p->cfg.pool_size + p->cfg.max_overflow;]],
    why = "one connection more than pool_size + max_overflow is opened",
    specs = {"spec/pool_spec.lua"},
  },
  {
    id = "pool-idle-room",
    file = "csrc/core/pool.c",
    before = [[return p->cfg.pool_size <= 0 || p->nidle < p->cfg.pool_size;]],
    after = [[return 1;]],
    why = "overflow connections are kept idle instead of closed at checkin",
    specs = {"spec/pool_spec.lua"},
  },
  {
    id = "pool-checkin-no-handoff",
    file = "csrc/core/pool.c",
    before = [[} else if ((w = first_live(p, now)) != NULL) {
        grant_entry(p, w, e);]],
    after = [[} else if (0 && (w = first_live(p, now)) != NULL) {
        grant_entry(p, w, e);]],
    why = "a connection checked in goes idle instead of to the waiter at the head of the queue: the waiter times out with a connection idle",
    specs = {"spec/pool_spec.lua"},
  },
  {
    id = "pool-checkin-no-wakeup",
    file = "csrc/core/pool.c",
    before = [[    if (w->blocking) {
        pthread_cond_signal(&w->cond);
        return;]],
    after = [[    if (w->blocking) {
        return;]],
    why = "a blocked waiter granted a connection is not woken: it sleeps until its pool_timeout before it sees it",
    specs = {"spec/pool_spec.lua"},
  },
  {
    id = "pool-timeout-late",
    file = "csrc/core/pool.c",
    before = [[w.deadline = now + p->cfg.timeout;]],
    after = [[w.deadline = now + p->cfg.timeout + 1;]],
    why = "a blocking checkout waits a second past pool_timeout",
    specs = {"spec/pool_spec.lua"},
  },
  {
    id = "pool-wait-timeout-late",
    file = "csrc/core/pool.c",
    before = [[t->deadline = now + p->cfg.timeout;]],
    after = [[t->deadline = now + p->cfg.timeout + 1;]],
    why = "a pool_wait (coroutine) checkout waits a second past pool_timeout",
    specs = {"spec/pool_spec.lua"},
  },
  {
    id = "pool-preping-off",
    file = "csrc/core/pool.c",
    before = [[else if (p->cfg.pre_ping && p->c.ping != NULL && p->c.ping(p->c.ud, e->conn) != 0)]],
    after = [[else if (0 && p->cfg.pre_ping && p->c.ping != NULL && p->c.ping(p->c.ud, e->conn) != 0)]],
    why = "pool_pre_ping never pings: a dead idle connection is handed out and the first statement fails",
    specs = {"spec/pool_spec.lua", "spec/fault_spec.lua"},
  },
  {
    id = "pool-failed-connect-slot",
    file = "csrc/core/pool.c",
    before = [[        if (open_conn(p, e, me, err) != 0) {
            free(e);
            return fail_slot(p, g.slot_gen, me, OPEN_NEW);]],
    after = [[        if (open_conn(p, e, me, err) != 0) {
            free(e);
            return SC_POOL_ERROR;]],
    why = "a failed connect keeps its slot counted: after pool_size + max_overflow failures (server down) the pool is full for ever",
    specs = {"spec/pool_spec.lua", "spec/fault_spec.lua"},
  },
  -- ---- connections: disconnects, the reset rule (csrc/core/conn.c) ---------------
  {
    id = "disc-server-gone",
    file = "csrc/core/conn.c",
    before = [[    case 2006: /* CR_SERVER_GONE_ERROR */]],
    after = [[    case 92006: /* CR_SERVER_GONE_ERROR */]],
    why = "2006 (server gone) is not a disconnect: the dead connection goes back to the pool and fails the next user",
    specs = {"spec/fault_spec.lua"},
  },
  {
    id = "disc-server-lost",
    file = "csrc/core/conn.c",
    before = [[    case 2013: /* CR_SERVER_LOST */]],
    after = [[    case 92013: /* CR_SERVER_LOST */]],
    why = "2013 (lost during a query) is not a disconnect: the dead connection goes back to the pool",
    specs = {"spec/fault_spec.lua"},
  },
  {
    id = "needs-end-in-trans",
    file = "csrc/core/conn.c",
    before = [[return c->unclean || c->pending != NULL || (c->my->server_status & SERVER_STATUS_IN_TRANS) != 0;]],
    after = [[return c->unclean || c->pending != NULL;]],
    why = "an open transaction is not rolled back on return: the next user of the connection inherits it (and its locks)",
    specs = {"spec/tx_state_spec.lua", "spec/session_spec.lua"},
  },
  {
    id = "needs-end-unclean",
    file = "csrc/core/conn.c",
    before = [[return c->unclean || c->pending != NULL || (c->my->server_status & SERVER_STATUS_IN_TRANS) != 0;]],
    after = [[return c->pending != NULL || (c->my->server_status & SERVER_STATUS_IN_TRANS) != 0;]],
    why = "after a failed statement (the server may have opened a transaction no flag shows) no ROLLBACK is sent",
    specs = {"spec/tx_state_spec.lua", "spec/state_model_spec.lua"},
  },
  {
    id = "reset-commit-mode",
    file = "csrc/core/conn.c",
    before = [[sc_conn_end(c, mode == SC_RESET_COMMIT, err) != 0)]],
    after = [[sc_conn_end(c, 0, err) != 0)]],
    why = "pool_reset_on_return='commit' rolls back instead",
    specs = {"spec/tx_state_spec.lua", "spec/pool_spec.lua"},
  },
  {
    id = "reset-connection-skipped",
    file = "csrc/core/conn.c",
    before = [[return c->pristine ? 0 : reset_session(c, err);]],
    after = [[return c->pristine ? reset_session(c, err) : 0;]],
    why = "pool_reset_on_return='reset_connection' resets only connections nobody used: user variables, temporary tables and an open transaction reach the next user",
    specs = {"spec/tx_state_spec.lua", "spec/pool_spec.lua"},
  },
  -- ---- Session (lua/scoped/session.lua) and finish (csrc/lua/lconn.c) ------------
  {
    id = "session-commit-keeps-conn",
    file = "lua/scoped/session.lua",
    before = [[  conn:close() -- back to the pool, rolled back, whatever happened]],
    after = [[  -- back to the pool, rolled back, whatever happened]],
    why = "a Session on the Connection path (listeners, echo) never gives its connection back at commit",
    specs = {"spec/session_spec.lua", "spec/tx_state_spec.lua"},
  },
  {
    id = "finish-keeps-conn",
    file = "csrc/lua/lconn.c",
    before = [[    scl_lconn_release(lc);
    if (reuse)
        keep_spare(L, lc);
    return 0;
}

/* raw:_check_idle]],
    after = [[    if (reuse)
        keep_spare(L, lc);
    return 0;
}

/* raw:_check_idle]],
    why = "a Session's commit (the fast path) does not give the connection back: the pool runs dry",
    specs = {"spec/session_spec.lua", "spec/pool_spec.lua"},
  },
  -- ---- the coroutine registry (csrc/lua/lregistry.c) ----------------------------
  {
    id = "registry-key-address",
    file = "csrc/lua/lregistry.c",
    before = [[static int reg_get(lua_State *L)
{
    lua_pushthread(L);]],
    after = [[static int reg_get(lua_State *L)
{
    lua_pushlightuserdata(L, L);]],
    why = "Session() looks the scope up by the lua_State address instead of the coroutine: it never finds the session set for it (and an address is reused by the next coroutine)",
    specs = {"spec/scoped_session_spec.lua"},
  },
  {
    id = "registry-not-weak",
    file = "csrc/lua/lregistry.c",
    before = [[    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");]],
    after = [[    lua_pushliteral(L, "");
    lua_setfield(L, -2, "__mode");]],
    why = "the registry holds dead coroutines strongly: their sessions, and the connections those hold, are never collected",
    specs = {"spec/scoped_session_spec.lua", "spec/leak_spec.lua"},
  },
  -- ---- results (csrc/lua/lrow.h: the cell decoders both Results share) ---------------
  {
    id = "result-null-empty",
    file = "csrc/lua/lrow.h",
    before = [[        lua_pushlightuserdata(L, NULL);
        return;]],
    after = [[        lua_pushliteral(L, "");
        return;]],
    why = "a NULL cell reads as '' instead of scoped.null",
    specs = {"spec/result_spec.lua"},
  },
  {
    id = "result-uint-range",
    file = "csrc/lua/lrow.h",
    before = [[if (neg ? v > 9223372036854775808ULL : v > 9223372036854775807ULL)]],
    after = [[if (v > 9223372036854775808ULL)]],
    why = "BIGINT UNSIGNED 2^63 comes back as the integer -2^63 (the non-negative range check dropped)",
    specs = {"spec/result_spec.lua"},
  },
  {
    id = "result-int-digits",
    file = "csrc/lua/lrow.h",
    before = [[if (i == len || len - i > 19)]],
    after = [[if (len - i > 19)]],
    why = "an empty or sign-only integer text parses as 0 (never sent by the server for an integer column)",
    specs = {"spec/result_spec.lua"},
    equivalent = "the server never sends an empty or sign-only text for an INT/BIGINT cell (NULL is a NULL pointer, handled before); kept to show the case was considered",
  },
  {
    id = "result-luajit-2p53",
    file = "csrc/lua/lrow.h",
    before = [[if (v <= 9007199254740992LL && v >= -9007199254740992LL) {]],
    after = [[if (1) {]],
    why = "on LuaJIT a BIGINT past 2^53 comes back as a rounded double instead of its exact string",
    specs = {"spec/result_spec.lua"},
  },
  -- ---- URLs (lua/scoped/url.lua) ------------------------------------------------
  {
    id = "url-password-shown",
    file = "lua/scoped/url.lua",
    before = [[(hide_password == false and encode(self.password) or "***")]],
    after = [[(hide_password ~= true and encode(self.password) or "***")]],
    why = "tostring(url) (and every error or log showing the URL) prints the password",
    specs = {"spec/url_spec.lua", "spec/security_spec.lua"},
  },
  -- ---- savepoints (lua/scoped/engine.lua) ----------------------------------------
  {
    id = "savepoint-name-reused",
    file = "lua/scoped/engine.lua",
    before = [[self._spn = self._spn + 1 -- used up even when SAVEPOINT fails]],
    after = [[self._spn = 1 -- used up even when SAVEPOINT fails]],
    why = "every savepoint is sa_savepoint_1: an inner RELEASE or ROLLBACK TO acts on the wrong one",
    specs = {"spec/savepoint_spec.lua"},
  },
  -- ---- the busy guard (csrc/lua/lconn.h, lconn.c) ---------------------------------
  {
    id = "busy-not-marked",
    file = "csrc/lua/lconn.h",
    before = [[    lc->busy = name;
    int n = body(L, lc);]],
    after = [[    lc->busy = NULL;
    int n = body(L, lc);]],
    why = "a statement no longer marks its connection busy: a finalizer or a params metamethod can run another statement (or commit, close) in the middle of it",
    specs = {"spec/reentry_spec.lua"},
  },
  {
    id = "busy-commit-unchecked",
    file = "csrc/lua/lconn.c",
    before = [[lconn *lc = check_idle(L, commit ? "commit" : "rollback");]],
    after = [[lconn *lc = check_open(L);]],
    why = "commit()/rollback() called from inside a running statement go through instead of raising the busy error",
    specs = {"spec/reentry_spec.lua"},
  },
  -- ---- mode-proof rendering (csrc/lua/lexec.c, csrc/core/binds.c) ------------------
  {
    id = "mode-not-asked",
    file = "csrc/lua/lexec.c",
    before = [[if (plan->flags & (SC_PLAN_MODE_DEPENDENT | SC_PLAN_CHARSET_DEPENDENT)) {]],
    after = [[if (plan->flags & SC_PLAN_CHARSET_DEPENDENT) {]],
    why = "a statement whose lexing depends on sql_mode (a backslash in a string) is lexed in the default mode, not the server's (NO_BACKSLASH_ESCAPES, ANSI_QUOTES)",
    specs = {"spec/injection_spec.lua", "spec/binds_spec.lua"},
  },
  {
    id = "mode-plan-cache",
    file = "csrc/core/binds.c",
    before = [[(p->mode.no_backslash == m->no_backslash && p->mode.ansi_quotes == m->ansi_quotes);]],
    after = [[1;]],
    why = "a mode-dependent plan cached for one sql_mode is reused under another: the re-lex in the server's mode never happens",
    specs = {"spec/injection_spec.lua", "spec/binds_spec.lua"},
  },
  {
    id = "charset-not-rechecked",
    file = "csrc/lua/lexec.c",
    before = [[    if (sc_conn_charset(lc->c) != SC_CS_UNSAFE)
        return;]],
    after = [[    if (sc_conn_charset(lc->c) != SC_CS_UNSAFE || 1)
        return;]],
    why = "SET NAMES to a charset whose multibyte characters hold ASCII bytes (sjis, gbk) is not refused after the statement: later binds are written for the wrong charset (injection)",
    specs = {"spec/security_spec.lua", "spec/injection_spec.lua", "spec/hostile_spec.lua"},
  },
  -- ---- streaming results (issue 20: csrc/lua/lexec.c, lstream.c) -----------------------
  {
    id = "stream-not-busy",
    file = "csrc/lua/lexec.c",
    before = [[    if (lc->stream != NULL)
        lc->busy = SCL_STREAM_OPEN;]],
    after = [[    if (lc->stream != NULL)
        lc->busy = NULL;]],
    why = "a connection with a streaming Result open is not marked busy: another statement on it gets \"Commands out of sync\" or reads the stream's rows as its own",
    specs = {"spec/stream_spec.lua"},
  },
  {
    id = "stream-rowcount-early",
    file = "csrc/lua/lstream.c",
    before = [[    s->lc = NULL;
    s->r.nsets = 0;]],
    after = [[    s->lc = NULL;
    s->r.rowcount = s->count;
    s->r.nsets = 0;]],
    why = "a streaming Result closed before its end reports the rows read so far as its rowcount, not -1 (the count was never known)",
    specs = {"spec/stream_spec.lua"},
  },
  {
    id = "stream-set-end-frees",
    file = "csrc/lua/lstream.c",
    before = [[        if (rc == 2) {
            s->set_ended = 1; /* a CALL's next set waits: the connection stays busy */]],
    after = [[        if (0) {
            s->set_ended = 1; /* a CALL's next set waits: the connection stays busy */]],
    why = "the end of a CALL's first result set ends the stream: the later sets are dropped unread and nextset() finds none",
    specs = {"spec/stream_spec.lua"},
  },
  {
    id = "stream-nextset-stale-cols",
    file = "csrc/lua/lstream.c",
    before = [[    set_columns(L, 1, s, lc->c->pending); /* still busy with nextset: may raise */]],
    after = [[    /* the first set's columns kept */]],
    why = "after nextset() a streamed CALL's rows are built with the first set's column names and decoders",
    specs = {"spec/stream_spec.lua"},
  },
  {
    id = "stream-iter-not-reader",
    file = "csrc/lua/lstream.c",
    before = [[f == l_stream_soft_close || f == l_stream_iter_next;]],
    after = [[f == l_stream_soft_close;]],
    why = "a read by iter()'s iterator is not seen as running: a finalizer run while it builds a row reads the stream under it (mysql_fetch_row frees the row being decoded) or closes it",
    specs = {"spec/stream_spec.lua"},
  },
  -- ---- fork (csrc/core/pid.c, csrc/core/conn.c) -------------------------------------
  {
    id = "fork-pid-stale",
    file = "csrc/core/pid.c",
    before = [[pthread_atfork(NULL, NULL, refresh);]],
    after = [[pthread_atfork(NULL, NULL, NULL);]],
    why = "the cached process id is not refreshed in a forked child: every fork check passes there, and the child runs statements on its parent's connection (one socket, two conversations)",
    specs = {"spec/fork_spec.lua"},
  },
  {
    id = "fork-core-foreign",
    file = "csrc/core/conn.c",
    before = [[    if (c->pid == me)
        return 0;
    err->code = 0;]],
    after = [[    if (c->pid == me || 1)
        return 0;
    err->code = 0;]],
    why = "the core lets a child talk on (and COM_QUIT) the socket it shares with its parent",
    specs = {"spec/fork_spec.lua"},
  },
  -- ---- hide_parameters (csrc/lua/lexec.c) ---------------------------------------------
  {
    id = "hide-server-text",
    file = "csrc/lua/lexec.c",
    before = [[const char *hidden = lc->hide_parameters && params ? sc_error_hidden_text(err->code) : NULL;]],
    after = [[const char *hidden = NULL;]],
    why = "with hide_parameters the server's own message (Duplicate entry 'secret', near '...') is shown instead of the generic text",
    specs = {"spec/errors_spec.lua", "spec/security_spec.lua"},
  },
  -- ---- non-blocking driver (csrc/lua/lnb.c, lconn.c, scoped/nonblocking.lua) ------------
  {
    id = "nb-abandon-no-kill",
    file = "csrc/lua/lnb.c",
    before = [[sc_pool_kill(lc->pool, lc->c);]],
    after = [[(void)0;]],
    why = "an abandoned statement's connection is discarded but its server session is not killed: a SLEEP or a lock wait runs on, holding its locks",
    specs = {"spec/nonblocking_spec.lua"},
  },
  {
    id = "nb-waiter-gone-busy",
    file = "csrc/lua/lconn.c",
    before = [[scl_lnb_abandon(lc); /* its coroutine is gone: nobody will go on */
        return 0;]],
    after = [[return 1;]],
    why = "a connection whose waiting coroutine was collected stays busy for ever: the finalizer cannot give it back, the pool slot is lost",
    specs = {"spec/nonblocking_spec.lua"},
  },
  {
    id = "nb-deferred-slot-kept",
    file = "csrc/lua/lconn.c",
    before = [[        sc_pool_open_failed(lc->pool, lc->entry);
        lc->c = NULL;]],
    after = [[        lc->c = NULL;]],
    why = "a deferred checkout given up before its connect finished (an error, a collected coroutine) never gives its slot back: the pool shrinks until checkouts time out",
    specs = {"spec/nonblocking_spec.lua"},
  },
  {
    id = "nb-cqueues-no-cancel",
    file = "lua/scoped/nonblocking.lua",
    before = [[      cqueues.cancel(fd)]],
    after = [[      local _ = fd]],
    why = "cqueues keeps a closed descriptor registered: when the C core discards a connection and the number is reused, the loop fails or stalls",
    specs = {"spec/nonblocking_spec.lua"},
  },
  -- ---- TLS (csrc/core/conn.c) -----------------------------------------------------------
  {
    id = "tls-auth-unrestricted",
    file = "csrc/core/conn.c",
    before = [[if (tls_required && !verify)]],
    after = [[if (tls_required && verify)]],
    why = "with TLS required but no certificate verified, a TLS-stripping server may ask for the password in clear (mysql_clear_password) and get it",
    specs = {"spec/tls_spec.lua"},
  },
  -- ---- several hosts (csrc/core/hosts.c, connector.c, url.c; issue 21) ----------------
  {
    id = "hosts-deny-ignored",
    file = "csrc/core/hosts.c",
    before = [[            if (now < s->denied_until)
                continue;]],
    after = [[            if (0 && now < s->denied_until)
                continue;]],
    why = "a denied host is tried first again at every checkout: a hung host costs connect_timeout on every new connection",
    specs = {"spec/hosts_spec.lua"},
  },
  {
    id = "hosts-auth-tries-next",
    file = "csrc/core/connector.c",
    before = [[    case 1040: case 1047: case 1053: case 1129: case 1927:]],
    after = [[    case 1045: case 1040: case 1047: case 1053: case 1129: case 1927:]],
    why = "an access-denied error denies the host and tries the next one: a wrong password shows as another host's error, and locks hosts out",
    specs = {"spec/hosts_spec.lua"},
  },
  {
    id = "hosts-role-unchecked",
    file = "csrc/core/connector.c",
    before = [[(o->tsa == SC_TSA_READ_ONLY && role != SC_ROLE_READ_ONLY)) {]],
    after = [[(o->tsa == SC_TSA_READ_ONLY && role == SC_ROLE_UNKNOWN)) {]],
    why = "target_session_attrs=read-only takes a read-write host: reads meant for a replica land on the primary",
    specs = {"spec/hosts_spec.lua"},
  },
  {
    id = "url-hosts-both-forms",
    file = "csrc/core/url.c",
    before = [[        if (in_query > 0 && in_authority) {]],
    after = [[        if (in_query > 0 && in_authority && 0) {]],
    why = "a URL with a host in the authority and ?host= is taken: which hosts it means is ambiguous",
    specs = {"spec/url_spec.lua"},
  },
  -- ---- this round: one pool per host, fail-back, the non-blocking host loop,
  -- ---- the OpenResty wake-one, sync_wait, retry (issues 19, 21) --------------------
  {
    id = "hosts-disconnect-no-deny",
    file = "csrc/core/connector.c",
    before = [[c->gone.code, host_gone(c->gone.code, c->galera));]],
    after = [[c->gone.code, 0 && host_gone(c->gone.code, c->galera));]],
    why = "a disconnect (2013, 2006) no longer denies its host: the next checkout connects to the dead server again and pays its connect error or connect_timeout",
    specs = {"spec/hosts_spec.lua"},
  },
  {
    id = "hosts-disconnect-whole-pool",
    file = "csrc/core/pool.c",
    before = [[if (disconnect && host >= 0 && p->c.host_of != NULL) {]],
    after = [[if (disconnect && host >= 0 && p->c.host_of == NULL) {]],
    why = "with several hosts a disconnect invalidates the whole pool: the healthy hosts' connections are closed and reopened",
    specs = {"spec/hosts_spec.lua"},
  },
  {
    id = "hosts-failback-never",
    file = "csrc/core/hosts.c",
    before = [[for (int j = 0; j < i && !r; j++) {]],
    after = [[for (int j = 1; j < i && !r; j++) {]],
    why = "sequential fail-back skips the first host: once it is back, idle connections stay on the later host for good",
    specs = {"spec/hosts_spec.lua"},
  },
  {
    id = "nb-hosts-no-deny",
    file = "csrc/core/connector.c",
    before = [[r = ho_opened(o, c, err);]],
    after = [[r = c == NULL ? HO_NEXT : ho_opened(o, c, err);]],
    why = "the non-blocking host loop moves on from a failed connect without counting or denying the host (and past an auth error): every checkout under cqueues/OpenResty tries the dead host first",
    specs = {"spec/hosts_spec.lua"},
  },
  {
    id = "pool-waiter-ready-never",
    file = "csrc/core/pool.c",
    before = [[int ready = t->epoch != p->epoch || t->state != W_QUEUED || sc_monotonic() >= t->deadline;]],
    after = [[int ready = 0;]],
    why = "ticket:ready() never says served: scoped.ngx's wake-one never wakes the request a connection was given to (it sleeps to pool_timeout)",
    specs = {"spec/pool_spec.lua"},
  },
  {
    id = "pool-waiter-ready-always",
    file = "csrc/core/pool.c",
    before = [[int ready = t->epoch != p->epoch || t->state != W_QUEUED || sc_monotonic() >= t->deadline;]],
    after = [[int ready = 1;]],
    why = "ticket:ready() always says served: every queued OpenResty request wakes at every checkin and spins (the thundering herd the wake-one removed)",
    specs = {"spec/pool_spec.lua"},
  },
  {
    id = "causal-sync-wait-dropped",
    file = "lua/scoped/session.lua",
    before = [[local SYNC_BEGIN = "SET STATEMENT wsrep_sync_wait = 1 FOR START TRANSACTION"]],
    after = [[local SYNC_BEGIN = "START TRANSACTION"]],
    why = "causal = \"sync_wait\" starts the reader's transaction without wsrep_sync_wait: on Galera reads right after a commit are stale (11-14% measured)",
    specs = {"spec/causal_spec.lua"},
  },
  {
    id = "causal-sync-waits-uncounted",
    file = "lua/scoped/session.lua",
    before = [[        c.causal_waits = c.causal_waits + 1
        local ok, err = pcall(base_execute]],
    after = [[        c.causal_waits = c.causal_waits + 0
        local ok, err = pcall(base_execute]],
    why = "a sync_wait start is not counted in causal_waits: the metrics say no reader waited",
    specs = {"spec/causal_spec.lua"},
  },
  {
    id = "retry-commit-unknown-redone",
    file = "lua/scoped/retry.lua",
    before = [[and (not err.commit_unknown or opts.idempotent == true)]],
    after = [[and (not err.commit_unknown or opts.idempotent ~= false)]],
    why = "scoped.retry redoes a unit whose COMMIT may have committed (commit_unknown) when idempotent is not given: a transfer is applied twice",
    specs = {"spec/retry_spec.lua"},
  },
  {
    id = "metrics-host-twice-same-label",
    file = "lua/scoped/metrics.lua",
    before = [[    if seen[name] > 1 then name = name .. " #" .. seen[name] end
    out[i] = ]],
    after = [[    out[i] = ]],
    why = "the same host twice in one URL gives two series with the same labels: Prometheus rejects the scrape",
    specs = {"spec/metrics_spec.lua"},
  },
}
