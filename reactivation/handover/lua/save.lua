-- The hand-over of one sent message, all at once (after splice.lua).
-- KEYS: 1 dialog, 2 messages, 3 client card, 4 where a broken dialog is moved, 5 the history row's marker.
-- ARGV: 1 the pendingAction member, 2 ttl ms, 3 message item, 4 max messages, 5 the lastReactivationAt member,
--       6 the reactivationCampaign member, 7 lastReactivationAt, 8 reactivationCampaign, 9 corrupt ttl ms,
--       10 "1" to replace a dialog that is not an object, 11 its Redis type and 12 its value as read.
-- Returns {'done'} (this row was handed over before), {'conflict'} (the dialog is not what was read; nothing
-- written) or {'ok', moved 0/1, messages status, client card status}.
-- Every check comes before the first write: a script that fails half-way keeps its earlier writes.
if redis.call('EXISTS', KEYS[5]) == 1 then return {'done'} end
local dtype = redis.call('TYPE', KEYS[1])['ok']
local ttl = tonumber(ARGV[2])
local moved = 0
local dialog = nil
if ARGV[10] == '1' then
  if dtype ~= ARGV[11] then return {'conflict'} end
  if dtype == 'string' and redis.call('GET', KEYS[1]) ~= ARGV[12] then return {'conflict'} end
  dialog = '{' .. ARGV[1] .. '}'
  moved = 1
elseif dtype == 'none' then
  dialog = '{' .. ARGV[1] .. '}'
elseif dtype == 'string' then
  dialog = splice(redis.call('GET', KEYS[1]), {['"pendingAction"'] = true}, {ARGV[1]})
  if dialog == nil then return {'conflict'} end
else
  return {'conflict'}
end
local ctype = redis.call('TYPE', KEYS[3])['ok']
local card = nil
if ctype == 'string' then
  card = splice(redis.call('GET', KEYS[3]), {['"lastReactivationAt"'] = true, ['"reactivationCampaign"'] = true},
                {ARGV[5], ARGV[6]})
end
local mtype = redis.call('TYPE', KEYS[2])['ok']

if moved == 1 then
  redis.call('RENAME', KEYS[1], KEYS[4])
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[9]))
end
local dttl = redis.call('PTTL', KEYS[1])
if dttl == -1 or dttl > ttl then
  redis.call('SET', KEYS[1], dialog, 'KEEPTTL')
else
  redis.call('SET', KEYS[1], dialog, 'PX', ttl)
end

local mstatus = 'wrongtype'
if mtype == 'none' or mtype == 'list' then
  redis.call('RPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
  local mttl = redis.call('PTTL', KEYS[2])
  if mtype == 'none' or (mttl >= 0 and mttl < ttl) then redis.call('PEXPIRE', KEYS[2], ttl) end
  mstatus = 'appended'
end

local cstatus = 'absent'
if ctype == 'hash' then
  redis.call('HSET', KEYS[3], 'lastReactivationAt', ARGV[7], 'reactivationCampaign', ARGV[8])
  cstatus = 'hash'
elseif ctype == 'string' then
  if card ~= nil then
    redis.call('SET', KEYS[3], card, 'KEEPTTL')
    cstatus = 'json'
  else
    cstatus = 'invalid'
  end
elseif ctype ~= 'none' then
  cstatus = 'wrongtype'
end

redis.call('SET', KEYS[5], '1', 'PX', ttl)
return {'ok', moved, mstatus, cstatus}
