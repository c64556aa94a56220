package main

import (
	"fmt"
	"io"
	"time"

	"github.com/dcagent/dcagent/sim/ca"
)

func init() {
	register(command{name: "token", summary: "make a one-time enrollment token: token --state DIR --system-id ID [--ttl D]", run: runToken})
}

// runToken makes a token in the reference backend's CA under DIR (the
// backend's state directory; the CA lives in its ca/ folder). It works
// while the backend runs: the backend reads tokens from disk at each use.
// The token alone goes to stdout, so that scripts can capture it.
func runToken(stdout, stderr io.Writer, args []string) int {
	fs := newFlags("token", stderr)
	state := fs.String("state", "", "the reference backend's state directory")
	systemID := fs.String("system-id", "", "the system ID of the device the token is for")
	ttl := fs.Duration("ttl", ca.DefaultTokenTTL, "how long the token stays valid")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *state == "" || *systemID == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: dcsim token --state DIR --system-id ID [--ttl D]")
		return 2
	}
	if *ttl <= 0 {
		fmt.Fprintf(stderr, "dcsim token: --ttl %v must be positive\n", *ttl)
		return 2
	}
	c, err := ca.Open(ca.Config{Dir: ca.DirIn(*state)})
	if err != nil {
		fmt.Fprintf(stderr, "dcsim token: %v\n", err)
		return 1
	}
	tok, err := c.NewToken(*systemID, *ttl)
	if err != nil {
		fmt.Fprintf(stderr, "dcsim token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stderr, "dcsim token: for system ID %s, valid until %s, single use\n", *systemID, time.Now().Add(*ttl).UTC().Format(time.RFC3339))
	return 0
}
