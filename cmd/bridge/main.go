// Command bridge runs feedbridge: it mirrors Thoonk feeds in Redis into the
// protocol adapters enabled in bridge.yaml and turns what users do into
// jobs.
//
//	bridge [run] [-config bridge.yaml]    run
//	bridge check [-config bridge.yaml]    validate and print the effective config
//	bridge health [-url URL]              probe a running bridge's /healthz (for container HEALTHCHECKs)
//	bridge version                        print the version and commit (also --version)
//	bridge help                           print this help (also -h, --help)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"
)

// version and commit are set at build time by `make build` with
// -ldflags "-X main.version=... -X main.commit=..."; commit falls back to
// the VCS revision Go records in builds from a git checkout.
var (
	version = "dev"
	commit  = ""
)

const usage = `feedbridge mirrors Thoonk feeds in Redis into XMPP, IRC, REST, Atom and a
web console, and turns what users do into jobs.

usage:
  bridge [run] [-config PATH]     run the bridge (default config: bridge.yaml)
  bridge check [-config PATH]     validate a config: every problem at once, then
                                  the effective config with secrets masked
  bridge health [-url URL]        exit 0 when a running bridge answers /healthz
                                  (default URL: http://127.0.0.1:8080/healthz)
  bridge version                  print the version and commit (also --version)
  bridge help                     print this help (also -h, --help)

Documentation: README.md, docs/*.md; the API: /v1/docs on a running bridge.
`

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

// cli runs a command line and returns the process exit code.
func cli(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 {
		switch args[0] {
		case "run", "check", "version", "health":
			cmd, args = args[0], args[1:]
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return 0
		case "--version", "-version", "-v":
			cmd, args = "version", args[1:]
		}
	}
	fs := flag.NewFlagSet("bridge "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "bridge.yaml", "path of the config file")
	healthURL := fs.String("url", "http://127.0.0.1:8080/healthz", "health: the /healthz URL to probe")
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bridge: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "health":
		if err := probeHealth(*healthURL); err != nil {
			fmt.Fprintf(stderr, "bridge health: %v\n", err)
			return 1
		}
		return 0
	case "check":
		if err := check(*path, stdout); err != nil {
			fmt.Fprintf(stderr, "%s: the config has problems:\n", *path)
			for _, e := range flatten(err) {
				fmt.Fprintf(stderr, "  - %v\n", e)
			}
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// after the first signal, a second one kills at once (the default)
	context.AfterFunc(ctx, stop)
	if err := run(ctx, *path, stderr); err != nil {
		fmt.Fprintf(stderr, "bridge: %v\n", err)
		return 1
	}
	return 0
}

// versionString is what `bridge version` prints: version, commit and Go.
func versionString() string {
	return fmt.Sprintf("feedbridge %s (commit %s) %s", version, buildCommit(), runtime.Version())
}

// buildCommit returns the commit the binary was built from: the one `make
// build` stamped, else the VCS revision Go recorded (with "-dirty" for a
// modified tree), else "unknown".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	c, dirty := "unknown", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				c = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		c += "-dirty"
	}
	return c
}

// probeHealth asks a running bridge's /healthz; anything but 200 is an error.
func probeHealth(url string) error {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}

// flatten lists the errors joined in err.
func flatten(err error) []error {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
