package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/status"
)

func init() {
	register(command{name: "approve", summary: "approve a request waiting for a local person: approve ID", run: func(env *cmdEnv, args []string) int { return runAnswer(env, "approve", args) }})
	register(command{name: "deny", summary: "deny a request waiting for a local person: deny ID", run: func(env *cmdEnv, args []string) int { return runAnswer(env, "deny", args) }})
	register(command{name: "pending", summary: "list the requests waiting for a local person: pending [--json]", run: runPending})
}

const answerUsage = `usage: dcagent approve ID
       dcagent deny ID
       dcagent pending [--json]

When the policy says "ask", a request from the vendor (a remote session, a
script, a file transfer) waits on the device for a local person. pending
lists what waits; approve and deny answer, through the running daemon's
control socket. Only the users and groups in [policy] approvers may answer;
the daemon checks who you are from the socket itself. A request nobody
answers within [policy] ask_timeout is denied. Every answer is recorded in
the audit log.
`

// socketPath finds the daemon's control socket. A configuration file with
// an error does not stop a person from reaching the running daemon (which
// refused that file at its reload and runs the previous one): the state
// directory is then read from the file leniently, with a warning.
func socketPath(env *cmdEnv) (string, error) {
	cfg, err := env.loadConfig()
	if err == nil {
		return filepath.Join(cfg.Device.StateDir, status.SocketName), nil
	}
	dir, derr := config.StateDirOf(env.configPath)
	if derr != nil {
		return "", err
	}
	fmt.Fprintf(env.stderr, "dcagent: warning: %v\ndcagent: reaching the daemon through the state directory %s anyway\n", err, dir)
	return filepath.Join(dir, status.SocketName), nil
}

func pendingRequests(ctx context.Context, sock string) ([]policy.Pending, error) {
	var p []policy.Pending
	err := status.Call(ctx, sock, "pending", nil, &p)
	return p, err
}

func runAnswer(env *cmdEnv, method string, args []string) int {
	fs := env.newFlags(method)
	fs.Usage = func() { fmt.Fprint(env.stderr, answerUsage) }
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	if fs.NArg() != 1 {
		fmt.Fprint(env.stderr, answerUsage)
		return 2
	}
	id := fs.Arg(0)
	sock, err := socketPath(env)
	if err != nil {
		return fail(env, method, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// What is being answered, for the record on screen.
	var what *policy.Pending
	if list, err := pendingRequests(ctx, sock); err == nil {
		for i := range list {
			if list[i].ID == id {
				what = &list[i]
			}
		}
	}
	var res status.AnswerResult
	if err := status.Call(ctx, sock, method, status.IDParams{ID: id}, &res); err != nil {
		return fail(env, method, err)
	}
	verb := map[string]string{"approve": "approved", "deny": "denied"}[method]
	if what != nil {
		fmt.Fprintf(env.stdout, "%s %s: %s for %s (service request %s), as %s\n", verb, id, what.Action, orNone(what.Requester), orNone(what.ServiceRequest), res.By)
	} else {
		fmt.Fprintf(env.stdout, "%s %s, as %s\n", verb, id, res.By)
	}
	return 0
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runPending(env *cmdEnv, args []string) int {
	fs := env.newFlags("pending")
	asJSON := fs.Bool("json", false, "print a JSON array")
	fs.Usage = func() { fmt.Fprint(env.stderr, answerUsage) }
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	sock, err := socketPath(env)
	if err != nil {
		return fail(env, "pending", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := pendingRequests(ctx, sock)
	if err != nil {
		return fail(env, "pending", err)
	}
	if *asJSON {
		if list == nil {
			list = []policy.Pending{}
		}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(list)
		return 0
	}
	if len(list) == 0 {
		fmt.Fprintln(env.stdout, "nothing is waiting for approval")
		return 0
	}
	for _, p := range list {
		fmt.Fprintf(env.stdout, "%s  %-16s requester %s, service request %s, expires in %v\n    %s\n",
			p.ID, p.Action, orNone(p.Requester), orNone(p.ServiceRequest), time.Until(p.Expires).Round(time.Second), p.Detail)
	}
	fmt.Fprintln(env.stdout, "answer with: dcagent approve ID   or   dcagent deny ID")
	return 0
}
