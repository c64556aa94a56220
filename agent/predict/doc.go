// Package predict turns drive health readings into a risk level per drive,
// with reasons a person can read, and tells a failing backplane or cable
// from failing drives.
//
// # Levels
//
//   - ok: nothing the field studies below tie to failure.
//   - watch: a signal worth following that on its own rarely ends in a
//     failure soon: a stable count of remapped sectors, worn flash near its
//     rated endurance, a short trip above the drive's warning temperature,
//     interface (CRC or link) errors that point at a slot or cable.
//   - warn: the drive is losing data or is likely to fail: unreadable
//     (pending or offline-uncorrectable) sectors, errors reported to the
//     host that the drive could not correct, media counters that grew
//     recently, an attribute that failed in the past, endurance used up.
//   - fail: ship a part. The drive's own verdict is FAILED, an attribute is
//     at or below its failure threshold now, an NVMe drive reports degraded
//     reliability, read-only media or spare below threshold, or its media
//     counters are rising fast or day after day, or it has more than a
//     hundred sectors it cannot read.
//
// Every rule adds a reason; the level is the highest of them. Reasons are
// ordered from the most to the least severe.
//
// # Where the rules come from
//
// Pinheiro, Weber and Barroso, "Failure Trends in a Large Disk Drive
// Population" (FAST '07, Google): of the SMART signals, scan errors,
// reallocations, offline reallocations and probational (pending) sectors
// had the strongest link to failure; a drive's first such event made it
// many times more likely to fail in the following months, while a large
// share of the drives that failed showed none of them. So any count above
// zero is at least watch, pending and offline-uncorrectable sectors are
// warn, and this package never claims a drive is healthy, only that it shows
// none of the known signals. The same study found temperature only weakly
// tied to failure except at the extremes, so temperature alone never makes
// a drive fail here, and only excursions above the drive's own limits
// count.
//
// Backblaze's published drive statistics (the "what SMART stats tell us"
// analyses of its fleet) single out five ATA attributes: 5 (reallocated
// sectors), 187 (reported uncorrectable), 188 (command timeouts), 197
// (current pending sectors) and 198 (offline uncorrectable). Most of the
// drives that failed had at least one of them above zero while only a small
// share of working drives did; 188 was the weakest of the five. Those five
// are the ATA counters read here, with 188 at watch. Seagate packs three
// 16-bit counters into attribute 188's raw value; the low word is the total
// number of timeouts and is what this package reads.
//
// Schroeder, Lagisetty and Merchant, "Flash Reliability in Production: The
// Expected and the Unexpected" (FAST '16, Google's data-center SSDs):
// uncorrectable errors are common on flash and a drive's earlier errors
// predict its later ones better than its wear does; drives that develop bad
// blocks tend to develop more. So NVMe media errors are warn at any count
// and their growth counts like that of a hard drive's pending sectors,
// while percentage used (wear) is only watch near 100 % and warn past it.
// The NVMe critical-warning bits and the spare threshold are the drive's
// own verdict (NVMe base specification, SMART / Health Information log) and
// are taken as such.
//
// SAS drives have no SMART attributes: the grown defect list counts
// sectors remapped in service (read like ATA 5) and the error counter log's
// uncorrected read, write and verify errors are read like ATA 187.
//
// The exact lines between watch, warn and fail (a hundred sectors, fifty
// new ones in a day, growth on three separate days) are this package's
// choices, not figures from the studies, which show that risk rises with
// the count and with recent growth but draw no line. They are settings in
// the [predict] section of the configuration.
//
// # History
//
// Growth weighs more than level: a drive that has had 8 reallocated sectors
// for two years is at watch, one whose count grew by 8 today is at warn.
// Each drive's readings are kept per serial number in a small file (see
// History and Store): delta-encoded samples, thinned with age (one per
// ten minutes for two days, per three hours for two weeks, per twelve
// hours for three months, per two days after that, each keeping the
// newest counters, the highest temperature and the time spent above the
// drive's limits) and capped at 64 KiB; a year of half-hourly readings is
// about 480 samples and 3 to 5 KiB. Files are written atomically, so a
// crash leaves the old or the new one. A drive replaced in a slot has a new
// serial and so starts a new history; a file whose model, WWN or power-on
// hours show that another drive now carries the same serial is started
// afresh too.
//
// # Backplane and cable
//
// Interface errors (ATA 199 UDMA CRC, SAS invalid DWORD, loss of sync and
// phy resets) count transfers the link between host and drive got wrong,
// not media damage. When they rise on two or more drives behind the same
// enclosure within a window while those drives' media counters stay flat,
// the verdict is "backplane or cable suspected", naming the enclosure and
// slots, and the drives stay at watch. One drive alone with rising
// interface errors points at its own slot or cable. NVMe drives report no
// link error counter in the SMART log, so they take no part.
package predict
