package testenv

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ---------------------------------------------------------------- Redis

// respConn is a minimal RESP client for tests.
type respConn struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialRESP(t *testing.T, addr string) *respConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &respConn{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// do sends a command as a RESP array and returns the reply: simple strings
// as is, errors prefixed with "-", bulk strings as their content and the
// nil bulk string as "(nil)".
func (c *respConn) do(args ...string) string {
	c.t.Helper()
	if err := c.conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.conn.Write([]byte(b.String())); err != nil {
		c.t.Fatalf("write %v: %v", args, err)
	}
	line, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read reply to %v: %v", args, err)
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case line == "$-1":
		return "(nil)"
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			c.t.Fatalf("bad bulk header %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.br, buf); err != nil {
			c.t.Fatalf("read bulk: %v", err)
		}
		return string(buf[:n])
	case strings.HasPrefix(line, "+"), strings.HasPrefix(line, ":"):
		return line[1:]
	default:
		return line
	}
}

func pidOf(t *testing.T, p *process) int {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		t.Fatalf("%s: not running", p.name)
	}
	return p.cmd.Process.Pid
}

// assertGone fails if a process with pid still exists (and is not a zombie).
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		state, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		t.Errorf("process %d still exists after Stop (kill: %v, stat: %s)", pid, err, state)
	}
}

func TestRedis(t *testing.T) {
	r := StartRedis(t)
	if want := "redis://" + r.Addr + "/0"; r.URL != want {
		t.Errorf("URL = %q, want %q", r.URL, want)
	}
	if !strings.HasPrefix(r.Addr, "127.0.0.1:") {
		t.Errorf("Addr = %q, want loopback", r.Addr)
	}
	c := dialRESP(t, r.Addr)
	if got := c.do("SET", "k", "v"); got != "OK" {
		t.Fatalf("SET = %q", got)
	}
	if got := c.do("GET", "k"); got != "v" {
		t.Fatalf("GET = %q, want v", got)
	}

	addr := r.Addr
	pid := pidOf(t, r.proc)
	r.Restart()
	assertGone(t, pid)
	if r.Addr != addr {
		t.Fatalf("Addr changed on restart: %s -> %s", addr, r.Addr)
	}
	c = dialRESP(t, r.Addr)
	if got := c.do("GET", "k"); got != "(nil)" {
		t.Errorf("GET after restart = %q, want (nil): persistence should be off", got)
	}
	if got := c.do("SET", "k", "w"); got != "OK" {
		t.Fatalf("SET after restart = %q", got)
	}
	if got := c.do("GET", "k"); got != "w" {
		t.Fatalf("GET after restart = %q, want w", got)
	}
	if tail := r.LogTail(5); !strings.Contains(tail, "Ready to accept connections") {
		t.Errorf("LogTail(5) does not show the server start:\n%s", tail)
	}
	if n := strings.Count(r.LogTail(3), "\n"); n != 2 {
		t.Errorf("LogTail(3) has %d newlines, want 2", n)
	}

	pid = pidOf(t, r.proc)
	r.Stop()
	assertGone(t, pid)
	if _, err := net.DialTimeout("tcp", r.Addr, time.Second); err == nil {
		t.Errorf("still accepting connections on %s after Stop", r.Addr)
	}
	r.Stop() // idempotent
	r.Start()
	if got := dialRESP(t, r.Addr).do("PING"); got != "PONG" {
		t.Errorf("PING after Start = %q", got)
	}
}

func redisCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func checkCluster(t *testing.T, c *RedisCluster, value string) {
	t.Helper()
	for i, addr := range c.Addrs {
		_, port, _ := net.SplitHostPort(addr)
		key := fmt.Sprintf("{x}a%d", i)
		if got := redisCLI(t, "-c", "-h", "127.0.0.1", "-p", port, "set", "{x}a", value); got != "OK" {
			t.Fatalf("set {x}a via %s = %q", addr, got)
		}
		if got := redisCLI(t, "-c", "-h", "127.0.0.1", "-p", port, "set", key, value); got != "OK" {
			t.Fatalf("set %s via %s = %q", key, addr, got)
		}
	}
	for _, addr := range c.Addrs {
		_, port, _ := net.SplitHostPort(addr)
		if got := redisCLI(t, "-c", "-h", "127.0.0.1", "-p", port, "get", "{x}a"); got != value {
			t.Fatalf("get {x}a via %s = %q, want %q", addr, got, value)
		}
		info := redisCLI(t, "-h", "127.0.0.1", "-p", port, "cluster", "info")
		if !strings.Contains(info, "cluster_state:ok") {
			t.Fatalf("cluster info via %s:\n%s", addr, info)
		}
	}
}

