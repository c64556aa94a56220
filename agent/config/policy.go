package config

import "time"

// Policy configures the local policy and its synchronisation.
type Policy struct {
	// File is a local policy file used when no manager is configured.
	File string `conf:"file"`
	// ManagerURL is the customer's policy manager (HTTPS); empty for none.
	ManagerURL string `conf:"manager_url"`
	// ManagerCAFile pins the policy manager's CA.
	ManagerCAFile string        `conf:"manager_ca_file"`
	PollInterval  time.Duration `conf:"poll_interval"`
	// Approvers are the local users and groups (group:NAME) allowed to
	// answer requests that policy sends to a person.
	Approvers  []string      `conf:"approvers"`
	AskTimeout time.Duration `conf:"ask_timeout"`
}

func (p *Policy) setDefaults() {
	p.PollInterval = 15 * time.Minute
	p.AskTimeout = 10 * time.Minute
	p.Approvers = []string{"root"}
}
