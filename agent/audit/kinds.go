package audit

// Record kinds. Each names what happened; Fields carry the details (listed
// beside each kind). Every kind is at most 32 characters, because it is also
// the syslog MSGID.
const (
	// KindStart opens a log: log_id, anchor (tpm-nv-counter or none), and
	// when the log replaced a broken one: previous_file, previous_problem.
	KindStart = "audit.start"
	// KindAnchor starts or stops TPM counter anchoring in a running log:
	// anchor (tpm-nv-counter or none).
	KindAnchor = "audit.anchor"
	// KindRepair notes a repair at start: torn_bytes (an incomplete last
	// line from a power loss, kept in audit.log.torn), counter (an
	// interrupted counter increment finished).
	KindRepair = "audit.repair"

	// KindDecision is an authorisation decision: action, effect, rule,
	// request (id), requester, service_request.
	KindDecision = "policy.decision"
	// KindAskAnswered is a local person's answer to an ask: request,
	// answer (approve/deny/timeout), by.
	KindAskAnswered = "policy.ask.answered"
	// KindPolicyChange is a new policy taking effect: source, version,
	// digest, previous_version.
	KindPolicyChange = "policy.change"
	// KindPolicyRejected is a policy refused: source, reason.
	KindPolicyRejected = "policy.rejected"

	// KindSessionStart is a remote session opened: session, service,
	// target, relay, requester, service_request.
	KindSessionStart = "remote.session.start"
	// KindSessionEnd is a remote session closed: session, reason,
	// bytes_to_device, bytes_from_device, duration.
	KindSessionEnd = "remote.session.end"
	// KindSessionFailed is a session that could not be opened: session,
	// reason.
	KindSessionFailed = "remote.session.failed"

	// KindScriptRun is a diagnostic script run: name, digest, exit_code,
	// status, duration, output_bytes.
	KindScriptRun = "script.run"
	// KindScriptRefused is a script not run: name, reason.
	KindScriptRefused = "script.refused"
	// KindFileFetch is a file sent home: path, size, digest, chunks,
	// transfer (or reason when refused).
	KindFileFetch = "file.fetch"
	// KindFilePut is a file received into the inbox: name, size, digest
	// (or reason when refused).
	KindFilePut = "file.put"

	// KindLocalRequest is a use of the daemon's control socket: method,
	// uid, pid, user, allowed, error.
	KindLocalRequest = "local.request"
)
