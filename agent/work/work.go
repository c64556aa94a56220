// Package work defines the work items that heartbeat replies carry from
// the backend to the device, and their results. The heartbeat delivers an
// item and acknowledges it by id, so that it runs once even when a reply is
// lost; the daemon hands each kind to the part that does it. The backend
// (sim/) queues the same types.
package work

// Kind names what an item asks for.
type Kind string

const (
	KindRemoteAccess Kind = "remote_access"
	KindPolicyUpdate Kind = "policy_update"
	KindConfigUpdate Kind = "config_update"
	KindScript       Kind = "diagnostic_script"
	KindFileFetch    Kind = "file_fetch" // device → backend
	KindFilePut      Kind = "file_put"   // backend → device
	KindCollectNow   Kind = "collect_now"
)

// Item is one piece of work. Body is the CBOR encoding of the kind's
// struct below.
type Item struct {
	ID   string `cbor:"1,keyasint" json:"id"`
	Kind Kind   `cbor:"2,keyasint" json:"kind"`
	Body []byte `cbor:"3,keyasint,omitempty" json:"body,omitempty"`
}

// RemoteAccess asks the device to open a tunnel to the backend's relay and
// bridge it to a local service named in the device's configuration.
type RemoteAccess struct {
	SessionID      string `cbor:"1,keyasint" json:"session_id"`
	RelayAddr      string `cbor:"2,keyasint" json:"relay_addr"`
	Service        string `cbor:"3,keyasint" json:"service"`
	Requester      string `cbor:"4,keyasint" json:"requester"`
	ServiceRequest string `cbor:"5,keyasint" json:"service_request"`
}

// PolicyUpdate tells the device to fetch its policy now.
type PolicyUpdate struct {
	Reason string `cbor:"1,keyasint" json:"reason"`
}

// ConfigUpdate carries one configuration setting to change.
type ConfigUpdate struct {
	Section string `cbor:"1,keyasint" json:"section"`
	Key     string `cbor:"2,keyasint" json:"key"`
	Value   string `cbor:"3,keyasint" json:"value"`
}

// Script is a diagnostic script signed with the vendor's key.
type Script struct {
	Name        string `cbor:"1,keyasint" json:"name"`
	Content     []byte `cbor:"2,keyasint" json:"content"`
	Signature   []byte `cbor:"3,keyasint" json:"signature"`
	TimeoutSecs int    `cbor:"4,keyasint" json:"timeout_secs"`
}

// FileFetch asks for a file from a path that configuration allows.
type FileFetch struct {
	Path string `cbor:"1,keyasint" json:"path"`
}

// FilePut sends a file to the device's fixed inbox folder.
type FilePut struct {
	Name      string `cbor:"1,keyasint" json:"name"`
	Content   []byte `cbor:"2,keyasint" json:"content"`
	Signature []byte `cbor:"3,keyasint" json:"signature"`
}

// CollectNow asks for a full health report now.
type CollectNow struct{}

// Result is what the device reports about an item it ran.
type Result struct {
	ID     string `cbor:"1,keyasint" json:"id"`
	OK     bool   `cbor:"2,keyasint" json:"ok"`
	Detail string `cbor:"3,keyasint,omitempty" json:"detail,omitempty"`
}
