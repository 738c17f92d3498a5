-- bench/cgdiff.lua SMALL.out BIG.out DOPS [TOP]
--
-- Instructions per operation from two callgrind runs of the same workload
-- that differ only by DOPS timed operations: (BIG - SMALL) / DOPS, for the
-- whole program and per function, so that start-up, module loading and
-- connecting cancel out. Prints the total, the TOP functions by their own
-- (self) cost, scoped's own C functions (csrc/) by inclusive cost and the
-- self costs summed per object file (the interpreter, libc, libmariadb,
-- scoped's core.so, an event loop's library, ...).
local small, big, dops, top = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4] or 25)
assert(small and big and dops, "usage: cgdiff.lua SMALL.out BIG.out DOPS [TOP]")

local objs = {} -- function -> object file name, where callgrind knows it

local function annotate(file, inclusive, by_obj)
  local cmd = string.format("callgrind_annotate --auto=no --threshold=100 --inclusive=%s %q 2>/dev/null",
    inclusive and "yes" or "no", file)
  local p = assert(io.popen(cmd))
  local t, total = {}, nil
  for line in p:lines() do
    local num, rest = line:match("^%s*([%d,]+)%s+%([%s%d.]+%%%)%s+(.+)$")
    if num then
      local v = tonumber((num:gsub(",", "")))
      if rest:match("PROGRAM TOTALS") then
        total = v
      else
        -- "file:function [object]"; one function may be listed several
        -- times (as file and as ???, inlined parts): self costs add up,
        -- inclusive ones overlap (keep the largest)
        local fn, obj = rest:match("^(.-)%s+%[(.-)%]$")
        fn = fn or rest
        local key = fn:gsub("^.*/", "")
        if obj then objs[key] = obj:match("([^/]+)$") end
        if by_obj then
          local o = obj and obj:match("([^/]+)$") or "?"
          by_obj[o] = (by_obj[o] or 0) + v
        end
        if inclusive then
          if v > (t[key] or 0) then t[key] = v end
        else
          t[key] = (t[key] or 0) + v
        end
      end
    end
  end
  p:close()
  return t, total
end

local s_obj, b_obj = {}, {}
local s_self, s_total = annotate(small, false, s_obj)
local b_self, b_total = annotate(big, false, b_obj)
local s_inc = annotate(small, true)
local b_inc = annotate(big, true)

local function diff(a, b)
  local d = {}
  for k, v in pairs(b) do
    d[#d + 1] = {k .. "  [" .. (objs[k] or "?") .. "]", (v - (a[k] or 0)) / dops}
  end
  table.sort(d, function(x, y) return x[2] > y[2] end)
  return d
end

local per_op = (b_total - s_total) / dops
print(string.format("instructions per operation: %.0f", per_op))
print("")
print(string.format("top %d by self cost (Ir/op, share):", top))
for i, e in ipairs(diff(s_self, b_self)) do
  if i > top or e[2] < per_op * 0.003 then break end
  print(string.format("  %9.0f  %5.1f%%  %s", e[2], 100 * e[2] / per_op, e[1]))
end
print("")
print("scoped's C functions (csrc/), inclusive (Ir/op, share):")
local shown = 0
for _, e in ipairs(diff(s_inc, b_inc)) do
  if e[1]:match("%[core%.so%]") and e[2] >= 1 and shown < top then
    shown = shown + 1
    print(string.format("  %9.0f  %5.1f%%  %s", e[2], 100 * e[2] / per_op, e[1]))
  end
end
print("")
print("self cost by object file (Ir/op, share):")
for _, e in ipairs(diff(s_obj, b_obj)) do
  if e[2] < per_op * 0.003 then break end
  print(string.format("  %9.0f  %5.1f%%  %s", e[2], 100 * e[2] / per_op, (e[1]:gsub("  %[.*%]$", ""))))
end