func TestRedisCluster(t *testing.T) {
	for _, masters := range []int{3, 1} {
		t.Run(fmt.Sprintf("masters=%d", masters), func(t *testing.T) {
			c := StartRedisCluster(t, masters)
			if len(c.Addrs) != masters || len(c.Nodes) != masters {
				t.Fatalf("got %d addrs, %d nodes, want %d", len(c.Addrs), len(c.Nodes), masters)
			}
			checkCluster(t, c, "1")
			nodes := redisCLI(t, "-h", "127.0.0.1", "-p", strconv.Itoa(c.Nodes[0].Port), "cluster", "nodes")
			if got := strings.Count(nodes, "master"); got != masters {
				t.Errorf("cluster nodes lists %d masters, want %d:\n%s", got, masters, nodes)
			}

			c.Restart()
			for _, n := range c.Nodes {
				if got := dialRESP(t, n.Addr).do("DBSIZE"); got != "0" {
					t.Errorf("node %s: DBSIZE after restart = %s, want 0", n.Addr, got)
				}
			}
			checkCluster(t, c, "2")
			if tail := c.LogTail(2); strings.Count(tail, "==> ") != masters {
				t.Errorf("LogTail:\n%s", tail)
			}
		})
	}
}

// --------------------------------------------------------------- Prosody

// xmppConn is a minimal raw XMPP connection for tests.
type xmppConn struct {
	t    *testing.T
	conn net.Conn
	buf  []byte
}

func dialXMPP(t *testing.T, addr string) *xmppConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &xmppConn{t: t, conn: conn}
}

func (c *xmppConn) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// expect reads until the buffered input contains until and returns the
// input up to and including it; the rest stays buffered.
func (c *xmppConn) expect(until string) string {
	c.t.Helper()
	if err := c.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	b := make([]byte, 4096)
	for {
		if i := bytes.Index(c.buf, []byte(until)); i >= 0 {
			got := string(c.buf[:i+len(until)])
			c.buf = c.buf[i+len(until):]
			return got
		}
		n, err := c.conn.Read(b)
		c.buf = append(c.buf, b[:n]...)
		if err != nil {
			c.t.Fatalf("waiting for %q: %v (got %q)", until, err, c.buf)
		}
	}
}

const streamNS = "xmlns:stream='http://etherx.jabber.org/streams'"

func clientHeader(domain string) string {
	return "<?xml version='1.0'?><stream:stream to='" + domain + "' xmlns='jabber:client' " + streamNS + " version='1.0'>"
}

// login authenticates with SASL PLAIN and binds a resource; it reports
// whether authentication succeeded.
func login(t *testing.T, p *Prosody, user, pass string) (*xmppConn, bool) {
	t.Helper()
	c := dialXMPP(t, p.C2SAddr)
	c.send(clientHeader(p.Domain))
	features := c.expect("</stream:features>")
	if !strings.Contains(features, "PLAIN") {
		t.Fatalf("PLAIN not offered: %s", features)
	}
	cred := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + cred + "</auth>")
	res := c.expect(">")
	if strings.Contains(res, "<failure") {
		return c, false
	}
	if !strings.Contains(res, "<success") {
		t.Fatalf("unexpected SASL reply %q", res)
	}
	c.send(clientHeader(p.Domain))
	c.expect("</stream:features>")
	c.send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>test</resource></bind></iq>")
	if bind := c.expect("</iq>"); !strings.Contains(bind, user+"@"+p.Domain+"/") {
		t.Fatalf("bind reply: %s", bind)
	}
	return c, true
}

