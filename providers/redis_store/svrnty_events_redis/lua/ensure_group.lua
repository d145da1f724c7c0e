-- Create the group if missing, on the key its claims read (ARGV 8: '' = the main log, a
-- partition, or '-' when the caller did not say: the main log for a new group, an existing one
-- stays where it is), its cursor before ARGV 7 (a sequence, '' = the subscription's start).
-- ARGV 9: the event types and correlation id its claims pass, for retention (JSON {"t": [...],
-- "c": "..."}; '' = none, '-' = not said).
local start, want = nil, ARGV[8]
if ARGV[7] ~= '' then start = tonumber(ARGV[7]) end
if ARGV[9] == '' then
  redis.call('HDEL', filters, group)
elseif ARGV[9] ~= '-' then
  redis.call('HSET', filters, group, ARGV[9])
end
if want == '-' then
  if exists then return 0 end
  want = ''
end
bind(want, start)
return 1
