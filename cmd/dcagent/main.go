// Command dcagent is the direct-connect support agent: the one binary on the
// device. Each sub-command lives in a file of its own in this package and
// registers itself in init; see DESIGN.md for the command-line contract.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/dcagent/dcagent/agent/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// command is one sub-command. run gets the arguments after the command name
// and returns the process exit status.
type command struct {
	name    string
	summary string
	run     func(env *cmdEnv, args []string) int
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("dcagent: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// cmdEnv is what every command gets: where to write, and the config path.
type cmdEnv struct {
	stdout, stderr io.Writer
	configPath     string
}

// loadConfig reads the configuration named by --config.
func (e *cmdEnv) loadConfig() (*config.Config, error) {
	return config.Load(e.configPath)
}

// newFlags makes a flag set that takes --config like every command, and
// prints usage to stderr.
func (e *cmdEnv) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("dcagent "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&e.configPath, "config", e.configPath, "configuration file")
	return fs
}

// parseFlags parses args and reports whether the command should go on; on
// false, it returns the exit status to use (0 for -h, 2 for bad flags).
func parseFlags(fs *flag.FlagSet, args []string) (ok bool, status int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, 0
		}
		return false, 2
	}
	return true, 0
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	env := &cmdEnv{stdout: stdout, stderr: stderr, configPath: config.DefaultPath}
	if p := os.Getenv("DCAGENT_CONFIG"); p != "" {
		env.configPath = p
	}
	// A global --config may come before the command name.
	for len(args) >= 2 && (args[0] == "--config" || args[0] == "-config") {
		env.configPath = args[1]
		args = args[2:]
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "dcagent: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return c.run(env, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: dcagent [--config FILE] COMMAND [ARGS]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-18s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nThe default configuration file is %s.\n", config.DefaultPath)
}

// fail prints a one-line error for a command and returns status 1.
func fail(env *cmdEnv, cmd string, err error) int {
	fmt.Fprintf(env.stderr, "dcagent %s: %s\n", cmd, strings.TrimSpace(err.Error()))
	return 1
}
