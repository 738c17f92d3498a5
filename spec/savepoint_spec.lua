-- Two nested savepoints with a row in each, ended in the same direction:
-- inner then outer commit keeps both rows, inner then outer rollback keeps
-- neither. A savepoint name reused at every level passes one-level specs
-- but fails these (RELEASE of a name already released: 1305; ROLLBACK TO a
-- name that now marks the inner savepoint keeps the outer row). The rows
-- are counted by the independent observer after the commit.
local scoped = require "scoped"
local H = require "helper"

local function rows()
  return H.observer():execute("SELECT id FROM sp_t ORDER BY id"):scalars():all()
end

for _, via in ipairs({"Connection", "Session"}) do
  describe("two nested savepoints through a " .. via, function()
    local engine, Session
    setup(function()
      engine = scoped.create_engine(H.url)
      Session = scoped.sessionmaker{bind = engine}
      local c = engine:connect()
      c:execute("CREATE TABLE IF NOT EXISTS sp_t (id INT PRIMARY KEY) ENGINE=InnoDB")
      c:commit()
      c:close()
    end)
    teardown(function()
      local c = engine:connect()
      c:execute("DROP TABLE IF EXISTS sp_t")
      c:close()
      engine:dispose()
    end)
    before_each(function()
      local c = engine:connect()
      c:execute("DELETE FROM sp_t")
      c:commit()
      c:close()
    end)

    -- the unit of work: begin_nested, execute, commit, close
    local function unit()
      if via == "Connection" then
        local c = engine:connect()
        return c, function() c:close() end
      end
      local s = Session()
      return s, function() s:close() end
    end

    it("inner commit then outer commit keeps both rows", function()
      local u, done = unit()
      finally(done) -- a failed case must not leave its locks to the next
      local outer = u:begin_nested()
      u:execute("INSERT INTO sp_t VALUES (1)")
      local inner = u:begin_nested()
      u:execute("INSERT INTO sp_t VALUES (2)")
      inner:commit()
      outer:commit()
      u:commit()
      assert.same({1, 2}, rows())
    end)

    it("inner rollback then outer rollback keeps neither row", function()
      local u, done = unit()
      finally(done) -- a failed case must not leave its locks to the next
      u:execute("INSERT INTO sp_t VALUES (0)")
      local outer = u:begin_nested()
      u:execute("INSERT INTO sp_t VALUES (1)")
      local inner = u:begin_nested()
      u:execute("INSERT INTO sp_t VALUES (2)")
      inner:rollback()
      outer:rollback()
      u:commit()
      assert.same({0}, rows())
    end)

    it("three levels released inner to outer, then the middle one's sibling rolled back", function()
      local u, done = unit()
      finally(done) -- a failed case must not leave its locks to the next
      local a = u:begin_nested()
      u:execute("INSERT INTO sp_t VALUES (1)")
      local b = u:begin_nested()
      u:execute("INSERT INTO sp_t VALUES (2)")
      local c = u:begin_nested()
      u:execute("INSERT INTO sp_t VALUES (3)")
      c:commit()
      b:commit()
      local d = u:begin_nested()
      u:execute("INSERT INTO sp_t VALUES (4)")
      d:rollback()
      a:commit()
      u:commit()
      assert.same({1, 2, 3}, rows())
    end)
  end)
end
