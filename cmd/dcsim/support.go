package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/sim/relay"
)

func init() {
	register(command{name: "support", summary: "a support engineer's tools: support request-access --system-id ID --service ssh ...", run: runSupport})
}

// supportStdin is the engineer's terminal (tests replace it).
var supportStdin io.Reader = os.Stdin

const supportUsage = `usage: dcsim support request-access --backend URL --ca FILE --system-id ID
           --service NAME --requester NAME [--sr NUMBER] [--wait D] [--no-connect]

Queues a remote-access request for a device at the backend; the device
fetches it with its next heartbeat and decides by its customer's policy
(which may ask a person on site). Once the device has connected to the
relay, this terminal (stdin and stdout) is bridged to the device's service
until either side ends it or the device's idle timeout or maximum duration
does. Works as ssh's ProxyCommand:

  ssh -o ProxyCommand='dcsim support request-access --backend ... --ca ... \
      --system-id SYS-0001 --service ssh --requester alice --sr SR-1' root@SYS-0001

The support token, if the backend wants one, comes from the environment
variable DCSIM_SUPPORT_TOKEN (never from the command line, where other
users could read it). Messages go to stderr; the exit status is 0 when a
session took place and ended, 1 when the device refused or never came.

options:
`

func runSupport(stdout, stderr io.Writer, args []string) int {
	if len(args) == 0 || args[0] != "request-access" {
		fmt.Fprint(stderr, supportUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return 0
		}
		return 2
	}
	fs := newFlags("support request-access", stderr)
	backend := fs.String("backend", os.Getenv("DCSIM_BACKEND"), "the backend's HTTPS base URL (or $DCSIM_BACKEND)")
	caFile := fs.String("ca", "", "the vendor CA (PEM) that the backend's certificate must chain to")
	systemID := fs.String("system-id", "", "the device's system ID")
	service := fs.String("service", "ssh", "the service on the device, as its [remote] services names it")
	requester := fs.String("requester", "", "who asks (shown to the customer and recorded in the device's audit log)")
	sr := fs.String("sr", "", "the service-request number")
	wait := fs.Duration("wait", 10*time.Minute, "how long to wait for the device (a person on site may have to approve)")
	noConnect := fs.Bool("no-connect", false, "only queue the request and print the session id")
	fs.Usage = func() {
		fmt.Fprint(stderr, supportUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	missing := ""
	switch {
	case *backend == "":
		missing = "--backend"
	case *caFile == "":
		missing = "--ca"
	case *systemID == "":
		missing = "--system-id"
	case *requester == "":
		missing = "--requester"
	}
	if missing != "" {
		fmt.Fprintf(stderr, "dcsim support: %s is required\n\n", missing)
		fs.Usage()
		return 2
	}
	u, err := url.Parse(*backend)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		fmt.Fprintf(stderr, "dcsim support: --backend %q is not an https:// URL\n", *backend)
		return 2
	}
	pool, err := tlsconf.LoadCAFile(*caFile)
	if err != nil {
		fmt.Fprintf(stderr, "dcsim support: %v\n", err)
		return 1
	}
	tlsCfg, err := tlsconf.Client(pool, nil, u.Hostname())
	if err != nil {
		fmt.Fprintf(stderr, "dcsim support: %v\n", err)
		return 1
	}
	// No overall client timeout: a session may last hours.
	cli := &relay.SupportClient{
		BaseURL: u.Scheme + "://" + u.Host,
		HTTP:    &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, TLSHandshakeTimeout: 15 * time.Second}},
		Token:   os.Getenv("DCSIM_SUPPORT_TOKEN"),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	rr, err := cli.Request(rctx, relay.AccessRequest{SystemID: *systemID, Service: *service, Requester: *requester, ServiceRequest: *sr})
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "dcsim support: %v\n", err)
		return 1
	}
	if *noConnect {
		fmt.Fprintf(stdout, "%s %s\n", rr.SessionID, rr.WorkID)
		return 0
	}
	fmt.Fprintf(stderr, "dcsim support: request queued for %s (session %s); waiting up to %v for the device to connect\n", *systemID, rr.SessionID, *wait)
	stream, err := cli.Connect(ctx, rr.SessionID, *wait)
	if err != nil {
		fmt.Fprintf(stderr, "dcsim support: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "dcsim support: connected to %s's %s; the session is yours (end of input ends it)\n", *systemID, *service)
	start := time.Now()
	if err := relay.Pipe(stream, supportStdin, stdout); err != nil {
		fmt.Fprintf(stderr, "dcsim support: session ended with an error after %v: %v\n", time.Since(start).Round(time.Second), err)
		return 1
	}
	fmt.Fprintf(stderr, "dcsim support: session closed after %v\n", time.Since(start).Round(time.Second))
	return 0
}
