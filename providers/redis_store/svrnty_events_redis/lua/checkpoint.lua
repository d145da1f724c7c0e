-- Save a projection's position by compare-and-set: the hash of checkpoints maps a projection's
-- name to its position (the next sequence it reads; absent = 0).
-- KEYS: checkpoints; ARGV: name, position, expected ('' = set whatever is saved).
-- Returns 1 if saved, 0 if the saved position is not the expected one.
local saved = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if ARGV[3] ~= '' and saved ~= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
