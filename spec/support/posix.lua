-- fork for the specs on both runtimes: lua-posix where Debian has it (the
-- Lua 5.1 ABI: LuaJIT), else spec_posix (spec/support/spec_posix.c, built
-- by `make` next to the core). require "support.posix" -> {fork, _exit, wait}
-- with wait(pid) -> "exited", status | "killed", signal.
local ok, unistd = pcall(require, "posix.unistd")
if ok then
  local pwait = require "posix.sys.wait"
  return {
    fork = unistd.fork,
    _exit = unistd._exit,
    wait = function(pid)
      local _, how, status = pwait.wait(pid)
      return how, status
    end,
    via = "lua-posix",
  }
end
local helper = require "spec_posix"
return {fork = helper.fork, _exit = helper._exit, wait = helper.wait, via = "spec_posix"}
