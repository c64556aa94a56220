package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/diag"
	"github.com/dcagent/dcagent/agent/policy"
)

func init() {
	register(command{name: "policy", summary: "explain or check the customer's policy: policy explain ACTION | policy check FILE", run: runPolicy})
	addDiagChecks(diagSource{name: "policy", checks: policyChecks})
}

const policyUsage = `usage: dcagent policy explain [--json] ACTION
       dcagent policy check FILE

explain says how the policy in force on this device decides ACTION, which
rule decides and why, and lists every rule that applies. ACTION is one of
  remote:SERVICE   a remote session to a service in [remote] services
  script:NAME      a vendor-signed diagnostic script
  file-fetch       a file sent home from [remote] fetch_paths
  file-put         a vendor-signed file put in the device's inbox
  config           a configuration change
The policy in force is the policy manager's cached copy (checked again),
or else [policy] file; without either everything is denied.

check reads a policy file and says whether it is well formed (and signed,
when [policy] manager_key_file is set and the file carries a signature).
`

func runPolicy(env *cmdEnv, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(env.stderr, policyUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "explain":
		return runPolicyExplain(env, args[1:])
	case "check":
		return runPolicyCheck(env, args[1:])
	}
	fmt.Fprintf(env.stderr, "dcagent policy: unknown sub-command %q\n\n%s", args[0], policyUsage)
	return 2
}

func deviceOf(cfg *config.Config) policy.Device { return policy.DeviceFromConfig(cfg.Device) }

func runPolicyExplain(env *cmdEnv, args []string) int {
	fs := env.newFlags("policy explain")
	asJSON := fs.Bool("json", false, "print the decision as JSON")
	fs.Usage = func() { fmt.Fprint(env.stderr, policyUsage) }
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	if fs.NArg() != 1 {
		fmt.Fprint(env.stderr, policyUsage)
		return 2
	}
	action := fs.Arg(0)
	if err := policy.CheckAction(action); err != nil {
		fmt.Fprintf(env.stderr, "dcagent policy explain: %v\n\n%s", err, policyUsage)
		return 2
	}
	cfg, err := env.loadConfig()
	if err != nil {
		return fail(env, "policy explain", err)
	}
	p, notes, err := policy.Load(cfg.Policy, cfg.Device.StateDir)
	if err != nil {
		return fail(env, "policy explain", err)
	}
	dev := deviceOf(cfg)
	if *asJSON {
		out := struct {
			policy.Decision
			Notes []string `json:"notes,omitempty"`
		}{p.Decide(dev, action), notes}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
		return 0
	}
	fmt.Fprint(env.stdout, p.Explain(dev, action))
	for _, n := range notes {
		fmt.Fprintf(env.stdout, "note:     %s\n", n)
	}
	return 0
}

func runPolicyCheck(env *cmdEnv, args []string) int {
	fs := env.newFlags("policy check")
	fs.Usage = func() { fmt.Fprint(env.stderr, policyUsage) }
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	if fs.NArg() != 1 {
		fmt.Fprint(env.stderr, policyUsage)
		return 2
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fail(env, "policy check", err)
	}
	opts := policy.ParseOptions{Source: fs.Arg(0)}
	if cfg, err := config.Load(env.configPath); err == nil && cfg.Policy.ManagerKeyFile != "" {
		if k, err := policy.LoadPublicKey(cfg.Policy.ManagerKeyFile); err == nil {
			opts.Key = k
		}
	}
	p, err := policy.Parse(data, opts)
	if err != nil {
		return fail(env, "policy check", err)
	}
	sig := "unsigned"
	if p.Signed {
		sig = "signature verified"
	} else if strings.Contains(string(data), "\nsignature ") {
		sig = "signed, but not checked (no [policy] manager_key_file)"
	}
	fmt.Fprintf(env.stdout, "%s: policy version %d, %d rule(s), %s\n", fs.Arg(0), p.Version, len(p.Rules), sig)
	return 0
}

// policyChecks are dcagent diag's checks of the policy in force.
func policyChecks(cfg *config.Config, _ *slog.Logger) []diag.Check {
	return []diag.Check{{Name: "policy", Run: func(context.Context) []diag.Finding {
		p, notes, err := policy.Load(cfg.Policy, cfg.Device.StateDir)
		if err != nil {
			return []diag.Finding{{Check: "policy", Status: diag.Fail, Message: "the policy cannot be read: " + err.Error(), Action: "fix the file named above, then reload the daemon (SIGHUP)"}}
		}
		if p == nil {
			// Denying everything is the safe default, not a fault; say
			// how to allow something.
			return []diag.Finding{{Check: "policy", Status: diag.OK, Message: "no policy is in force, so every remote session, script and file transfer is denied (" + strings.Join(notes, "; ") + "); to allow any, set [policy] file, or [policy] manager_url with its CA and key"}}
		}
		f := diag.Finding{Check: "policy", Status: diag.OK, Message: fmt.Sprintf("policy version %d from %s, %d rule(s)", p.Version, p.Source, len(p.Rules))}
		if cfg.Policy.ManagerURL != "" {
			age := time.Since(p.Fetched).Round(time.Minute)
			f.Message += fmt.Sprintf(", last changed %v ago", age)
			if strings.HasPrefix(p.Source, "file ") {
				f.Status, f.Action = diag.Warn, "the policy manager's copy is not in use ("+strings.Join(notes, "; ")+"); check that the manager is reachable and its policy signed"
			}
		}
		return []diag.Finding{f}
	}}}
}
