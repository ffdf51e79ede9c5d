// Package testenv starts real server processes (Redis, Redis Cluster,
// Prosody and ngIRCd) for integration tests and benchmarks.
//
// Every helper takes a testing.TB, so it can be used from tests and
// benchmarks alike. A helper:
//
//   - looks up the server binary and skips the test (or fails it when the
//     environment variable CI is "true") if it is not installed, naming the
//     Debian package that provides it;
//   - allocates free ports on 127.0.0.1 (never fixed ports, never
//     non-loopback addresses) and keeps all state in t.TempDir();
//   - starts the server in its own process group and waits until it is
//     ready by connecting to it and completing a minimal protocol exchange,
//     never by sleeping;
//   - registers a t.Cleanup that stops the whole process group and, if the
//     test failed, logs the tail of the server's log file.
//
// The returned values can be stopped and started again on the same ports
// (Stop, Start, Restart) for reconnection tests, and expose the server log
// through LogTail.
//
// Methods that report errors do so through the testing.TB passed to the
// Start function (with Fatalf), so like t.Fatalf itself they must be called
// from the goroutine running the test or benchmark.
//
// On Debian the servers are installed with
//
//	apt-get install -y --no-install-recommends redis-server redis-tools prosody ngircd jing
//
// (scripts/test-deps.sh, run by `make test`, installs them when missing.)
package testenv
