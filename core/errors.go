package core

import "errors"

// Errors of the runtime; the schema's own errors (not found, wrong type,
// invalid names) are in package thoonk. Test for them with errors.Is.
var (
	// ErrDenied means the ACL does not allow the actor the operation.
	ErrDenied = errors.New("not allowed")
	// ErrTooLarge means a payload is over the configured limit.
	ErrTooLarge = errors.New("too large")
)
