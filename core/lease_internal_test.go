package core

// LeaseKeys exposes the lease keys to the external tests.
func LeaseKeys(name string) []string { return leaseKeys(name) }
