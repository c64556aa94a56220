package config

import (
	"strings"
	"testing"
	"time"
)

// Tests of the [policy], [remote] and [audit] sections.

func TestSecuritySectionsDefaults(t *testing.T) {
	c, err := Parse("f.conf", []byte("[device]\nsystem_id = X\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.AskTimeout != 10*time.Minute || c.Policy.Approvers[0] != "root" {
		t.Errorf("policy defaults %+v", c.Policy)
	}
	if c.Remote.InboxMaxBytes != 16<<20 || c.Remote.ScriptTimeout != 5*time.Minute {
		t.Errorf("remote defaults %+v", c.Remote)
	}
	if idx, ok, err := c.Audit.CounterIndex(); err != nil || !ok || idx != 0x01800010 {
		t.Errorf("audit counter %x %v %v", idx, ok, err)
	}
}

func TestSecuritySectionsGood(t *testing.T) {
	c, err := Parse("f.conf", []byte(`[device]
system_id = X
[policy]
manager_url = https://127.0.0.1:9443/v1/policy
manager_ca_file = /etc/dcagent/pm-ca.pem
manager_key_file = /etc/dcagent/pm-key.pem
approvers = root, group:ops
socket_group = ops
ask_timeout = 30s
[remote]
services = ssh=127.0.0.1:22, console=localhost:443, v6=[::1]:8443
fetch_paths = /var/log/dcagent, /var/log/messages
idle_timeout = 1m
max_duration = 1h
[audit]
syslog_addr = 127.0.0.1:6514
syslog_tls = true
syslog_ca_file = /etc/dcagent/syslog-ca.pem
tpm_counter = none
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Remote.Services["v6"] != "[::1]:8443" || len(c.Remote.FetchPaths) != 2 || c.Policy.Approvers[1] != "group:ops" {
		t.Errorf("%+v %+v", c.Remote, c.Policy)
	}
	if _, ok, _ := c.Audit.CounterIndex(); ok {
		t.Error("tpm_counter = none still anchors")
	}
}

func TestSecuritySectionsErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{"[policy]\nmanager_url = http://pm:80/\n", "[policy] manager_url"},
		{"[policy]\nmanager_url = https://pm/\n", "manager_ca_file"},
		{"[policy]\nmanager_url = https://pm/\nmanager_ca_file = a\n", "manager_key_file"},
		{"[policy]\npoll_interval = 1s\n", "poll_interval"},
		{"[policy]\nask_timeout = 48h\n", "ask_timeout"},
		{"[policy]\napprovers = root, group:\n", "approvers"},
		{"[remote]\nservices = ssh=db.example:22\n", "IP address or localhost"},
		{"[remote]\nservices = SSH=127.0.0.1:22\n", "service name"},
		{"[remote]\nservices = ssh=127.0.0.1\n", "not host:port"},
		{"[remote]\nidle_timeout = 2h\nmax_duration = 1h\n", "max_duration"},
		{"[remote]\nfetch_paths = var/log\n", "fetch_paths"},
		{"[remote]\nfetch_paths = /var/log/../etc\n", "fetch_paths"},
		{"[remote]\nscript_timeout = 0s\n", "script_timeout"},
		{"[audit]\nsyslog_tls = true\nsyslog_addr = 127.0.0.1:6514\n", "syslog_ca_file"},
		{"[audit]\nsyslog_addr = nowhere\n", "syslog_addr"},
		{"[audit]\ntpm_counter = 0x81000001\n", "tpm_counter"},
		{"[audit]\ntpm_counter = 25165840\n", "tpm_counter"},
	}
	for _, c := range cases {
		_, err := Parse("f.conf", []byte("[device]\nsystem_id = X\n"+c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want it to name %q", c.in, err, c.want)
		}
	}
}