// connectComponent performs the XEP-0114 handshake.
func connectComponent(t *testing.T, p *Prosody, comp ProsodyComponent) *xmppConn {
	t.Helper()
	c := dialXMPP(t, p.ComponentAddr)
	c.send("<?xml version='1.0'?><stream:stream to='" + comp.Domain + "' xmlns='jabber:component:accept' " + streamNS + ">")
	header := c.expect(">")
	for !strings.Contains(header, "<stream:stream") {
		header = c.expect(">")
	}
	m := regexp.MustCompile(`id=['"]([^'"]+)['"]`).FindStringSubmatch(header)
	if m == nil {
		t.Fatalf("no stream id in %q", header)
	}
	sum := sha1.Sum([]byte(m[1] + comp.Secret))
	c.send("<handshake>" + hex.EncodeToString(sum[:]) + "</handshake>")
	if got := c.expect(">"); !strings.Contains(got, "<handshake") {
		t.Fatalf("component handshake failed: %q", got)
	}
	return c
}

// listeningPorts returns the TCP ports on which process pid has listening
// sockets, from /proc.
func listeningPorts(t *testing.T, pid int) []int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("reading fds of %d: %v", pid, err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] { // 0A = LISTEN
				continue
			}
			_, portHex, _ := strings.Cut(fields[1], ":")
			port, _ := strconv.ParseUint(portHex, 16, 16)
			ports = append(ports, int(port))
		}
	}
	slices.Sort(ports)
	return ports
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestProsody(t *testing.T) {
	comp := ProsodyComponent{Domain: "pubsub.localhost", Secret: `s3cr"et\`}
	p := StartProsody(t, ProsodyOptions{
		Components:  []ProsodyComponent{comp},
		Users:       map[string]string{"alice": "pw-alice", "bob": "pw bob"},
		PubsubHost:  "native-pubsub.localhost",
		ExtraGlobal: `c2s_timeout = 600`,
	})
	if p.Domain != "localhost" {
		t.Errorf("Domain = %q", p.Domain)
	}

	// Only our two loopback ports may be bound (no 5269, 5280, 5281, 5223...).
	want := []int{portOf(t, p.C2SAddr), portOf(t, p.ComponentAddr)}
	slices.Sort(want)
	if got := listeningPorts(t, pidOf(t, p.proc)); !slices.Equal(got, want) {
		t.Errorf("prosody listens on %v, want only %v", got, want)
	}

	check := func(phase string) {
		t.Helper()
		alice, ok := login(t, p, "alice", "pw-alice")
		if !ok {
			t.Fatalf("%s: alice could not log in", phase)
		}
		if _, ok := login(t, p, "bob", "pw bob"); !ok {
			t.Fatalf("%s: bob could not log in", phase)
		}
		if _, ok := login(t, p, "alice", "wrong"); ok {
			t.Fatalf("%s: alice logged in with a wrong password", phase)
		}

		// Prosody's own pubsub on PubsubHost.
		alice.send("<iq type='get' id='disco1' to='native-pubsub.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
		if got := alice.expect("</iq>"); !strings.Contains(got, "http://jabber.org/protocol/pubsub") {
			t.Fatalf("%s: disco#info of native pubsub: %s", phase, got)
		}

		// The external component receives stanzas addressed to it.
		c := connectComponent(t, p, comp)
		alice.send("<iq type='get' id='ping1' to='pubsub.localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
		got := c.expect("</iq>")
		if !strings.Contains(got, "ping1") || !strings.Contains(got, "alice@localhost/test") {
			t.Fatalf("%s: component got %q", phase, got)
		}
	}
	check("first start")

	// Register while running.
	p.Register("carol", "pw-carol")
	if _, ok := login(t, p, "carol", "pw-carol"); !ok {
		t.Fatal("carol registered while running cannot log in")
	}

	c2s, compAddr := p.C2SAddr, p.ComponentAddr
	pid := pidOf(t, p.proc)
	p.Restart()
	assertGone(t, pid)
	if p.C2SAddr != c2s || p.ComponentAddr != compAddr {
		t.Fatalf("addresses changed on restart")
	}
	check("after restart")
	if _, ok := login(t, p, "carol", "pw-carol"); !ok {
		t.Fatal("carol cannot log in after restart")
	}

	// Register while stopped.
	p.Stop()
	p.Register("dave", "pw-dave")
	p.Start()
	if _, ok := login(t, p, "dave", "pw-dave"); !ok {
		t.Fatal("dave registered while stopped cannot log in")
	}

	tail := p.LogTail(400)
	for _, bad := range []string{"\terror\t", "Failed to open server port"} {
		if strings.Contains(tail, bad) {
			t.Errorf("prosody log contains %q:\n%s", bad, tail)
		}
	}
	// Nothing written outside Dir.
	for _, f := range []string{"prosody.pid", "prosody.log", "localhost/accounts/alice.dat"} {
		if _, err := os.Stat(filepath.Join(p.Dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestProsodyNoComponents(t *testing.T) {
	p := StartProsody(t, ProsodyOptions{Users: map[string]string{"u": "p"}})
	if _, ok := login(t, p, "u", "p"); !ok {
		t.Fatal("login failed")
	}
	// Without external components Prosody does not load mod_component, so
	// the component port stays closed.
	if got, want := listeningPorts(t, pidOf(t, p.proc)), []int{portOf(t, p.C2SAddr)}; !slices.Equal(got, want) {
		t.Errorf("prosody listens on %v, want only %v", got, want)
	}
	p.Restart()
	if _, ok := login(t, p, "u", "p"); !ok {
		t.Fatal("login failed after restart")
	}
}

// ---------------------------------------------------------------- ngircd

type ircConn struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialIRC(t *testing.T, addr string) *ircConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &ircConn{t: t, conn: conn, br: bufio.NewReader(conn)}
}

func (c *ircConn) send(lines ...string) {
	c.t.Helper()
	for _, l := range lines {
		if _, err := c.conn.Write([]byte(l + "\r\n")); err != nil {
			c.t.Fatalf("send %q: %v", l, err)
		}
	}
}

// expect reads lines until one contains substr and returns it.
func (c *ircConn) expect(substr string) string {
	c.t.Helper()
	if err := c.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	for {
		line, err := c.br.ReadString('\n')
		if strings.Contains(line, substr) {
			return strings.TrimRight(line, "\r\n")
		}
		if err != nil {
			c.t.Fatalf("waiting for %q: %v (last line %q)", substr, err, line)
		}
	}
}

func ircRegister(t *testing.T, n *Ngircd, nick string, pass string) *ircConn {
	t.Helper()
	c := dialIRC(t, n.Addr)
	if pass != "" {
		c.send("PASS " + pass)
	}
	c.send("NICK "+nick, "USER "+nick+" 0 * :"+nick)
	if got := c.expect(" 001 "); !strings.HasPrefix(got, ":"+n.Name+" 001 "+nick) {
		t.Fatalf("welcome = %q", got)
	}
	return c
}

func checkIRC(t *testing.T, n *Ngircd, pass string) {
	t.Helper()
	a := ircRegister(t, n, "alice_with_a_long_nickname", pass) // > 9 chars: MaxNickLength
	b := ircRegister(t, n, "bob", pass)
	a.send("JOIN #test")
	a.expect(" 366 ") // end of NAMES
	b.send("JOIN #test")
	b.expect(" 366 ")
	a.expect("JOIN")
	// Many messages in a row: without penalties none are throttled.
	const count = 50
	for i := range count {
		b.send(fmt.Sprintf("PRIVMSG #test :hello %d", i))
	}
	a.expect(fmt.Sprintf("PRIVMSG #test :hello %d", count-1))
	a.send("QUIT")
	b.send("QUIT")
}

func TestNgircd(t *testing.T) {
	n := StartNgircd(t, NgircdOptions{})
	if n.Name != "irc.test" {
		t.Errorf("Name = %q", n.Name)
	}
	start := time.Now()
	checkIRC(t, n, "")
	t.Logf("50 messages without penalties in %v", time.Since(start))
	if got := listeningPorts(t, pidOf(t, n.proc)); !slices.Equal(got, []int{n.Port}) {
		t.Errorf("ngircd listens on %v, want only [%d]", got, n.Port)
	}

	// REHASH (SIGHUP) re-reads the configuration as the unprivileged user
	// ngircd switched to: the temporary directory must be readable.
	pid := pidOf(t, n.proc)
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		tail := n.LogTail(20)
		if strings.Contains(tail, "Can't read configuration") {
			t.Fatalf("ngircd cannot re-read its configuration:\n%s", tail)
		}
		if strings.Contains(tail, "Re-reading of configuration done") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rehash in log:\n%s", tail)
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkIRC(t, n, "")

	addr := n.Addr
	n.Restart()
	assertGone(t, pid)
	if n.Addr != addr {
		t.Fatal("address changed on restart")
	}
	checkIRC(t, n, "")
	if tail := n.LogTail(40); !strings.Contains(tail, "ready") {
		t.Errorf("LogTail:\n%s", tail)
	}
}

func TestNgircdPasswordAndPenalties(t *testing.T) {
	n := StartNgircd(t, NgircdOptions{
		Penalties:      true,
		ServerPassword: "sekrit",
		Extra:          "[Channel]\n    Name = #preset\n    Topic = preset topic\n",
	})
	c := dialIRC(t, n.Addr)
	c.send("PASS wrong", "NICK nopass", "USER nopass 0 * :nopass")
	if got := c.expect("ERROR"); !strings.Contains(strings.ToLower(got), "password") {
		t.Errorf("wrong password: got %q", got)
	}
	a := ircRegister(t, n, "alice", "sekrit")
	a.send("JOIN #preset")
	if got := a.expect(" 332 "); !strings.Contains(got, "preset topic") {
		t.Errorf("topic of preset channel: %q", got)
	}
	n.Restart()
	ircRegister(t, n, "alice", "sekrit")
	cfg, err := os.ReadFile(n.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cfg, []byte("MaxPenaltyTime")) {
		t.Errorf("Penalties: true must not set MaxPenaltyTime:\n%s", cfg)
	}
}

// ----------------------------------------------------------------- misc

// recordTB records Skipf and Fatalf instead of acting on them.
type recordTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordTB) Helper() {}

func (r *recordTB) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recordTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestRequireBinaryMissing(t *testing.T) {
	run := func() *recordTB {
		r := &recordTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			requireBinary(r, "testenv-no-such-server", "no-such-package")
		}()
		<-done
		return r
	}
	t.Setenv("CI", "")
	r := run()
	if r.failed != "" || !strings.Contains(r.skipped, aptInstall) || !strings.Contains(r.skipped, "no-such-package") {
		t.Errorf("CI unset: skipped=%q failed=%q", r.skipped, r.failed)
	}
	t.Setenv("CI", "true")
	r = run()
	if r.skipped != "" || !strings.Contains(r.failed, aptInstall) {
		t.Errorf("CI=true: skipped=%q failed=%q", r.skipped, r.failed)
	}
	if p := requireBinary(t, "redis-server", "redis-server"); !filepath.IsAbs(p) {
		t.Errorf("requireBinary(redis-server) = %q", p)
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, ""},
		{1, "line 9999"},
		{3, "line 9997\nline 9998\nline 9999"},
	} {
		got, err := tailFile(path, tc.n)
		if err != nil || got != tc.want {
			t.Errorf("tailFile(%d) = %q, %v; want %q", tc.n, got, err, tc.want)
		}
	}
	got, _ := tailFile(path, 20000)
	if strings.Count(got, "\n") != 9999 || !strings.HasPrefix(got, "line 0\n") {
		t.Errorf("tailFile(20000) returned %d lines", strings.Count(got, "\n")+1)
	}
	if err := os.WriteFile(path, []byte("a\nb"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := tailFile(path, 1); got != "b" {
		t.Errorf("unterminated last line: %q", got)
	}
}

func TestLuaString(t *testing.T) {
	if got, want := luaString("a\"b\\c\nd\x01"), `"a\"b\\c\nd\001"`; got != want {
		t.Errorf("luaString = %s, want %s", got, want)
	}
}
