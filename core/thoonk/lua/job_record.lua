-- Records a finished job's result in the bridge's status record, when the
-- bridge submitted the job (the record exists); keeps the record's TTL.
-- KEYS: record
-- ARGV: result
return fbrecord(KEYS[1], ARGV[1])
