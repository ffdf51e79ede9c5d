package integration

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/integration/testenv"
)

// The release binary comes from `make build` (which `make test`, CI's
// command, runs too): static, stamped with version and commit.
func TestMakeBuildIsStaticAndStamped(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	bin := filepath.Join(t.TempDir(), "bridge")
	cmd := exec.Command("make", "-C", "..", "build", "VERSION=v9.9.9-test", "COMMIT=0123abcd", "BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the release binary is dynamically linked")
		}
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "feedbridge v9.9.9-test (commit 0123abcd) go") {
		t.Fatalf("bridge --version: %q %v", out, err)
	}
	// the health probe the image's HEALTHCHECK runs
	q := startQuickStart(t)
	if err := exec.Command(bin, "health", "-url", q.Base+"/healthz").Run(); err != nil {
		t.Fatalf("bridge health on a running bridge: %v", err)
	}
	if err := exec.Command(bin, "health", "-url", "http://"+testenv.FreeAddr(t)+"/healthz").Run(); err == nil {
		t.Fatal("bridge health passed with nothing listening")
	}
	res, err := exec.Command("curl", "-s", q.Base+"/metrics").Output()
	if err == nil && !bytes.Contains(res, []byte(`feedbridge_build_info{commit=`)) {
		t.Fatal("no feedbridge_build_info metric")
	}
}

// The Dockerfile builds with `make build` (the steps CI runs), runs as a
// non-root user on a static base and checks /healthz; `make test` builds
// the same binary first.
func TestDockerfileUsesTheCIBuild(t *testing.T) {
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	d := string(df)
	for _, re := range []string{
		`(?m)^FROM golang:\S+ AS build$`,
		`(?m)^RUN make build `,
		`(?m)^FROM gcr\.io/distroless/static\S*$`,
		`(?m)^USER [1-9][0-9]*:[1-9][0-9]*$`,
		`(?m)^HEALTHCHECK .*\n?.*"health", "-url", "http://127\.0\.0\.1:8080/healthz"`,
		`(?m)^ENTRYPOINT \["/usr/local/bin/bridge"\]$`,
	} {
		if !regexp.MustCompile(re).MatchString(d) {
			t.Errorf("Dockerfile does not match %s", re)
		}
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^test: .*\bbuild\b`).Match(mk) {
		t.Error("make test (CI's command) does not run make build")
	}
	ci, err := os.ReadFile("../.ci/run")
	if err != nil || !bytes.Contains(ci, []byte("make test")) {
		t.Errorf(".ci/run does not run make test: %v", err)
	}
}

// The systemd unit passes systemd-analyze verify without a warning, and
// keeps its hardening.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../packaging/feedbridge.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
		"PrivateTmp=yes", "CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes", "ExecStart=/usr/local/bin/bridge run -config /etc/feedbridge/bridge.yaml"} {
		if !bytes.Contains(unit, []byte(k)) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(k))
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd)")
	}
	dir := t.TempDir()
	bin := testenv.BridgeBinary(t)
	p := filepath.Join(dir, "feedbridge.service")
	if err := os.WriteFile(p, bytes.ReplaceAll(unit, []byte("/usr/local/bin/bridge"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", p)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	go func() { done <- cmd.Run() }()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("systemd-analyze verify hung")
	}
	if err != nil || strings.Contains(stderr.String(), "feedbridge.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, stderr.String())
	}
	// the ExecStart command line is one the binary takes
	shipped, _ := filepath.Abs("../bridge.yaml")
	if out, err := exec.Command(bin, "check", "-config", shipped).CombinedOutput(); err != nil {
		t.Fatalf("bridge check -config: %v\n%s", err, out)
	}
}

func TestLicenseAndChangelog(t *testing.T) {
	lic, err := os.ReadFile("../LICENSE")
	if err != nil || !bytes.HasPrefix(lic, []byte("MIT License")) {
		t.Errorf("LICENSE: %v", err)
	}
	cl, err := os.ReadFile("../CHANGELOG.md")
	if err != nil || !bytes.Contains(cl, []byte("## [Unreleased]")) {
		t.Errorf("CHANGELOG.md: %v", err)
	}
}
