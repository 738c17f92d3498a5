local scoped = require "scoped"
local H = require "helper"

describe("executemany", function()
  local engine, c
  before_each(function()
    engine = scoped.create_engine(H.url)
    c = engine:connect()
    c:execute("DROP TABLE IF EXISTS many_t")
    c:execute("CREATE TABLE many_t (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64), score DOUBLE)")
  end)
  after_each(function()
    c:close()
    collectgarbage()
    engine:dispose()
  end)

  local function com_insert()
    return tonumber(c:scalar("SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'COM_INSERT'"))
  end

  it("sends an INSERT ... VALUES as one multi-row INSERT", function()
    local sets = {}
    for i = 1, 1000 do sets[i] = {name = "n" .. i, score = i / 4} end
    local before = com_insert()
    local r = c:executemany("INSERT INTO many_t (name, score) VALUES (:name, :score)", sets)
    assert.equal(before + 1, com_insert())
    assert.equal(1000, r.rowcount)
    assert.equal(1, r.lastrowid)
    c:commit()
    assert.equal(1000, c:scalar("SELECT COUNT(*) FROM many_t"))
    assert.equal(250, c:scalar("SELECT score FROM many_t WHERE name = 'n1000'"))
  end)

  it("cuts a large batch into statements below max_allowed_packet", function()
    local sets, big = {}, string.rep("x", 60)
    for i = 1, 40000 do sets[i] = {name = big, score = i} end
    local before = com_insert()
    local r = c:executemany("INSERT INTO many_t (name, score) VALUES (:name, :score)", sets)
    assert.equal(40000, r.rowcount)
    assert.is_true(com_insert() - before > 1)
    assert.equal(40000, c:scalar("SELECT COUNT(*) FROM many_t"))
  end)

  it("takes ? binds with arrays", function()
    local r = c:executemany("INSERT INTO many_t (name, score) VALUES (?, ?)", {{"a", 1}, {"b", 2}})
    assert.equal(2, r.rowcount)
    assert.same({"a", "b"}, c:execute("SELECT name FROM many_t ORDER BY id"):scalars():all())
  end)

  it("runs other statements once per parameter set", function()
    c:executemany("INSERT INTO many_t (name, score) VALUES (:n, 0)", {{n = "a"}, {n = "b"}, {n = "c"}})
    local r = c:executemany("UPDATE many_t SET score = :s WHERE name = :n", {{s = 1, n = "a"}, {s = 2, n = "c"}})
    assert.equal(2, r.rowcount)
    assert.same({1, 0, 2}, c:execute("SELECT score FROM many_t ORDER BY id"):scalars():all())
  end)

  it("is what execute(sql, {set, set}) does for :name statements", function()
    local r = c:execute("INSERT INTO many_t (name, score) VALUES (:name, :score)",
      {{name = "x", score = 1}, {name = "y", score = 2}})
    assert.equal(2, r.rowcount)
    -- with ? binds a table in first place stays an IN list
    assert.equal(2, c:execute("SELECT COUNT(*) FROM many_t WHERE score IN ?", {{1, 2}}):scalar())
  end)

  it("leaves VALUES inside quotes alone and batches ON DUPLICATE KEY UPDATE with what follows written once", function()
    c:executemany("INSERT INTO many_t (name, score) VALUES (CONCAT('VALUES (', :n), 1)", {{n = "p"}, {n = "q"}})
    assert.same({"VALUES (p", "VALUES (q"}, c:execute("SELECT name FROM many_t ORDER BY id"):scalars():all())
    local before = com_insert()
    local r = c:executemany("INSERT INTO many_t (id, name) VALUES (:id, 'z') ON DUPLICATE KEY UPDATE name = 'dup'",
      {{id = 1}, {id = 99}})
    assert.equal(before + 1, com_insert())
    assert.equal(3, r.rowcount) -- 2 for the updated row, 1 for the new one (MySQL's counting)
    assert.same({"dup", "z"}, c:execute("SELECT name FROM many_t WHERE id IN (1, 99) ORDER BY id"):scalars():all())
  end)

  it("raises ArgumentError naming the bad parameter set, and the error names the set's values", function()
    assert.equal("ArgumentError", H.error_of(c.executemany, c, "INSERT INTO many_t (name) VALUES (:n)", {}).kind)
    assert.equal("ArgumentError", H.error_of(c.executemany, c, "INSERT INTO many_t (name) VALUES (:n)", {{n = 1}, 5}).kind)
    local err = H.error_of(c.executemany, c, "INSERT INTO many_t (name) VALUES (:n)", {{n = "a"}, {m = 1}})
    assert.equal("A value is required for bind parameter 'n'", err.message)
    err = H.error_of(c.executemany, c, "INSERT INTO many_t (id, name) VALUES (:id, 'a')", {{id = 7}, {id = 7}})
    assert.equal("IntegrityError", err.kind)
  end)

  it("works through sessions and scoped_session", function()
    local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
    Session:executemany("INSERT INTO many_t (name) VALUES (:n)", {{n = "s1"}, {n = "s2"}})
    Session:commit()
    Session:remove()
    assert.equal(2, c:scalar("SELECT COUNT(*) FROM many_t WHERE name LIKE 's%'"))
  end)
end)
