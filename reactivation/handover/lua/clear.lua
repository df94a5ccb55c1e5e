-- Removes this product's pendingAction (after splice.lua), keeping every other member and the key's TTL.
-- KEYS: 1 dialog. ARGV: 1 the action type, 2 the history id ("" = any): only an action of that type (and that
-- row's) is removed. Returns 1 removed, 0 nothing of ours there.
if redis.call('TYPE', KEYS[1])['ok'] ~= 'string' then return 0 end
local rest, dropped = splice(redis.call('GET', KEYS[1]), {['"pendingAction"'] = true}, {})
if rest == nil or dropped == nil then return 0 end
local ok, action = pcall(cjson.decode, dropped:match(':(.*)$'))
if not ok or type(action) ~= 'table' or action['type'] ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and action['reactivationHistoryId'] ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], rest, 'KEEPTTL')
return 1
