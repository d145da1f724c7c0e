-- Replay (back to their group, attempts reset) or purge dead letters: all, or those event ids.
-- KEYS: log dead dead-index groups parts; ARGV: sub sub-base channel replay(1)|purge(0) event-ids...
local log, dead, index, groups, parts = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sub, base, replay = ARGV[1], ARGV[2], ARGV[4] == '1'
local letters = {}
if #ARGV == 4 then
  letters = redis.call('XRANGE', dead, '-', '+')
else
  for i = 5, #ARGV do
    local xid = redis.call('HGET', index, ARGV[i])
    if xid then
      local e = redis.call('XRANGE', dead, xid, xid)
      if #e > 0 then letters[#letters + 1] = e[1] end
    end
  end
end
local n = 0
for _, x in ipairs(letters) do
  local f = {}
  for j = 1, #x[2], 2 do f[x[2][j]] = x[2][j + 1] end
  local group, m = f['group'], f['seq']
  local glog, gname = group_log(log, parts, group), sub .. ':' .. group
  -- an event whose stream entry was trimmed cannot be delivered again: its dead letter stays
  if not (replay and #redis.call('XRANGE', glog, id_of(m), id_of(m)) == 0) then
    redis.call('XDEL', dead, x[1])
    redis.call('HDEL', index, f['event'] or f['id'])
    if redis.call('SISMEMBER', groups, group) == 1 then
      if replay then
        local r = redis.call('XCLAIM', glog, gname, PARKED, 0, id_of(m), 'JUSTID', 'RETRYCOUNT', 0)
        if #r > 0 then
          local gb = base .. ':g:' .. group
          redis.call('HDEL', gb .. ':reasons', m)
          redis.call('ZADD', gb .. ':avail', m, m)
        end
      else
        redis.call('XACK', glog, gname, id_of(m))
      end
    end
    n = n + 1
  end
end
if replay and n > 0 then redis.call('PUBLISH', ARGV[3], '') end
return n
