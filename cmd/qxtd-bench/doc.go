// Command qxtd-bench measures what qxtd costs on the path of a message:
// the same SMPP load client and SMSC peer are run against each other
// directly and with qxtd between them, in one run, and the two are
// compared side by side (make bench-e2e).
//
// Both sides are this program's own code on go-smpp's PDU codec
// (github.com/fiorix/go-smpp/smpp/pdu), not qxtd's smpp package, so qxtd
// is measured against independent peers:
//
//   - the peer (peer.go), an SMSC on 127.0.0.1:0 in this process: any
//     bind accepted, every submit_sm answered at once with a hex
//     message_id, and when registered_delivery asks for it a DELIVRD
//     receipt (esm_class 0x04, Appendix B text, receipted_message_id and
//     message_state) -dlr-delay later, at most 1,000 per connection
//     awaiting deliver_sm_resp. One writer goroutine per connection
//     writes through a buffered writer, so the peer is not the
//     bottleneck;
//   - the load client (client.go), one transceiver bind keeping -window
//     submit_sm outstanding (or paced at -offered msg/s), -n messages to
//     distinct numbers 13800000000+i, receipts matched by
//     receipted_message_id (or the text's id:) to their submit;
//   - qxtd (daemon.go), `qxtd serve` as a subprocess, fresh for each qxtd
//     scenario, with a configuration derived from -config: the simulator
//     off, one upstream to the peer (-binds, -upstream-window,
//     -recording-slots), store.commit_delay from -commit-delay and
//     store.record_delay from -record-delay (when given; 0s too), an
//     enterprise with no whitelist, every scope, the biggest package with
//     no cap and the highest rate, its store in a temporary directory, log
//     level warn. It must say "ready" on /readyz (every bind up).
//
// The scenarios run in this order, each after a warm-up of -warmup
// messages: direct/no-receipts, qxtd/no-receipts, direct/receipts,
// qxtd/receipts.
//
// # Scenarios run only when named
//
// qxtd-cluster/no-receipts and qxtd-cluster/receipts (cluster.go) run qxtd
// in cluster mode as node 1 of an etcd the bench embeds, the bench
// enterprise with a spending cap (so quota blocks are taken): the report
// adds the etcd requests per 1,000 messages and the relayed rate and CPU
// per message against qxtd/no-receipts and qxtd/receipts of the same run.
// qxtd-cluster-relay/no-receipts and qxtd-cluster-relay/receipts run two
// nodes on that etcd sharing one bind to the peer (upstreams[].binds is
// the cluster's total): node 1 holds it, the client binds to node 2, so
// every segment goes through node 1 (POST /peer/v1/relay) and every
// receipt comes back through it (offered to node 2 as an orphan). The
// gateway CPU is both nodes'.
// direct/no-receipts+hog, qxtd/no-receipts+hog and qxtd/receipts+hog
// (hog.go) run with a busy loop at nice 19 beside them: the report adds
// their relayed rate against the same scenario without it, and the share
// of the machine's CPU the loop used meanwhile (what the rate may fairly
// lose). That hog is in
// qxtd's process group, where its nice value counts; with -hog-cgroup DIR
// (cgroup.go; root, or the right to write under DIR) qxtd, the hog and
// the bench each get a cgroup of their own, as systemd units would, and
// -gateway-weight sets qxtd's weight on systemd's CPUWeight scale.
//
// # Kannel, and qxtd over HTTP
//
// kannel/no-receipts and kannel/receipts (kannel.go) put Kannel 1.4.5
// (bearerbox and smsbox from Debian's kannel package) where qxtd is, with
// the same binds and window to the same peer: its file store, internal
// DLR storage, no throughput cap. Kannel's own ingress is HTTP (an SMPP
// server is the separate opensmppbox), so these run the HTTP load client
// (httpload.go): -window requests outstanding on keep-alive connections
// to smsbox's sendsms, and with receipts dlr-mask 3 and a dlr-url on a
// server in this process. qxtd-http/no-receipts and qxtd-http/receipts
// are qxtd behind the same client (POST /v1/messages, receipt_url;
// the derived configuration lets webhooks reach loopback, 128 at once,
// and 512 connections from one address). The report sets each qxtd row
// against Kannel's with the same receipts setting (relayed rate, full
// loop, CPU per message; the gateway CPU column is both boxes together
// for Kannel). A receipt Kannel logs it could not match ("got DLR but
// could not find message": it overtook its submit_sm_resp, on the other
// bind) never comes: it is counted as dropped and not waited for.
//
// kannel-bulk/… and qxtd-http-bulk/… are a group send: one text to -bulk
// numbers a request (100; qxtd's POST /v1/messages takes up to 1,000,
// Kannel's sendsms numbers separated by spaces in "to"), -bulk-window
// requests outstanding (4). Each message's answer latency is its
// request's; a receipt is matched by the number it names (qxtd's
// "recipient", Kannel's %p or %P in the dlr-url) within the request its
// URL names. The report sets qxtd-http-bulk against kannel-bulk.
// qxtd-http-personal/… is the same with each number its own text (POST
// /v1/messages/personalized: codes, names), which Kannel's sendsms has no
// counterpart of; set it against qxtd-http/… (a request each).
// -receipt-batch N sets the bench enterprise's receipt_batch (qxtd POSTs
// up to N receipts a request, {"receipts": [...]}; the receipt server
// reads either form).
//
// # The crash scenario
//
// qxtd/kill9 (kill.go) runs only when named: `bin/qxtd-bench -scenarios
// qxtd/kill9 -n 20000` (with -baseline BIN also for that binary). With
// receipts requested, the client submits -n messages (paced at -offered
// msg/s if set), each text carrying
// a token (its index); when half are acknowledged qxtd gets SIGKILL and is
// started again on the same store, configuration and ports, the client
// rebinds (retrying until -stall) and submits the rest, then the run waits
// (until -stall without progress) for every acknowledged message at the
// peer and its receipt at the client. A second table reports acked (and
// before the kill), unanswered (submits the kill left without an answer:
// neither acked nor lost), lost (acked, but neither its receipt at the
// client nor its token at the peer: the scenario fails if any), receipts
// missing (acked with no receipt at the client: the scenario fails if
// any, since the peer, as an SMSC does, holds the receipts a closed
// connection left unacknowledged or unsent and sends them on the next
// bind), receipts resent by the peer (how many it held: about one receipt
// delay's worth), not at the peer, peer
// duplicates (extra submit_sm of a token: qxtd's at-least-once relay
// window), duplicate receipts at the client, and the restart time
// (SIGKILL → /readyz ready, polled every 5 ms). -json puts these under
// "kill". What a kill duplicates depends on where it falls in the
// windows' batches and varies by a hundred or more from run to run: with
// -rounds, the spread line under the table gives the lowest, median and
// highest of both and of the restart time, and two builds compare only
// by that line over many rounds (`-rounds 9 -baseline OTHER`).
//
// # The restart scenario
//
// qxtd/restart (restart.go) runs only when named: `bin/qxtd-bench
// -scenarios qxtd/restart -queued 1000000 -rounds 3`. It times how soon a
// stopped qxtd serves again, on the same store and configuration: on
// an empty queue, and on a backlog of -queued messages taken over
// HTTP (POST /v1/messages, 1,000 numbers per request) while the upstream
// pointed at an address nobody listens on, so that they stayed queued
// (qxtd's qxtd_queue_segments must count them all, or the scenario
// fails). The timed starts are of a SIGTERM'd qxtd (a stop that needs
// SIGKILL, or exits with an error, fails the scenario), started again
// with the upstream at the peer, on the empty queue and on the backlog,
// and then of the same qxtd after a SIGKILL, on the backlog; from the
// exec, the table gives /readyz ready
// (polled every 5 ms; every bind to the peer up), an ESME's bind_resp
// (the client dials every 5 ms) and its first submit_sm_resp, while the
// backlog drains to the peer. The receipts the stopped binds leave at the
// peer are dropped, not sent to the next scenario's qxtd. The table also
// gives the store file's size per queued message after the backlog, and
// the backlog's drain once qxtd is up: the rate at which the peer gets
// the next -n messages (at most half of what is still queued) and qxtd's
// CPU per message meanwhile, with nothing else to do but relay them and
// take the peer's receipts (-binds, -upstream-window and
// -recording-slots set the upstream it drains through). -json
// puts these under "restart"; with -rounds, the row is the round with the
// median time to a bind on the backlog, and the spread line under the
// table gives the lowest, median and highest time to a bind of each start.
//
// # Many enterprises at once
//
// -tenants N (the SMPP scenarios: direct and qxtd, their +hog,
// qxtd-cluster) gives the bench N enterprises, BENCH, BENCH2 … each with
// one account (bench, bench2 …) and one transceiver bind of the client,
// and shares -n, -window and -offered out among them, all sending at once;
// the row is their messages together (tenants.go). With -window 100 and
// -tenants 100 every bind keeps one submit_sm outstanding: a stop-and-wait
// client, a PDU per read and per write on both sides.
//
// # Reading the table
//
//   - acked msg/s: -n over first submit → last submit_sm_resp at the
//     client. Through qxtd that is the rate it stores messages (an answer
//     means committed to disk), not yet the rate it relays them.
//   - relayed msg/s: -n over first submit → the peer's last submit_sm: the
//     throughput of the relay. Directly it equals acked.
//   - full loop msg/s (with receipts): -n over first submit → last
//     receipt at the client; it includes one -dlr-delay.
//   - gateway CPU µs/msg: qxtd's (or Kannel's two boxes') utime+stime (/proc/<pid>/stat, 10 ms
//     ticks) over the measured interval, per message. The interval ends
//     when the client has every answer (and receipt), the peer has every
//     submit and every receipt it sent was acknowledged: qxtd always asks
//     its SMSC for receipts, so through qxtd the peer sends them even in
//     the no-receipts scenarios, and their handling is counted.
//   - gateway disk KiB/msg: the bytes qxtd (or Kannel's two boxes) caused
//     to be written to storage over the same interval (/proc/<pid>/io
//     write_bytes), per message. bbolt rewrites whole 4 KiB pages, from
//     each changed leaf up to its bucket's root, at every commit: a
//     commit carrying one operation writes about as much as one carrying
//     sixty, so this falls as commits fill (full load, commit_delay).
//     Zero when the store is on tmpfs. The kernel counts a write as the
//     whole page-cache folio it dirties: qxtd builds before 2026-12-04
//     are counted 12 KiB a commit more than they write (bbolt's meta
//     pages sat in a 16 KiB folio; queue.OpenDB now caches them apart).
//   - bench CPU µs/msg: this process (client and peer together) over the
//     same interval, from getrusage.
//   - submit_sm_resp p50 / p99: from each submit to its answer at the
//     client. At full speed it is mostly queueing in the window (about
//     window / rate); use -offered (e.g. 5000) below the saturation rate
//     for the latency a paced sender sees.
//   - receipt p50 / p99: from each submit to its receipt at the client;
//     -dlr-delay (100 ms) of it is the peer's.
//   - … vs direct: the qxtd row against the direct row with the same
//     receipts setting (rates: below 1 is slower; latency: above 1 is
//     slower).
//
// Under it, for the rows through qxtd, a second table counts qxtd's own
// work per message over the same interval, from its /metrics:
// allocations and KiB allocated on the heap (go_memstats_mallocs_total,
// go_memstats_alloc_bytes_total), GC cycles in the interval, store
// commits per message and operations per commit (qxtd_store_commits_total,
// qxtd_store_ops_total). They hardly move from run to run, unlike CPU
// time on a shared machine, so a change that saves a few percent of the
// allocations or commits shows there in one run.
//
// A third table says what the rest of the machine did over each row's
// interval (machine.go), so that a round run beside a busy neighbour is
// not taken for a slower build: steal % (the share of the CPUs' time the
// hypervisor gave to other guests, /proc/stat), CPU pressure % (the share
// of the interval in which some task waited for a CPU,
// /proc/pressure/cpu "some"; – without pressure accounting; the gateway's
// and the bench's own waits count, so at full load it is high by itself:
// compare it between rounds of one scenario) and other
// cores (the CPU of every process but the gateway and the bench: another
// job, a +hog scenario's loop). -json puts them under "machine".
//
// With -rounds above 1 each row is the round with the median relayed
// rate, and a line per scenario under the table gives the lowest, median
// and highest relayed rate, gateway CPU, submit_sm_resp p99 and steal over
// the rounds: a tail latency or a CPU figure of one round on a shared
// machine can sit anywhere in that range.
//
// A run that makes no progress for -stall fails with the counts it got,
// and the whole run is bounded by -timeout; the exit status is 1 if any
// scenario failed or any submit_sm was refused. -json FILE writes one
// JSON line per scenario (its median round's, "round" saying which), and
// -json-rounds FILE one per round of every scenario, in the order they
// ran. With -rounds, -cpuprofile-dir keeps each round's profiles and
// metrics apart (qxtd-receipts.r2.pprof). qxtd's log lines at warn or above are counted
// and the first few printed per qxtd scenario.
//
// # Files
//
//	main.go      flags, the scenario loop, output
//	scenario.go  one scenario: warm-up, measured run, CPU, percentiles
//	client.go    the load client (windowed sender, receipt matching)
//	peer.go      the SMSC peer
//	wire.go      one connection: frames in, a buffered single writer out
//	daemon.go    qxtd as a subprocess: derived configuration, /readyz, CPU
//	kill.go      the crash scenario (SIGKILL, restart, lost and duplicates)
//	restart.go   the restart scenario (a backlog queued, timed starts, the drain)
//	tenants.go   -tenants: one bind per enterprise, the load shared out
//	kannel.go    Kannel as the gateway (configuration, the two boxes, CPU)
//	httpload.go  the HTTP load client and receipt server (Kannel, qxtd's API)
//	machine.go   what the rest of the machine did (steal, CPU pressure, other processes)
//	report.go    ratios, the markdown table, JSON lines
//	RESULTS.md   what the runs measured, dated, with their commands, and
//	             what was tried and not kept (the README says where it stands)
package main
