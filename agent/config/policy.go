package config

import (
	"net/url"
	"strings"
	"time"
)

// Policy configures the local policy, its synchronisation from the
// customer's policy manager, and who may answer requests that policy sends
// to a person.
type Policy struct {
	// File is a local policy file, used when no manager is configured (or
	// before the first copy from the manager arrives).
	File string `conf:"file"`
	// ManagerURL is the customer's policy manager (https://...); empty for
	// none.
	ManagerURL string `conf:"manager_url"`
	// ManagerCAFile pins the policy manager's CA (PEM); the system pool is
	// never used.
	ManagerCAFile string `conf:"manager_ca_file"`
	// ManagerKeyFile is the public key (PEM) that signs the manager's
	// policies; a policy whose signature does not verify is refused.
	ManagerKeyFile string        `conf:"manager_key_file"`
	PollInterval   time.Duration `conf:"poll_interval"`
	// Approvers are the local users and groups (group:NAME) allowed to
	// answer requests that policy sends to a person, checked by the peer
	// credentials of the control socket.
	Approvers []string `conf:"approvers"`
	// AskTimeout is how long a request waits for a person; unanswered
	// means denied.
	AskTimeout time.Duration `conf:"ask_timeout"`
	// SocketGroup is the group that owns the control socket (mode 0660),
	// so that approvers who are not root can reach it; empty keeps the
	// daemon's own group.
	SocketGroup string `conf:"socket_group"`
}

func (p *Policy) setDefaults() {
	p.PollInterval = 15 * time.Minute
	p.AskTimeout = 10 * time.Minute
	p.Approvers = []string{"root"}
}

func (p *Policy) validate() error {
	if p.ManagerURL != "" {
		u, err := url.Parse(p.ManagerURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return keyErr("manager_url", "%q is not an https:// URL", p.ManagerURL)
		}
		if p.ManagerCAFile == "" {
			return keyErr("manager_ca_file", "must be set with manager_url: it pins the policy manager's CA")
		}
		if p.ManagerKeyFile == "" {
			return keyErr("manager_key_file", "must be set with manager_url: policies from the manager are refused unless signed with this key")
		}
	}
	if p.PollInterval < 10*time.Second {
		return keyErr("poll_interval", "%v is shorter than 10s", p.PollInterval)
	}
	if p.AskTimeout < time.Second || p.AskTimeout > 24*time.Hour {
		return keyErr("ask_timeout", "%v is not between 1s and 24h", p.AskTimeout)
	}
	for _, a := range p.Approvers {
		name := strings.TrimPrefix(a, "group:")
		if name == "" || strings.ContainsAny(name, " :/") {
			return keyErr("approvers", "%q is not a user name or group:NAME", a)
		}
	}
	if strings.ContainsAny(p.SocketGroup, " :/") {
		return keyErr("socket_group", "%q is not a group name", p.SocketGroup)
	}
	return nil
}
