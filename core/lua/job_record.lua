-- Records a finished job's result in the bridge's status record, when the
-- bridge submitted the job (the record exists); keeps the record's TTL.
-- KEYS: record
-- ARGV: result
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'result', ARGV[1], 'finished_at', fbnow())
return 1
