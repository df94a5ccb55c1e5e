-- Shared by save.lua and clear.lua, which start with this text (a Redis script cannot load another): the text of
-- a JSON object with some top-level members dropped and others appended. Only strings and nesting are parsed
-- (enough to find where members begin and end); every other byte is copied, so nothing of the admin's is ever
-- decoded and re-encoded (Redis's cjson would turn [] into {} and round big integers).

-- The object's top-level members as {text, quoted key} pairs, or nil when s is not a JSON object.
local function members(s)
  local first = s:find('%S')
  if not first or s:sub(first, first) ~= '{' then return nil end
  local list, depth, start, key, i = {}, 0, first + 1, nil, first
  while true do
    local j = s:find('[{}%[%]",]', i)
    if not j then return nil end
    local c = s:sub(j, j)
    if c == '"' then
      local k = j + 1
      while true do
        local q = s:find('[\\"]', k)
        if not q then return nil end
        if s:sub(q, q) == '"' then k = q; break end
        k = q + 2
      end
      if depth == 1 and key == nil then key = s:sub(j, k) end
      i = k + 1
    elseif c == '{' or c == '[' then
      depth = depth + 1
      i = j + 1
    elseif c == ',' then
      if depth == 1 then
        list[#list + 1] = {s:sub(start, j - 1), key}
        start, key = j + 1, nil
      end
      i = j + 1
    else
      depth = depth - 1
      if depth < 0 then return nil end
      if depth == 0 then
        if c ~= '}' or s:find('%S', j + 1) then return nil end
        list[#list + 1] = {s:sub(start, j - 1), key}
        return list
      end
      i = j + 1
    end
  end
end

-- nil when s is not an object; otherwise the object without the members named in `drop` (quoted keys), with
-- `add` (member texts) appended, and the text of the last member dropped.
local function splice(s, drop, add)
  local list = members(s)
  if list == nil then return nil end
  local kept, dropped = {}, nil
  for _, m in ipairs(list) do
    if m[2] ~= nil and drop[m[2]] then
      dropped = m[1]
    elseif not m[1]:find('^%s*$') then
      kept[#kept + 1] = m[1]
    end
  end
  for _, text in ipairs(add) do kept[#kept + 1] = text end
  return '{' .. table.concat(kept, ',') .. '}', dropped
end
