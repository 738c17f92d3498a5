-- bench/report.lua TSV META OUT [README...]: the markdown table of a
-- bench/run.sh run, written to OUT and, for each README given, also put
-- between the "<!-- latest-bench:start -->" and "<!-- latest-bench:end -->"
-- lines there (bench/README.md and the top README.md).
--
-- TSV lines: round, workload, system, key, value (key "value" is the
-- workload's figure, others are its extras). Each cell is the median over
-- rounds with min–max; each ratio is the median of the per-round ratios
-- (both systems measured in the same round, minutes apart at most).
local tsv_path, meta_path, out_path = arg[1], arg[2], arg[3]
assert(tsv_path and meta_path and out_path, "usage: report.lua TSV META OUT")

local data = {}    -- data[w][sys][key][round] = number
local errors = {}  -- errors[w][sys] = count
for line in io.lines(tsv_path) do
  local r, w, sys, key, v = line:match("^(%d+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]*)$")
  if r then
    if key == "error" then
      errors[w] = errors[w] or {}
      errors[w][sys] = (errors[w][sys] or 0) + 1
    else
      data[w] = data[w] or {}
      data[w][sys] = data[w][sys] or {}
      data[w][sys][key] = data[w][sys][key] or {}
      data[w][sys][key][tonumber(r)] = tonumber(v)
    end
  end
end
local meta = {}
for line in io.lines(meta_path) do
  local k, v = line:match("^([^\t]+)\t(.*)$")
  if k then meta[k] = v end
end

local SYSTEMS = {"raw", "luasql-5.4", "luasql-jit", "sqla", "scoped-5.4", "scoped-jit"}
local TITLES = {
  raw = "raw C", ["luasql-5.4"] = "LuaSQL 5.4", ["luasql-jit"] = "LuaSQL LuaJIT",
  sqla = "SQLAlchemy 1.4", ["scoped-5.4"] = "**scoped 5.4**", ["scoped-jit"] = "**scoped LuaJIT**",
}

local function series(w, sys, key)
  local t = data[w] and data[w][sys] and data[w][sys][key or "value"]
  return t
end

local function median(list)
  if #list == 0 then return nil end
  table.sort(list)
  local m = #list
  if m % 2 == 1 then return list[(m + 1) / 2] end
  return (list[m / 2] + list[m / 2 + 1]) / 2
end

local function values(t)
  local l = {}
  if t then for _, v in pairs(t) do l[#l + 1] = v end end
  return l
end

local function stats(t)
  local l = values(t)
  if #l == 0 then return nil end
  local med = median(l)
  return med, l[1], l[#l], #l -- median sorts l
end

-- numbers: 3 significant digits, k for thousands
local function num(v, unit)
  if v == nil then return "–" end
  if unit == "rows/s" or unit == "req/s" then
    if v >= 1e6 then return string.format("%.2fM", v / 1e6) end
    if v >= 1e5 then return string.format("%.0fk", v / 1e3) end
    if v >= 1e4 then return string.format("%.1fk", v / 1e3) end
    if v >= 1e3 then return string.format("%.2fk", v / 1e3) end
    return string.format("%.0f", v)
  end
  local a = math.abs(v)
  if unit == "stmts" and math.abs(v - math.floor(v + 0.5)) < 0.005 then
    return string.format("%d", math.floor(v + 0.5))
  end
  if a >= 100 then return string.format("%.0f", v) end
  if a >= 10 then return string.format("%.1f", v) end
  return string.format("%.2f", v)
end

local function cell(w, sys, key, unit)
  local med, lo, hi, nr = stats(series(w, sys, key))
  if med == nil then
    if errors[w] and errors[w][sys] then return "error" end
    return ""
  end
  if nr == 1 or num(lo, unit) == num(hi, unit) then return num(med, unit) end
  return string.format("%s (%s–%s)", num(med, unit), num(lo, unit), num(hi, unit))
end

-- the median over rounds of f(a_r, b_r)
local function ratio(w, a, b, f, key)
  local sa, sb = series(w, a, key), series(w, b, key)
  if not sa or not sb then return nil end
  local l = {}
  for r, va in pairs(sa) do
    local vb = sb[r]
    if vb then l[#l + 1] = f(va, vb) end
  end
  return median(l)
end

-- the same across two workloads: median over rounds of a_r / b_r
local function ratio2(wa, a, wb, b)
  local sa, sb = series(wa, a), series(wb, b)
  if not sa or not sb then return nil end
  local l = {}
  for r, va in pairs(sa) do
    if sb[r] then l[#l + 1] = va / sb[r] end
  end
  return median(l)
end

local function by(x, y) return x / y end
local function x2(v) return string.format("%.2f×", v) end
local OK, MISS = "✅", "❌"

-- the io_wait variants of W2/W2s (issue 19: no target, a comparison): time
-- over blocking scoped's on the same runtime and over raw C's, both measured
-- in the same interleaved slices
local function nb_verdict(wv, base)
  return function(s)
    local q = ratio2(wv, s, base, s)
    local c = ratio2(wv, s, base, "raw")
    if not q then return "" end
    return string.format("%s blocking%s", x2(q), c and string.format("; %s C", x2(c)) or "")
  end
end

-- every row: label, workload, key, unit, and a verdict function giving the
-- target column text and, for a scoped system, the ratio cell
local ROWS = {
  {"W1 checkout + checkin", "w1", nil, "µs", "≤ 1 µs", function(s)
    local v = stats(series("w1", s))
    if not v then return "" end
    local vs = ratio("w1", "sqla", s, by)
    return string.format("%s µs %s%s", num(v), v <= 1 and OK or MISS,
      vs and string.format(" (%.0f× faster than SQLA)", vs) or "")
  end},
  {"W2 `SELECT 1` + fetch, held connection", "w2", nil, "µs", "≤ 1.10× raw C", function(s)
    local q = ratio("w2", s, "raw", by)
    if not q then return "" end
    return string.format("%s C %s", x2(q), q <= 1.10 and OK or MISS)
  end},
  {"W2s seed request (Session, SELECT 1, commit, remove)", "w2s", nil, "µs",
   "≤ 1.15× raw C; ≥ 4× faster than SQLA", function(s)
    local q = ratio("w2s", s, "raw", by)
    local f = ratio("w2s", "sqla", s, by)
    if not q and not f then return "" end
    local parts = {}
    if q then parts[#parts + 1] = string.format("%s C %s", x2(q), q <= 1.15 and OK or MISS) end
    if f then parts[#parts + 1] = string.format("%.1f× faster than SQLA %s", f, f >= 4 and OK or MISS) end
    return table.concat(parts, "; ")
  end},
  {"W2s statements per request (server's counters)", "w2s_count", nil, "stmts", "", nil},
  {"W2 with `io_wait`, cqueues (one coroutine)", "w2_cqueues", nil, "µs", "", nb_verdict("w2_cqueues", "w2")},
  {"W2 with `io_wait`, luv (one coroutine)", "w2_luv", nil, "µs", "", nb_verdict("w2_luv", "w2")},
  {"W2s with `io_wait`, cqueues (one coroutine)", "w2s_cqueues", nil, "µs", "", nb_verdict("w2s_cqueues", "w2s")},
  {"W2s with `io_wait`, luv (one coroutine)", "w2s_luv", nil, "µs", "", nb_verdict("w2s_luv", "w2s")},
  {"W2s with `io_wait`, cqueues: 4 coroutines, pool 4 (time per request)", "w2s_cqueues4", nil, "µs", "",
   nb_verdict("w2s_cqueues4", "w2s")},
  {"W2s with `io_wait`, luv: 4 coroutines, pool 4 (time per request)", "w2s_luv4", nil, "µs", "",
   nb_verdict("w2s_luv4", "w2s")},
  {"W3 fetch 100k rows × 6 cols, every cell touched (LuaSQL: a fresh table per row)", "w3", nil, "rows/s",
   "≥ 0.70× raw C and ≥ LuaSQL", function(s)
    local q = ratio("w3", s, "raw", by)
    local luasql = s == "scoped-jit" and "luasql-jit" or "luasql-5.4"
    local l = ratio("w3", s, luasql, by)
    if not q then return "" end
    local txt = string.format("%s C %s", x2(q), q >= 0.70 and OK or MISS)
    if l then txt = txt .. string.format("; %s LuaSQL %s", x2(l), l >= 1 and OK or MISS) end
    return txt
  end},
  {"W3 streamed: `stream_results` + `iter()`; LuaSQL with its reuse idiom `cur:fetch(row, \"n\")`; raw C's W3",
   "w3stream", nil, "rows/s", "≥ 1.0× LuaSQL (reuse idiom); ≥ 0.70× raw C on LuaJIT", function(s)
    local q = ratio("w3stream", s, "raw", by)
    local luasql = s == "scoped-jit" and "luasql-jit" or "luasql-5.4"
    local l = ratio("w3stream", s, luasql, by)
    if not q then return "" end
    local txt = string.format("%s C%s", x2(q), s == "scoped-jit" and (q >= 0.70 and " " .. OK or " " .. MISS) or "")
    if l then txt = txt .. string.format("; %s LuaSQL reuse %s", x2(l), l >= 1 and OK or MISS) end
    return txt
  end},
  {"W4 10k single-row INSERTs with binds, one transaction", "w4one", nil, "rows/s",
   "time ≤ 1.15× raw C", function(s)
    local q = ratio("w4one", "raw", s, by) -- rate ratio C/scoped = time ratio scoped/C
    if not q then return "" end
    return string.format("%s C %s", x2(q), q <= 1.15 and OK or MISS)
  end},
  {"W4 batch: executemany of 10k rows", "w4batch", nil, "rows/s", "≥ 1.2× SQLA", function(s)
    local q = ratio("w4batch", s, "sqla", by)
    if not q then return "" end
    return string.format("%s SQLA %s", x2(q), q >= 1.2 and OK or MISS)
  end},
  {"W4 batch by hand: one INSERT with 10k `(?,?)` groups via execute", "w4multi", nil, "rows/s", "",
   function(s)
    local q = ratio2("w4multi", s, "w4batch", "sqla")
    if not q then return "" end
    return string.format("%s SQLA executemany", x2(q))
  end},
  {"W5 8 OS threads, shared engine, pool 4 (W2s each)", "w5thr", nil, "req/s", "", nil},
  {"W5 8 OS threads: p99 checkout wait", "w5thr", "p99_wait_us", "µs", "", nil},
  {"W5 200 coroutines, pool 4, pool_wait (W2s + 1 yield)", "w5co", nil, "req/s", "", nil},
  {"W5 200 coroutines: p99 checkout wait", "w5co", "p99_wait_us", "µs", "", nil},
  {"`Session()` on an existing scope", "lookup", nil, "ns", "≤ 100 ns", function(s)
    local v = stats(series("lookup", s))
    if not v then return "" end
    return string.format("%.0f ns %s", v, v <= 100 and OK or MISS)
  end},
  {"proxied call overhead (`Session:get_bind()` − `s:get_bind()`)", "lookup", "proxy_overhead_ns", "ns", "", nil},
}

local function count_cell(sys)
  local q = stats(series("w2s_count", sys))
  if not q then return "" end
  local function part(k, name)
    local v = stats(series("w2s_count", sys, k))
    if v and v > 0.005 then return string.format("%s %s", num(v, "stmts"), name) end
  end
  local parts = {}
  for _, p in ipairs{part("select", "SELECT") or false, part("commit", "COMMIT") or false,
                     part("rollback", "ROLLBACK") or false} do
    if p then parts[#parts + 1] = p end
  end
  return string.format("%s (%s)", num(q, "stmts"), table.concat(parts, " + "))
end

local out = {}
local function emit(s) out[#out + 1] = s end

local head = {"Workload", "unit"}
for _, s in ipairs(SYSTEMS) do head[#head + 1] = TITLES[s] end
head[#head + 1] = "target"
head[#head + 1] = "scoped 5.4 vs target"
head[#head + 1] = "scoped LuaJIT vs target"
emit("| " .. table.concat(head, " | ") .. " |")
local sep = {}
for i = 1, #head do sep[i] = (i == 1 or i == 2 or i >= #head - 2) and "---" or "--:" end
emit("| " .. table.concat(sep, " | ") .. " |")

for _, row in ipairs(ROWS) do
  local label, w, key, unit, target, verdict = row[1], row[2], row[3], row[4], row[5], row[6]
  if data[w] or errors[w] then
    local cells = {label, unit}
    for _, s in ipairs(SYSTEMS) do
      if w == "w2s_count" then cells[#cells + 1] = count_cell(s)
      else cells[#cells + 1] = cell(w, s, key, unit) end
    end
    cells[#cells + 1] = target
    cells[#cells + 1] = verdict and verdict("scoped-5.4") or ""
    cells[#cells + 1] = verdict and verdict("scoped-jit") or ""
    emit("| " .. table.concat(cells, " | ") .. " |")
  end
end

local tbl = table.concat(out, "\n")
io.write(tbl, "\n")

local mode = meta.mode == "busy" and "busy (other CPU kept awake by a SCHED_IDLE busy loop)"
  or "plain (no busy loop)"
local doc = {
  "# scoped benchmarks — latest run",
  "",
  string.format("%s, `make bench`%s: %s round%s, mode %s%s; %ss of measuring, %s%% of the CPU time stolen by the hypervisor meanwhile.",
    meta.date or "?", meta.mode == "plain" and " (--plain)" or "", meta.rounds or "?",
    meta.rounds == "1" and "" or "s", mode, meta.quick == "1" and ", **--quick (smoke test)**" or "",
    meta.elapsed or "?", meta.steal or "?"),
  "",
  "Machine: " .. (meta.cpu or "?") .. ", Linux " .. (meta.kernel or "?") .. "; " .. (meta.pin or "") ..
    (meta.load and "; load " .. meta.load or "") .. ".",
  "MariaDB " .. (meta.server or "?") .. " (throwaway, unix socket for every system); " ..
    (meta.client or "") .. "; " .. (meta.lua or "") .. "; " .. (meta.python or "") .. ".",
  "Code measured: `" .. (meta.commit or "?") .. "`.",
  "",
  tbl,
  "",
  "Cells: median over rounds (min–max). Ratios: median of the per-round ratios, systems measured",
  "in the same round. Time ratios (µs) and rate ratios (rows/s) are both written so that the",
  "target's own wording applies; for W4 one-by-one the ratio is raw C's rate over scoped's (its",
  "time ratio). How each workload is written, per system: bench/README.md.",
  "",
}
local f = assert(io.open(out_path, "w"))
f:write(table.concat(doc, "\n"))
f:close()

for i = 4, #arg do
  local readme_path = arg[i]
  local rf = io.open(readme_path)
  local text = rf and rf:read("a")
  if rf then rf:close() end
  local START, STOP = "<!-- latest-bench:start -->", "<!-- latest-bench:end -->"
  local a = text and text:find(START, 1, true)
  local b = text and text:find(STOP, 1, true)
  if a and b and b > a then
    local body = table.concat(doc, "\n", 3) -- without the title
    text = text:sub(1, a + #START - 1) .. "\n" .. body .. text:sub(b)
    rf = assert(io.open(readme_path, "w"))
    rf:write(text)
    rf:close()
  else
    io.stderr:write("report.lua: no latest-bench markers in " .. readme_path .. "\n")
  end
end
