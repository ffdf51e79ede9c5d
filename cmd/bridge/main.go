// Command bridge runs feedbridge: it mirrors Thoonk feeds in Redis into the
// protocol adapters enabled in bridge.yaml and turns what users do into
// jobs.
//
//	bridge [-config bridge.yaml]          run
//	bridge check [-config bridge.yaml]    validate and print the effective config
//	bridge version                        print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

// cli runs a command line and returns the process exit code.
func cli(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && (args[0] == "run" || args[0] == "check" || args[0] == "version") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("bridge "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "bridge.yaml", "path of the config file")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: bridge [run|check|version] [-config PATH]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
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

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		return fmt.Sprintf("feedbridge %s %s", v, bi.GoVersion)
	}
	return "feedbridge " + v
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
