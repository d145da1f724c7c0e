-- Settle the entries a consumer holds. The caller says when (Redis ms) it claimed the oldest of
-- the batch: if the consumer has lost no entry (to its visibility timeout, a release, a deleted
-- group) since then, it still holds every entry it claimed and has not settled, so the ids are
-- settled as given, one XACK per 1000 with no per-entry check. Otherwise each owner is checked.
-- ARGV 7..: since-ms, entry ids (comma separated), sequences that have a nack reason (comma
-- separated), then event ids whose sequence the caller does not know.
-- Returns the positions (from 1: entry ids, then event ids) of the entries not held.
local ids, with_reason = split(ARGV[8]), split(ARGV[9])
local k = #ids
local missing = {}
if not exists then
  for i = 1, k + #ARGV - 9 do missing[i] = i end
  return missing
end
if k > 0 then
  local last = math.max(tonumber(redis.call('HGET', expired, consumer) or '-1'),
                        tonumber(redis.call('GET', deleted) or '-1'))
  local since = tonumber(ARGV[7])
  if last < since and since > now_ms() - MARK_TTL then
    for i = 1, k, 1000 do
      redis.call('XACK', glog, gname, unpack(ids, i, math.min(i + 999, k)))
    end
  else
    for i = 1, k do
      if held_by(pending(glog, gname, ids[i]), consumer) then
        redis.call('XACK', glog, gname, ids[i])
      else
        missing[#missing + 1] = i
      end
    end
  end
end
for i = 1, #with_reason, 1000 do
  redis.call('HDEL', reasons, unpack(with_reason, i, math.min(i + 999, #with_reason)))
end
for i = 10, #ARGV do
  local m = seq_for('', ARGV[i])
  if m and held_by(pending(glog, gname, id_of(m)), consumer) then
    redis.call('XACK', glog, gname, id_of(m))
    redis.call('HDEL', reasons, m)
  else
    missing[#missing + 1] = k + i - 9
  end
end
return missing
