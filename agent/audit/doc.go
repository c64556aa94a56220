// Package audit is the agent's append-only, hash-chained audit log: every
// remote session (start, end, bytes, who, service request), script run,
// file transfer, policy change, authorisation decision and local use of
// the control socket becomes one record, written and fsynced before the
// action it records is reported done.
//
// # Files
//
// In the audit directory (<state_dir>/audit, mode 0700):
//
//   - audit.log: one JSON record per line (see Record). Each record holds
//     its sequence number, the hash of the record before it and its own
//     hash (SHA-256 over everything else in the line), so a record edited,
//     removed, moved or inserted breaks the chain where it happened, and
//     Verify names the first bad line and what is wrong with it.
//   - audit.head: the last record written (seq, hash, counter value), so
//     that a log cut short at a record boundary is noticed.
//   - audit.syslog: how far the syslog server has acknowledged (Syslog).
//   - audit.log.broken-<time>: a log that failed verification at start,
//     kept as evidence; the new log's first record names it and its
//     problem.
//   - audit.log.torn: the incomplete last line a power loss left, if any.
//
// # Anchors: what makes a cut or rewrite visible
//
// A hash chain proves nothing by itself against someone who can write the
// files: SHA-256 needs no key, so whoever edits a record can recompute every
// hash after it, and whoever deletes the last records can rewrite the head
// file to match. The chain's head is therefore anchored outside the files:
//
//   - With a TPM (the normal case on a device: Options.Counter), in the
//     TPM's NV monotonic counter. Every record carries the counter value it
//     brought the counter to, and the counter is incremented right after
//     the record is synced. The counter can only go up; even an attacker
//     with root who deletes and redefines the NV index gets a counter that
//     starts at the highest value the TPM ever held. So the log can never
//     become shorter than what the TPM counted: a log cut short, or a log
//     replaced by an older copy of itself, is reported ("the TPM counter
//     counted N more records"). Open reads the counter, and `dcagent audit
//     verify` does the same.
//   - Without a TPM, in the syslog stream (Syslog): each record goes, as it
//     is written, to the customer's syslog server, which keeps a copy
//     outside the device. CompareWithCopy (`dcagent audit verify
//     --against FILE`) checks the local log against that copy: any record
//     the server received and that was changed, removed or cut off later,
//     even with the whole chain recomputed, and any whole log removed, is
//     reported. Records of an earlier log must still be in the file it was
//     set aside in (audit.log.broken-*), unchanged: what the current log's
//     first record claims about its predecessor is written by whoever can
//     write the files, so it accounts for nothing by itself. Until a
//     record reaches the server, only the head file protects it, and the
//     head file can be rewritten.
//
// The two combine: with both, the TPM pins the length and the syslog copy
// the content.
//
// What an attacker who can read and write the files can do, and what not:
//
//   - They cannot change, remove, reorder or insert a record without the
//     chain showing it, unless they recompute the chain from that point on.
//   - If they recompute it, the TPM counter still shows any record removed
//     from the end, and the syslog copy shows any record changed or removed
//     that the server had received.
//   - They can append forged records at the end, and, without a syslog
//     server, rewrite the content of the log while keeping its length
//     (with a TPM) or outright (without one). Nothing local can prevent
//     that without a key the attacker cannot use; stream to syslog.
//   - Deleting the whole log and its head file makes Open start a new log.
//     The new log's first record carries the counter value it started at,
//     and the syslog copy then holds records of a log the device no longer
//     has, which CompareWithCopy reports. The same holds for a log set
//     aside as broken whose file is then deleted, and for a forged log
//     that names the real one as its predecessor.
//   - A log that replaced a broken one says so in its first record for
//     its whole life (Report.Previous), whatever the daemon remembers.
//
// Open verifies the whole log at start. A log that fails is set aside and
// a new one begins (the daemon keeps recording; Recovered returns what was
// wrong); an incomplete last line from a power loss is moved aside and a
// repair record says so; a counter one increment behind (the agent stopped
// between writing a record and incrementing) is caught up, also recorded.
package audit
