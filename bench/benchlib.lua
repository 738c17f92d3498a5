-- What the Lua bench programs share (bench/scoped_bench.lua,
-- bench/luasql_bench.lua, bench/w3_floor.lua): the driver of the sliced
-- workloads and W3's way of touching every cell.
local M = {}

-- the sliced workloads whose figure is microseconds per op (W2, W2s and
-- their variants: w2_cqueues, w2s_luv4, w2s_core, ...); the others' is ops
-- per second
local PER_OP_US = setmetatable({}, {__index = function(_, w) return w:match("^w2") ~= nil end})

--- Runs a sliced workload and exits. slice(k) -> ops runs k iterations
--- (timed here); after() is the untimed clean-up after each slice, or nil.
--- opts: now (a clock in seconds), n (iterations; nil when serving),
--- serving (the bench/interleave.py protocol: READY, then one
--- "SLICE <seconds> <ops>" per "<k>" line read), warm (a warm-up before the
--- one timed run: n/10 + 100 iterations for W2/W2s, one fetch for W3,
--- none for W4, which starts on an empty table), counters (optional: a
--- function returning a table of counts, e.g. io_wait calls; the one timed
--- run then also prints "EXTRA <name> <count>" and "EXTRA <name>_per_op
--- <count/ops>" of what each count grew during it).
function M.run_sliced(workload, slice, after, opts)
  local now = opts.now
  local function timed(k)
    local t0 = now()
    local ops = slice(k)
    local dt = now() - t0
    if after then after() end
    return dt, ops
  end
  if opts.serving then
    -- The loop between slices allocates nothing (io.read("n") and
    -- io.write of numbers make no Lua string), so that a collection a
    -- slice's allocations made due starts at the next slice's first
    -- allocation, timed, not in the gap (only after(), W4's untimed
    -- TRUNCATE, allocates there). With a string per line, an experiment
    -- that paused the collector while decoding a fetch had its deferred
    -- collection fall in the gap: W3 on Lua 5.4 read 0.82x raw C in slices
    -- (0.65x with this loop, 0.55x without the pause) and was no faster
    -- than without the pause in one long timed run of 20 fetches.
    io.write("READY\n"); io.flush()
    while true do
      local k = io.read("n")
      if not k or k <= 0 then break end
      local dt, ops = timed(k)
      io.write("SLICE ", dt, " ", ops, "\n"); io.flush()
    end
  else
    local n = opts.n
    if opts.warm then
      if workload == "w3" then timed(1)
      elseif PER_OP_US[workload] then timed(math.floor(n / 10) + 100) end
    end
    local c0 = opts.counters and opts.counters()
    local dt, ops = timed(n)
    if PER_OP_US[workload] then
      io.write(string.format("RESULT %.3f\n", dt * 1e6 / ops))
    else
      io.write(string.format("RESULT %.0f\n", ops / dt))
    end
    if c0 then
      local names = {}
      for name, c1 in pairs(opts.counters()) do names[#names + 1] = name; c0[name] = c1 - c0[name] end
      table.sort(names)
      for _, name in ipairs(names) do
        io.write(string.format("EXTRA %s %d\nEXTRA %s_per_op %.3f\n", name, c0[name], name, c0[name] / ops))
      end
    end
  end
  os.exit(0)
end

--- W3's reading of a fetched list of rows {id, name, score, big, created,
--- note}: the numbers summed, the strings' lengths taken, the NULL tested
--- against null. Returns the row count.
function M.touch_w3(rows, null)
  local isum, dsum, bytes = 0, 0.0, 0
  for i = 1, #rows do
    local r = rows[i]
    local id, name, score, big, created, note = r[1], r[2], r[3], r[4], r[5], r[6]
    isum = isum + id + big
    dsum = dsum + score
    bytes = bytes + #name + #created
    if note ~= null then bytes = bytes + #note else bytes = bytes + 1 end
  end
  return #rows
end

return M
