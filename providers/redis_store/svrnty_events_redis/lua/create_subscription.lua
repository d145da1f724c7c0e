-- KEYS: log meta subs; ARGV: sub. A new subscription starts at the oldest retained event.
redis.call('HSETNX', KEYS[3], ARGV[1], fmt(first_seq(KEYS[1], KEYS[2])))
return 1
