package config

// Backend says where the vendor's support backend is and how to trust it.
type Backend struct {
	// URL is the HTTPS base of the backend: enrollment, events, HTTPS
	// heartbeat fallback, e.g. https://support.example.net:8443.
	URL string `conf:"url"`
	// HeartbeatAddr is the host:port of the DTLS heartbeat service (UDP).
	HeartbeatAddr string `conf:"heartbeat_addr"`
	// CAFile is the vendor CA, PEM. It is the only trust anchor: the
	// system pool is never used.
	CAFile string `conf:"ca_file"`
}

func (b *Backend) setDefaults() { b.CAFile = "/etc/dcagent/vendor-ca.pem" }
