-- An LDoc filter (`ldoc --filter ldoc_names.print .`): prints one line per
-- documented name, "container<TAB>name", for spec/docs_spec.lua. The
-- container is the module ("scoped.engine"), the class or table the name
-- belongs to ("Engine", "options"); a @type's or @table's fields count as
-- its names. Items marked @local are left out, as LDoc leaves them out of
-- the HTML.
local M = {}

function M.print(modules)
  local out = {}
  local function put(container, name) out[#out + 1] = container .. "\t" .. name end
  for _, m in ipairs(modules) do
    for _, it in ipairs(m.type == "topic" and {} or m.items) do
      if not (it.tags and it.tags["local"]) then
        local name = it.name
        if it.type == "table" then
          local class, member = name:match("^(.-)%.([^.]+)$")
          if class then put(class, member) else put(m.name, name) end
          for _, f in ipairs(it.params or {}) do put(name, f) end
        else
          local class, member = name:match("^(.-)[:.]([^:.]+)$")
          if class then put(class, member) else put(m.name, name) end
        end
      end
    end
  end
  io.write(table.concat(out, "\n"), "\n")
end

return M
