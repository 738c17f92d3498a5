-- make demo: what scoped does, against a throwaway MariaDB (or the server
-- in SCOPED_DATABASE_URL).
local scoped = require "scoped"

local url = os.getenv("SCOPED_DATABASE_URL") or os.getenv("SCOPED_TEST_URL")
assert(url, "set SCOPED_DATABASE_URL=mysql://user:pass@127.0.0.1:3306/db (make demo does)")

local function say(fmt, ...) print(string.format(fmt, ...)) end

-- 1. An engine: a real pool, opening nothing until it is used.
local engine = scoped.create_engine(url, {pool_size = 3, max_overflow = 2, pool_timeout = 5})
say("engine: %s", tostring(engine))
say("pool:   %s", engine.pool:status())

do
  local conn = engine:connect()
  conn:execute("DROP TABLE IF EXISTS demo_people")
  conn:execute([[CREATE TABLE demo_people (
    id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL, score DOUBLE NULL)]])
  conn:commit()
  conn:close()
end

-- 2. The seed's first way: a session per unit of work, made and closed by hand.
local SessionFactory = scoped.sessionmaker{bind = engine}
do
  local s = SessionFactory()
  s:execute("INSERT INTO demo_people (name, score) VALUES (:name, :score)", {name = "Ann", score = 9.5})
  s:execute("INSERT INTO demo_people (name, score) VALUES (?, ?)", {"Bob", scoped.null, n = 2})
  say("session holds a connection: %s", engine.pool:status())
  s:commit()
  s:close()
  say("after commit:               %s", engine.pool:status())
end

-- 3. The seed's second way: one session per scope (the running coroutine).
local Session = scoped.scoped_session(SessionFactory)
local rows = Session:execute("SELECT * FROM demo_people WHERE id IN :ids ORDER BY id", {ids = {1, 2}}):all()
for _, row in ipairs(rows) do
  say("row %d: name=%s score=%s", row.id, row.name, row.score == scoped.null and "NULL" or tostring(row.score))
end
Session:commit()
Session:remove()

-- 4. Coroutines each get their own session; they share the pool.
local workers = {}
for i = 1, 3 do
  workers[i] = coroutine.create(function()
    Session:execute("INSERT INTO demo_people (name) VALUES (:n)", {n = "worker " .. i})
    coroutine.yield(Session().bind.pool:status())
    Session:commit()
    Session:remove()
  end)
end
for i = 1, 3 do
  local _, status = coroutine.resume(workers[i])
  say("worker %d mid-transaction: %s", i, status)
end
for i = 1, 3 do coroutine.resume(workers[i]) end
say("all workers done:           %s", engine.pool:status())

-- 5. Errors are tables that read like SQLAlchemy's.
local ok, err = pcall(Session.execute, Session, "INSERT INTO demo_people (id, name) VALUES (1, 'dup')")
say("error kind %s, code %s:\n%s", err.kind, tostring(err.code), tostring(err))
Session:rollback()
Session:remove()

local total = engine:connect()
say("people: %d", total:scalar("SELECT COUNT(*) FROM demo_people"))
total:execute("DROP TABLE demo_people")
total:close()
engine:dispose()
say("disposed:                   %s", engine.pool:status())
