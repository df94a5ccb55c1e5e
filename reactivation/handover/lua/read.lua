-- Reads one key whatever its type: {type, value in hex or ""}. Hex, because the value may not be UTF-8 and a
-- client that decodes replies would fail on it before we could move it aside.
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'string' then return {t, ''} end
local hex = string.gsub(redis.call('GET', KEYS[1]), '.', function(c) return string.format('%02x', string.byte(c)) end)
return {t, hex}
