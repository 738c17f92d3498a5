-- The friendly half of Result: C (csrc/lua/lresult.c) stores result sets and
-- builds rows; the methods here are SQLAlchemy's Result API on top.
local core = require "scoped.core"
local exc = require "scoped.exc"

local R = core.result_methods

--- The first row, or nil; the rest is discarded (SQLAlchemy closes it).
function R:first()
  local row = self:fetchone()
  self:_soft_close()
  return row
end

function R:one_or_none()
  local rows = self:fetchmany(2)
  self:_soft_close()
  if rows[2] then
    exc.raise("MultipleResultsFound", "Multiple rows were found when one or none was required")
  end
  return rows[1]
end

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
function R:scalar()
  local row = self:first()
  if row then return row[1] end
  return nil
end

function R:scalar_one() return self:one()[1] end

function R:scalar_one_or_none()
  local row = self:one_or_none()
  if row then return row[1] end
  return nil
end

--- A generic-for iterator over the remaining rows.
function R:iter()
  return function() return self:fetchone() end
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
  -- methods work with either v:all() or v.all()
  return setmetatable({}, {__index = function(_, k)
    local f = v[k]
    if f then return function(_, ...) return f(nil, ...) end end
  end})
end

function R:scalars(index)
  index = index or 1
  if type(index) ~= "number" and type(index) ~= "string" then
    exc.raise("ArgumentError", "scalars: index must be a column position or name")
  end
  return view(self, function(row) return row[index] end)
end

function R:mappings()
  return view(self, function(row) return row:_asdict() end)
end

return R
