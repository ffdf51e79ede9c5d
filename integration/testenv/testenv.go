package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// aptInstall is the command that installs every server used by this package.
const aptInstall = "apt-get install -y --no-install-recommends redis-server redis-tools prosody ngircd jing chromium python3-redis (or run make test as root)"

const (
	// defaultLogTailLines is how many log lines are printed when a test fails.
	defaultLogTailLines = 40
	// stopGrace is how long Stop waits after SIGTERM before sending SIGKILL.
	stopGrace = 5 * time.Second
	// pollInterval is the pause between two readiness probes.
	pollInterval = 20 * time.Millisecond
	// probeTimeout bounds a single readiness probe (connect plus exchange).
	probeTimeout = 2 * time.Second
)

// requireBinary returns the absolute path of the executable name. If it is
// not installed, the test is skipped, or failed when the environment variable
// CI is "true", with a message naming the Debian package to install.
func requireBinary(tb testing.TB, name, debPackage string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// Non-root users often lack the sbin directories in PATH (ngircd lives
	// in /usr/sbin on Debian).
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := fmt.Sprintf("testenv: %s not found in PATH: install the Debian package %q (all servers: %s)",
		name, debPackage, aptInstall)
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s", msg)
	} else {
		tb.Skipf("%s", msg)
	}
	return ""
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	return freePorts(tb, 1)[0]
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago: it listens on 127.0.0.1:0 n times, takes the ports the kernel
// chose and closes the listeners (only after all were opened, so the ports
// are distinct).
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("testenv: allocating a free loopback port: %v", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// loopback returns "127.0.0.1:port".
func loopback(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// process is one server process: started in its own process group with
// stdout and stderr appended to a log file, and stopped by signalling the
// whole group.
type process struct {
	name    string // binary name, for messages
	bin     string // absolute path of the binary
	dir     string // working directory
	logPath string // stdout and stderr are appended here
	// cred, if set, is the user the process is started as.
	cred *syscall.Credential

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait returned
	werr error         // result of cmd.Wait, valid after done is closed
}

// start starts the process with args. It does not wait for readiness.
func (p *process) start(args ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
			// Exited on its own (crash or kill from outside); its wait
			// goroutine is done, so it can be started again.
			p.cmd, p.done, p.werr = nil, nil, nil
		default:
			return fmt.Errorf("%s is already running (pid %d)", p.name, p.cmd.Process.Pid)
		}
	}
	logf, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.dir
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// Against leaks when the test binary itself dies (for example
		// on a -timeout panic). A process that changes its credentials
		// loses this setting, which is why ngircd is started directly
		// as nobody (see StartNgircd).
		Pdeathsig:  syscall.SIGKILL,
		Credential: p.cred,
	}
	// The goroutine that starts the process keeps its OS thread locked
	// until the process has exited: Pdeathsig fires when the thread that
	// forked the child exits, and Go terminates threads whose goroutine
	// exits while locked, which could otherwise kill a healthy server.
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			logf.Close()
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.werr = err
		p.mu.Unlock()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.cmd, p.done = cmd, done
	return nil
}

// exited returns a channel that is closed when the current process exits,
// or nil if no process is running.
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	return p.done
}

// exitErr describes how the process ended; only valid after exited() closed.
func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.werr == nil {
		return errors.New("exit status 0")
	}
	return p.werr
}

// running reports whether the process was started and has not exited.
func (p *process) running() bool {
	ch := p.exited()
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group, waits up to stopGrace for the
// process to exit, then sends SIGKILL to whatever is left of the group and
// waits for the process. It is a no-op if the process is not running.
func (p *process) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	pgid := cmd.Process.Pid // Setpgid: the group id is the leader's pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	timer := time.NewTimer(stopGrace)
	select {
	case <-done:
	case <-timer.C:
	}
	timer.Stop()
	// Also reaps helpers the server may have forked into its group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-done
	p.mu.Lock()
	p.cmd, p.done, p.werr = nil, nil, nil
	p.mu.Unlock()
}

