-- Security: a password never shows in any text scoped produces, bound values
-- stay out of errors and logs with hide_parameters, and no bound string can
-- change a statement's structure (random bytes come back equal).
local scoped = require "scoped"
local H = require "helper"

local PASSWORD = "Pw-Zq8x-Distinctive-4711"
local USER = "scoped_sec"

-- every way the password could be written into a text
local function forms(pw)
  local enc = pw:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)
  return {pw, enc, pw:sub(4, 16)}
end

local function assert_clean(texts, secrets)
  local all = table.concat(texts, "\n----\n")
  for _, secret in ipairs(secrets) do
    for _, f in ipairs(forms(secret)) do
      local at = all:find(f, 1, true)
      assert.is_nil(at, ("'%s' appears in:\n%s"):format(f, at and all:sub(math.max(1, at - 200), at + 200) or ""))
    end
  end
end

describe("passwords", function()
  local url
  setup(function()
    local o = H.raw()
    o:execute("DROP USER IF EXISTS " .. USER .. "@'%'")
    o:execute("CREATE USER " .. USER .. "@'%' IDENTIFIED BY :pw", {pw = PASSWORD})
    o:execute("GRANT ALL ON scoped_test.* TO " .. USER .. "@'%'")
    o:close()
    url = scoped.make_url(H.url):set({username = USER, password = PASSWORD}):render_as_string(false)
  end)
  teardown(function()
    local o = H.raw()
    o:execute("DROP USER IF EXISTS " .. USER .. "@'%'")
    o:execute("DROP TABLE IF EXISTS sec_t")
    o:close()
  end)

  it("never appear in tostring, errors, echo and log lines or status text", function()
    local texts = {}
    local function add(x) texts[#texts + 1] = tostring(x) end
    local function err_of(f, ...)
      local ok, e = pcall(f, ...)
      assert.is_false(ok, "no error from call #" .. #texts .. " with " .. tostring((...)))
      add(e)
      if type(e) == "table" then add(e.message); add(e.statement) end
      return e
    end
    local log = function(_, line) add(line) end

    local u = scoped.make_url(url)
    assert.equal(PASSWORD, u.password) -- it is there, only never printed
    add(u); add(u:render_as_string())
    local e = scoped.create_engine(url, {echo = true, logger = log, pool_size = 1, max_overflow = 0,
      pool_timeout = 0.2, pool_leak_threshold = 0.05})
    add(e); add(e.url); add(e.pool); add(e.pool:status())
    local c = e:connect()
    add(c); add(c.raw)
    c:execute("DROP TABLE IF EXISTS sec_t")
    c:execute("CREATE TABLE sec_t (id INT PRIMARY KEY)")
    c:execute("INSERT INTO sec_t VALUES (:id)", {id = 1})
    err_of(c.execute, c, "INSERT INTO sec_t VALUES (:id)", {id = 1})
    err_of(c.execute, c, "SELEC :x", {x = "y"})
    err_of(e.connect, e) -- TimeoutError: the only connection is out
    H.sleep(0.1)
    e:check_leaks()
    c:commit()
    c:close()
    add(e.pool:status())

    local Session = scoped.sessionmaker{bind = e}
    add(Session)
    local s = Session()
    s:execute("SELECT 1")
    add(s)
    err_of(s.execute, s, "SELECT * FROM no_such_table")
    s:close()
    local scoped_s = scoped.scoped_session(Session)
    add(scoped_s)
    scoped_s:execute("SELECT 1")
    scoped_s:remove()

    -- a wrong password, a dead port, a missing socket, bad URLs, each
    -- with the password in the URL
    local wrong = scoped.make_url(url):set({password = "Wrong-Secret-9913"}):render_as_string(false)
    err_of(scoped.raw_connect, wrong)
    err_of(scoped.create_engine(wrong).connect, scoped.create_engine(wrong))
    err_of(scoped.raw_connect, ("mysql://%s:%s@127.0.0.1:1/x?connect_timeout=2"):format(USER, PASSWORD))
    err_of(scoped.raw_connect, ("mysql://%s:%s@/x?unix_socket=/nonexistent/s.sock"):format(USER, PASSWORD))
    for _, bad in ipairs({
      "mysql://%s:%s@host:notaport/db", "mysql://%s:%s@[host/db", "mysql://%s:%s@host/db?colour=red",
      "mysql://%s:%s@host/db?ssl_mode=SOMETIMES", "postgresql://%s:%s@host/db", "mysql://%s:%s@host/db?charset=$",
      "mysql://%s:%s@host/db?connect_timeout=x", "mysql://%s:%s@host:99999/db", "mysql://%s:%s%%zz@host/db",
      "mysql://%s:%s/db", "mysql://%s:%s", "mysql://%s:%s?charset=x",
    }) do
      err_of(scoped.make_url, bad:format(USER, PASSWORD))
    end
    err_of(scoped.create_engine, url, {pool_size = "x"})
    err_of(scoped.create_engine, url, {connect_args = {read_timeout = "soon"}})
    local shared = scoped.create_engine(url, {shared = "sec-shared"})
    err_of(scoped.create_engine, url, {shared = "sec-shared", pool_size = 9})
    add(shared)
    e:dispose()

    assert.is_true(#texts > 40)
    assert_clean(texts, {PASSWORD, "Wrong-Secret-9913"})
    -- and the texts are real: the user name is in them where it belongs
    assert.truthy(table.concat(texts, "\n"):find(USER, 1, true))
  end)
end)

describe("hide_parameters", function()
  local SECRET = "Val-Secret-8812"
  after_each(function()
    local o = H.raw()
    o:execute("DROP TABLE IF EXISTS hide_t")
    o:close()
  end)

  local function run_all(opts)
    local lines, errs = {}, {}
    opts.logger = function(_, l) lines[#lines + 1] = l end
    opts.echo = true
    local e = scoped.create_engine(H.url, opts)
    local Session = scoped.sessionmaker{bind = e}
    local S = scoped.scoped_session(Session)
    local c = e:connect()
    c:execute("CREATE TABLE hide_t (v VARCHAR(40) PRIMARY KEY, n INT, short CHAR(2) UNIQUE)")
    c:execute("INSERT INTO hide_t VALUES (:v, 1, :s)", {v = SECRET, s = "zq"})
    c:commit()
    local function try(f, ...)
      local ok, err = pcall(f, ...)
      assert.is_false(ok)
      errs[#errs + 1] = err
    end
    try(c.execute, c, "INSERT INTO hide_t VALUES (:v, 2, 'a')", {v = SECRET})          -- Duplicate entry
    try(c.execute, c, "INSERT INTO hide_t VALUES ('x', 3, :s)", {s = "zq"})            -- a short one
    try(c.execute, c, "SELEC :v", {v = SECRET})                                        -- near '...'
    try(c.execute, c, "INSERT INTO hide_t (v, n) VALUES ('y', :n)", {n = SECRET})      -- Incorrect integer value
    try(c.execute, c, "SELECT * FROM hide_t WHERE v IN :vs AND nope", {vs = {SECRET, "b"}})
    try(c.execute, c, "SELECT ?, ? FROM nowhere_t", {SECRET, 12345678})
    c:close()
    local s = Session()
    try(s.execute, s, "INSERT INTO hide_t VALUES (:v, 4, 'b')", {v = SECRET})
    s:close()
    try(S.execute, S, "SELEC :v", {v = SECRET})
    S:remove()
    e:dispose()
    return lines, errs
  end

  it("keeps bound values out of errors, their fields and the echo log", function()
    local lines, errs = run_all({hide_parameters = true})
    local texts = {}
    for _, l in ipairs(lines) do texts[#texts + 1] = l end
    for _, err in ipairs(errs) do
      assert.equal("table", type(err))
      assert.is_nil(err.params)
      texts[#texts + 1] = tostring(err)
      texts[#texts + 1] = tostring(err.message)
      assert.truthy(tostring(err):find("hidden due to hide_parameters", 1, true), tostring(err))
    end
    local all = table.concat(texts, "\n")
    for _, v in ipairs({SECRET, "12345678", "'zq'"}) do
      local at = all:find(v, 1, true)
      assert.is_nil(at, v .. " in: " .. (at and all:sub(math.max(1, at - 150), at + 150) or ""))
    end
  end)

  -- The server truncates and re-formats what it quotes, so that no
  -- scrubbing of the bound values finds it: 64 bytes of a long key, 'a-b'
  -- for a composite key, \xFF for a byte, 0.10 for 0.1.
  local function reformatted_errors(opts)
    local e = scoped.create_engine(H.url, opts)
    local c = e:connect()
    c:execute("DROP TABLE IF EXISTS hide_t")
    c:execute("CREATE TABLE hide_t (id INT AUTO_INCREMENT PRIMARY KEY, long_v VARCHAR(200), " ..
      "a VARCHAR(8), b VARCHAR(8), bin VARBINARY(8), d DECIMAL(5,2), tiny TINYINT, short CHAR(3), " ..
      "UNIQUE (long_v), UNIQUE (a, b), UNIQUE (bin), UNIQUE (d))")
    local long = "TOPSECRET-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-tail"
    c:execute("INSERT INTO hide_t (long_v, a, b, bin, d) VALUES (:l, :a, :b, :bin, :d)",
      {l = long, a = "q7", b = "z9", bin = "\255\254k", d = 0.1})
    c:commit()
    local errs = {}
    for _, stmt in ipairs({
      {"INSERT INTO hide_t (long_v) VALUES (:v)", {v = long}},
      {"INSERT INTO hide_t (a, b) VALUES (:a, :b)", {a = "q7", b = "z9"}},
      {"INSERT INTO hide_t (bin) VALUES (:v)", {v = "\255\254k"}},
      {"INSERT INTO hide_t (d) VALUES (:v)", {v = 0.1}},
      {"INSERT INTO hide_t (tiny) VALUES (:v)", {v = "Secret-Tiny-9"}},
      {"INSERT INTO hide_t (short) VALUES (:v)", {v = "Secret-Short-7"}},
    }) do
      local ok, err = pcall(c.execute, c, stmt[1], stmt[2])
      assert.is_false(ok)
      errs[#errs + 1] = tostring(err)
    end
    c:execute("DROP TABLE hide_t")
    c:close()
    e:dispose()
    return table.concat(errs, "\n")
  end

  it("keeps bound values out of the server's own messages, however it reformats them", function()
    local texts = reformatted_errors({hide_parameters = true})
    for _, v in ipairs({"TOPSECRET", "q7-z9", "\\xFF", "0.10", "Secret-Tiny", "Secret-Short"}) do
      assert.is_nil(texts:find(v, 1, true), v .. " in: " .. texts)
    end
    assert.truthy(texts:find("Duplicate entry for a unique key", 1, true))
  end)

  it("without it, the server's messages quote the values (the check above is not vacuous)", function()
    local texts = reformatted_errors({})
    for _, v in ipairs({"TOPSECRET", "q7-z9", "\\xFF", "0.10", "Secret-Tiny", "Secret-Short"}) do
      assert.truthy(texts:find(v, 1, true), v .. " not in: " .. texts)
    end
  end)

  it("without it, the values are there (the check above is not vacuous)", function()
    local lines, errs = run_all({})
    local all = table.concat(lines, "\n")
    for _, err in ipairs(errs) do all = all .. "\n" .. tostring(err) end
    assert.truthy(all:find(SECRET, 1, true))
    assert.truthy(all:find("12345678", 1, true))
  end)
end)

describe("bound strings", function()
  -- deterministic bytes, weighted towards the ones an escaper must handle
  local special = {0, 39, 92, 34, 26, 10, 13, 9, 8, 37, 95, 63, 58, 45, 35, 47, 42, 96, 0xC3, 0xA9,
    0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 0xFF, 0xFE, 0x80, 0xBF, 0xC0, 0xED, 0xA0}
  local seed = 12345
  local function rand(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n
  end
  local function random_bytes()
    local len = rand(4) == 0 and rand(300) or rand(24)
    local t = {}
    for i = 1, len do
      t[i] = string.char(rand(3) == 0 and rand(256) or special[rand(#special) + 1])
    end
    return table.concat(t)
  end
  local count = os.getenv("SCOPED_SLOW") == "1" and 150 or 600

  local function roundtrip(c, label)
    for k = 1, count do
      local v = random_bytes()
      local row = c:execute("SELECT :v AS v, 'end' AS sentinel, :n AS n", {v = v, n = k}):one()
      assert.equal(3, #row, label .. ": the statement's structure changed")
      assert.equal(v, row.v, label .. ": bytes differ for #" .. k)
      assert.equal("end", row.sentinel)
      assert.equal(k, row.n)
      local row2 = c:execute("SELECT ? AS v, ? AS w", {v, v}):one()
      assert.equal(v, row2.v)
      assert.equal(v, row2.w)
    end
  end

  it("come back equal from SELECT :v, whatever the bytes (" .. count .. " random strings)", function()
    local c = H.raw()
    roundtrip(c, "backslash escapes")
    c:close()
  end)

  it("come back equal with NO_BACKSLASH_ESCAPES too", function()
    local c = H.raw()
    c:execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
    roundtrip(c, "NO_BACKSLASH_ESCAPES")
    c:close()
  end)
end)
