package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bridgeReadyTimeout bounds the bridge's start (Redis checks, HTTP bind).
const bridgeReadyTimeout = 30 * time.Second

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// BridgeBinary builds ./cmd/bridge once per test process and returns the
// binary's path. The build goes to a directory under os.TempDir() named
// after the process, removed by RemoveBuilds.
func BridgeBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("feedbridge-test-%d", os.Getpid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "bridge")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/bridge")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/bridge: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return buildPath
}

// RemoveBuilds deletes the binary BridgeBinary built; call it from TestMain
// after m.Run.
func RemoveBuilds() {
	if buildPath != "" {
		_ = os.RemoveAll(filepath.Dir(buildPath))
	}
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return loopback(freePort(tb))
}

// Bridge is the built feedbridge binary running with a test config.
type Bridge struct {
	// ConfigPath is the config file the bridge runs with.
	ConfigPath string
	// Dir is the bridge's working directory; bridge.log holds its output.
	Dir string
	// HTTPAddr is the config's http.listen, as given to StartBridge.
	HTTPAddr string

	tb   testing.TB
	proc *process
}

// StartBridge writes config to a temp dir, starts the bridge binary with it
// and waits until its HTTP listener answers /healthz (httpAddr must be the
// config's http.listen; empty means wait for the "feedbridge running" log
// line instead). The bridge is stopped when the test ends, and its log
// tail printed if the test failed.
func StartBridge(tb testing.TB, config, httpAddr string) *Bridge {
	tb.Helper()
	bin := BridgeBinary(tb)
	dir := tb.TempDir()
	b := &Bridge{ConfigPath: filepath.Join(dir, "bridge.yaml"), Dir: dir, HTTPAddr: httpAddr, tb: tb}
	if err := os.WriteFile(b.ConfigPath, []byte(config), 0o600); err != nil {
		tb.Fatal(err)
	}
	b.proc = &process{name: "bridge", bin: bin, dir: dir, logPath: filepath.Join(dir, "bridge.log")}
	b.proc.registerCleanup(tb)
	b.Start()
	return b
}

// Start starts the bridge (again) and waits until it is up.
func (b *Bridge) Start() {
	b.tb.Helper()
	from := len(b.Log()) // a restarted bridge's own lines follow
	if err := b.proc.start("-config", b.ConfigPath); err != nil {
		b.tb.Fatal(err)
	}
	probe := func() error {
		if log := b.Log(); len(log) < from || !strings.Contains(log[from:], "feedbridge running") {
			return fmt.Errorf("not running yet")
		}
		if b.HTTPAddr == "" {
			return nil
		}
		resp, err := http.Get("http://" + b.HTTPAddr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := b.proc.waitReady(bridgeReadyTimeout, probe); err != nil {
		b.tb.Fatalf("bridge: %v\n%s", err, b.LogTail(40))
	}
}

// Terminate sends SIGTERM and waits for the bridge to exit, returning how it
// ended (nil for exit status 0). It fails the test if the bridge has not
// exited within timeout.
func (b *Bridge) Terminate(timeout time.Duration) error {
	b.tb.Helper()
	b.BeginTerminate()
	return b.Wait(timeout, "SIGTERM")
}

// BeginTerminate sends SIGTERM and returns at once: a test times what
// happens while the bridge shuts down, then calls Wait.
func (b *Bridge) BeginTerminate() {
	b.tb.Helper()
	b.send(syscall.SIGTERM)
}

// Kill stops the bridge at once with SIGKILL to its process group, as a
// crash would: nothing in hand is finished or given back.
func (b *Bridge) Kill() {
	b.tb.Helper()
	b.send(syscall.SIGKILL)
	_ = b.Wait(10*time.Second, "SIGKILL")
}

// send sends sig to the bridge (SIGKILL to its whole process group).
func (b *Bridge) send(sig syscall.Signal) {
	b.tb.Helper()
	b.proc.mu.Lock()
	cmd := b.proc.cmd
	b.proc.mu.Unlock()
	if cmd == nil {
		b.tb.Fatal("bridge is not running")
	}
	pid := cmd.Process.Pid
	if sig == syscall.SIGKILL {
		pid = -pid // Setpgid: the group's id is the bridge's pid
	}
	_ = syscall.Kill(pid, sig)
}

// Wait waits for the bridge to exit after the signal named by what,
// within timeout, and returns how it ended (nil for exit status 0).
func (b *Bridge) Wait(timeout time.Duration, what string) error {
	b.tb.Helper()
	done := b.proc.exited()
	if done == nil {
		b.tb.Fatal("bridge is not running")
	}
	select {
	case <-done:
	case <-time.After(timeout):
		b.tb.Fatalf("bridge did not exit within %v of %s", timeout, what)
	}
	b.proc.mu.Lock()
	err := b.proc.werr
	b.proc.cmd, b.proc.done, b.proc.werr = nil, nil, nil
	b.proc.mu.Unlock()
	return err
}

// Stop stops the bridge (SIGTERM, then SIGKILL after a grace period).
func (b *Bridge) Stop() { b.proc.stop() }

// Freeze stops the bridge with SIGSTOP (a process paused by the system: its
// connections stay open); Thaw resumes it with SIGCONT.
func (b *Bridge) Freeze() { b.proc.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen bridge.
func (b *Bridge) Thaw() { b.proc.signal(syscall.SIGCONT) }

// Running reports whether the bridge process is running.
func (b *Bridge) Running() bool { return b.proc.running() }

// Restart stops the bridge and starts it again with the same config.
func (b *Bridge) Restart() {
	b.tb.Helper()
	b.proc.stop()
	b.Start()
}

// Log returns the bridge's whole output so far.
func (b *Bridge) Log() string {
	data, _ := os.ReadFile(b.proc.logPath)
	return string(data)
}

// LogTail returns the last n lines of the bridge's output.
func (b *Bridge) LogTail(n int) string { return b.proc.logTail(n) }

// WaitLog waits until the bridge's output contains s.
func (b *Bridge) WaitLog(s string, timeout time.Duration) {
	b.tb.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(b.Log(), s) {
		if time.Now().After(deadline) {
			b.tb.Fatalf("bridge log never showed %q; tail:\n%s", s, b.LogTail(30))
		}
		time.Sleep(pollInterval)
	}
}