// kill sends SIGKILL to the process group and waits for the process: a
// crash, with no chance to clean up. It is a no-op if it is not running.
func (p *process) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	p.mu.Lock()
	p.cmd, p.done, p.werr = nil, nil, nil
	p.mu.Unlock()
}

// signal sends sig to the process group (SIGSTOP, SIGCONT, ...) without
// waiting.
func (p *process) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
}

// waitReady calls probe until it succeeds, the process exits or timeout
// elapses. Between attempts it waits pollInterval (a retry interval, not a
// guess at the start-up time).
func (p *process) waitReady(timeout time.Duration, probe func() error) error {
	exited := p.exited()
	if exited == nil {
		return fmt.Errorf("%s is not running", p.name)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-exited:
			return fmt.Errorf("%s exited before becoming ready: %v", p.name, p.exitErr())
		default:
		}
		if lastErr = probe(); lastErr == nil {
			// The probe may have reached another process that grabbed
			// the port; make sure ours is still alive.
			select {
			case <-exited:
				return fmt.Errorf("%s exited while becoming ready: %v", p.name, p.exitErr())
			default:
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited before becoming ready: %v (last probe error: %v)", p.name, p.exitErr(), lastErr)
		case <-deadline.C:
			return fmt.Errorf("%s not ready after %v: %v", p.name, timeout, lastErr)
		case <-tick.C:
		}
	}
}

// logTail returns the last n lines of the log file.
func (p *process) logTail(n int) string {
	s, err := tailFile(p.logPath, n)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.logPath, err)
	}
	return s
}

// registerCleanup stops the process when the test ends and, if the test
// failed, logs the tail of its log file.
func (p *process) registerCleanup(tb testing.TB) {
	tb.Cleanup(func() {
		p.stop()
		if tb.Failed() {
			tb.Logf("testenv: last %d lines of %s:\n%s", defaultLogTailLines, p.logPath, p.logTail(defaultLogTailLines))
		}
	})
}

// tailFile returns the last n lines of the file at path, reading it
// backwards in chunks so large logs are cheap.
func tailFile(path string, n int) (string, error) {
	if n <= 0 {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	const chunk = 16 << 10
	var buf []byte
	end := fi.Size()
	for end > 0 {
		start := max(end-chunk, 0)
		b := make([]byte, end-start)
		if _, err := f.ReadAt(b, start); err != nil && err != io.EOF {
			return "", err
		}
		buf = append(b, buf...)
		end = start
		// n lines need n newlines before them (plus a possibly
		// unterminated last line).
		if bytes.Count(bytes.TrimSuffix(buf, []byte("\n")), []byte("\n")) >= n {
			break
		}
	}
	buf = bytes.TrimSuffix(buf, []byte("\n"))
	lines := bytes.Split(buf, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))), nil
}

// makeTraversable sets mode 0755 on dir and on its parent when the parent is
// the per-test directory created by t.TempDir (both are created 0700), so
// that servers dropping privileges (ngircd runs as nobody when started by
// root) can still read their files.
func makeTraversable(tb testing.TB, dir string) {
	tb.Helper()
	paths := []string{dir}
	parent := filepath.Dir(dir)
	if tmp := filepath.Clean(os.TempDir()); parent != tmp && parent != "/" && filepath.Dir(parent) == tmp {
		paths = append(paths, parent)
	}
	for _, p := range paths {
		if err := os.Chmod(p, 0o755); err != nil {
			tb.Fatalf("testenv: chmod %s: %v", p, err)
		}
	}
}

// Require returns the absolute path of the executable name, or skips the
// test (fails it when CI=true) naming the Debian package to install.
func Require(tb testing.TB, name, debPackage string) string {
	tb.Helper()
	return requireBinary(tb, name, debPackage)
}
