--- The friendly half of Result: C (csrc/lua/lresult.c, lstream.c for a streaming
-- one) stores result sets and builds rows; the methods here are SQLAlchemy's Result API on top.
--
--     local r = conn:execute("SELECT id, name FROM t WHERE id IN :ids", {ids = {1, 2}})
--     for row in r:iter() do print(row.id, row[2]) end
--
-- Every row is decoded when `execute` returns: a Result is plain Lua data,
-- readable after its connection went back to the pool. Types: integers are
-- Lua integers (BIGINT UNSIGNED above 2^63-1, and on LuaJIT anything beyond
-- 2^53, is a string); FLOAT and DOUBLE numbers; DECIMAL an exact string;
-- dates and times the server's text; BLOB, TEXT, JSON strings; NULL is
-- `scoped.null`.
-- @module scoped.result
local core = require "scoped.core"
local exc = require "scoped.exc"

local R = core.result_methods

--- What a statement returns (SQLAlchemy's CursorResult).
-- @type Result

--- (integer) rows matched or changed (executemany: the total; -1 when unknown;
-- a streaming Result: -1 until the end of its rows is read, then their count)
-- @field rowcount

--- (integer) the AUTO_INCREMENT id of the first row inserted
-- @field lastrowid

--- (boolean) whether the statement returned a result set
-- @field returns_rows

--- (true|nil) true on a streaming Result (`stream_results`): rows are read
-- off the connection as they are asked for, and until it is read to its
-- end or closed its connection is busy
-- @field streaming

--- (integer|nil) a streaming Result's `yield_per` execution option
-- @field yield_per

--- The next row, or nil. (In C, as are fetchmany, fetchall, all, keys, nextset and close.)
-- @function Result:fetchone
-- @treturn Row|nil

--- Up to n more rows.
-- @function Result:fetchmany
-- @tparam integer n
-- @treturn {Row,...}

--- Every remaining row.
-- @function Result:fetchall
-- @treturn {Row,...}

--- Every remaining row (on a fresh Result, its list itself).
-- @function Result:all
-- @treturn {Row,...}

--- The column names.
-- @function Result:keys
-- @treturn {string,...}

--- Moves to the next result set of a CALL that returned several (a
-- streaming Result reads and drops the rest of the current one first).
-- @function Result:nextset
-- @treturn boolean whether there was one

--- Discards the remaining rows; `rowcount` and `lastrowid` stay readable.
-- @function Result:close

-- the methods written in C check their self there (scl_check_self)
local in_c = {}
for k in pairs(R) do in_c[k] = true end

--- The first row, or nil; the rest is discarded (SQLAlchemy closes it).
-- @treturn Row|nil
-- @function Result:first
function R:first()
  local row = self:fetchone()
  self:_soft_close()
  return row
end

--- The one row, or nil when there is none.
-- @treturn Row|nil
-- @raise MultipleResultsFound
-- @function Result:one_or_none
function R:one_or_none()
  local rows = self:fetchmany(2)
  self:_soft_close()
  if rows[2] then
    exc.raise("MultipleResultsFound", "Multiple rows were found when one or none was required")
  end
  return rows[1]
end

--- Exactly one row.
-- @treturn Row
-- @raise NoResultFound, MultipleResultsFound
-- @function Result:one
function R:one()
  local rows = self:fetchmany(2)
  self:_soft_close()
  if not rows[1] then
    exc.raise("NoResultFound", "No row was found when one was required")
  elseif rows[2] then
    exc.raise("MultipleResultsFound", "Multiple rows were found when exactly one was required")
  end
  return rows[1]
end

--- The first column of the first row, or nil when there is no row. A NULL
--- is scoped.null, so that "no row" and "NULL" stay apart.
-- @function Result:scalar
function R:scalar()
  local row = self:first()
  if row then return row[1] end
  return nil
end

--- The first column of exactly one row.
-- @raise NoResultFound, MultipleResultsFound
-- @function Result:scalar_one
function R:scalar_one() return self:one()[1] end

--- The first column of the one row, or nil when there is none.
-- @raise MultipleResultsFound
-- @function Result:scalar_one_or_none
function R:scalar_one_or_none()
  local row = self:one_or_none()
  if row then return row[1] end
  return nil
end

--- A generic-for iterator over the remaining rows (of the current result set).
--
--     for row in result:iter() do ... end
-- @function Result:iter
function R:iter()
  if self._iter then return self:_iter() end -- a streaming Result's, made in C
  return function() return self:fetchone() end
end

--- An iterator of lists of up to n rows, for a generic for; it ends after
-- the last rows. On a streaming Result (`stream_results`) each list is
-- read off the connection when the loop asks for it.
--
--     for rows in result:partitions(500) do ... end
-- @function Result:partitions
-- @tparam[opt] integer n rows per list (default: the streaming Result's
-- `yield_per`, else 1000)
function R:partitions(n)
  if n == nil then n = self.yield_per or 1000 end
  if type(n) ~= "number" or n < 1 or n ~= math.floor(n) then
    exc.raise("ArgumentError", "partitions: size must be a positive integer")
  end
  return function()
    local rows = self:fetchmany(n)
    if rows[1] ~= nil then return rows end
    return nil
  end
end

-- ScalarResult and MappingResult: views that pick one column, or turn each
-- row into a plain {name = value} table.
local function view(result, convert)
  local v = {}
  function v.fetchone()
    local row = result:fetchone()
    return row and convert(row)
  end
  function v.all()
    local rows = result:fetchall()
    for i = 1, #rows do rows[i] = convert(rows[i]) end
    return rows
  end
  v.fetchall = v.all
  function v.fetchmany(_, n)
    local rows = result:fetchmany(n)
    for i = 1, #rows do rows[i] = convert(rows[i]) end
    return rows
  end
  function v.first()
    local row = result:first()
    return row and convert(row)
  end
  function v.one() return convert(result:one()) end
  function v.one_or_none()
    local row = result:one_or_none()
    return row and convert(row)
  end
  function v.iter() return function() return v.fetchone() end end
  function v.partitions(_, n)
    local it = result:partitions(n)
    return function()
      local rows = it()
      if rows then
        for i = 1, #rows do rows[i] = convert(rows[i]) end
      end
      return rows
    end
  end
  -- methods work with either v:all() or v.all()
  return setmetatable({}, {__index = function(_, k)
    local f = v[k]
    if f then return function(_, ...) return f(nil, ...) end end
  end})
end

--- A view giving one column of each row.
-- @tparam[opt=1] integer|string index the column's position or name
-- @treturn ScalarResult
-- @function Result:scalars
function R:scalars(index)
  index = index or 1
  if type(index) ~= "number" and type(index) ~= "string" then
    exc.raise("ArgumentError", "scalars: index must be a column position or name")
  end
  return view(self, function(row) return row[index] end)
end

--- A view giving each row as a plain `{name = value}` table.
-- @treturn MappingResult
-- @function Result:mappings
function R:mappings()
  return view(self, function(row) return row:_asdict() end)
end

--- A row: `row[i]`, `row.colname`, `#row`; `row._fields` is the list of
-- column names and `row:_asdict()` a `{name = value}` table. Rows of one
-- statement share one metatable.
-- @type Row

--- ({string,...}) the column names
-- @field _fields

--- A `{name = value}` copy.
-- @function Row:_asdict
-- @treturn table

--- `Result:scalars`: one column of each row. Its methods work with `:` and `.`.
-- @type ScalarResult

--- The next value, or nil.
-- @function ScalarResult:fetchone

--- Up to n more values.
-- @function ScalarResult:fetchmany
-- @tparam integer n

--- Every remaining value.
-- @function ScalarResult:all

--- Every remaining value.
-- @function ScalarResult:fetchall

--- The first value, or nil.
-- @function ScalarResult:first

--- Exactly one value.
-- @function ScalarResult:one

--- One value or nil.
-- @function ScalarResult:one_or_none

--- A generic-for iterator.
-- @function ScalarResult:iter

--- Lists of up to n values (see `Result:partitions`).
-- @function ScalarResult:partitions
-- @tparam[opt] integer n

--- `Result:mappings`: each row as a `{name = value}` table. Its methods
-- work with `:` and `.`.
-- @type MappingResult

--- The next row as a table, or nil.
-- @function MappingResult:fetchone

--- Up to n more.
-- @function MappingResult:fetchmany
-- @tparam integer n

--- Every remaining row.
-- @function MappingResult:all

--- Every remaining row.
-- @function MappingResult:fetchall

--- The first, or nil.
-- @function MappingResult:first

--- Exactly one.
-- @function MappingResult:one

--- One or nil.
-- @function MappingResult:one_or_none

--- A generic-for iterator.
-- @function MappingResult:iter

--- Lists of up to n rows as tables (see `Result:partitions`).
-- @function MappingResult:partitions
-- @tparam[opt] integer n

-- the ones above check it with one call more (exc._colon_methods)
-- (the Lua ones, unchecked, also serve scoped/nonblocking.lua's streaming
-- Result, whose self is a table of its own)
R._lua_methods = exc._colon_methods(R, "Result", core.result_mt, in_c, core.stream_result_mt)

return R
