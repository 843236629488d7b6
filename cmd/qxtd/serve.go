package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "time/tzdata" // billing months follow Asia/Shanghai on any machine

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/console"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/loglimit"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/reminder"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

func newLogger(cfg LogConfig, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	_ = lv.UnmarshalText([]byte(strings.ToUpper(cfg.Level)))
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: utcTimes}
	if logFormat(cfg.Format, w) == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), lv
	}
	return slog.New(slog.NewJSONHandler(w, opts)), lv
}

func parseConcat(s string) (segment.Concat, error) {
	if s == "" {
		return segment.ConcatUDH8, nil
	}
	return segment.ParseConcat(s)
}

// daemon is a running qxtd: everything serve starts, in the order it
// must stop.
type daemon struct {
	log    *slog.Logger
	cfg    *Config  // what runs: the file at start and what reloads applied (reload.go)
	db     *bolt.DB // the state file: the queue's and the policy's buckets (queue.OpenDB)
	store  *queue.Store
	policy *policy.Policy
	api    *api.Server
	// console is the browser console (enterprise pages at /, the account
	// manager's desk at /ops/), made of the API's answers.
	console *console.Server
	level   *slog.LevelVar // changed at run time: PUT /admin/v1/log-level
	sim     *smpp.Simulator
	gw      *gateway.Gateway
	rem     *reminder.Service
	remRun  context.CancelFunc // stops the reminders' scheduler
	remWG   sync.WaitGroup

	hooks    *webhook.Sender
	hooksRun context.CancelFunc // stops the receipt and reply webhooks' sender
	hooksWG  sync.WaitGroup
	load     *loadMeter         // the last minute's load, for the status (load.go)
	loadRun  context.CancelFunc // stops its sampling
	loadWG   sync.WaitGroup
	smpp     *smpp.Server
	http     *http.Server
	ops      *http.Server // http.ops_listen: metrics, admin API, the desk; nil when unset
	wg       sync.WaitGroup

	reloadMetrics reloadMetrics
	tls           tlsState // certificates, keys and CA bundles SIGHUP reloads (tls.go)

	cluster      *clusterState // nil on a node of its own
	peerListener net.Listener  // cluster.peer_listen

	smppAddr, httpAddr, simAddr net.Addr
	smppTLSAddr                 net.Addr // smpp.tls_listen; nil without
	opsAddr                     net.Addr // nil without http.ops_listen
}

// serveCmd is `qxtd serve`: run the daemon until SIGTERM or SIGINT.
func serveCmd() *cobra.Command {
	var path, cpuProfile, memProfile, traceFile string
	var check bool
	c := &cobra.Command{
		Use:   "serve [--config FILE] [--check] [--cpuprofile FILE] [--trace FILE]",
		Short: "Run the daemon (--check: validate the configuration and exit)",
		Long: `Run the daemon: SMPP ingress, HTTP API, upstream binds, the store.
SIGTERM or SIGINT stops it gracefully; a second signal exits at once.
SIGHUP re-reads the configuration file and applies what can change at run
time (log.level, upstreams[].tps, new enterprises and accounts); the log
names the changed keys that need a restart. An invalid file is logged and
ignored.

--check loads and validates the configuration (unknown keys and bad values
are errors naming the key) and exits.

--cpuprofile writes a Go CPU profile of the whole run to FILE when the
daemon stops (for make bench-e2e and performance work; read it with
go tool pprof). --memprofile writes where the run allocated (a Go
allocation profile: go tool pprof -sample_index=alloc_space) to FILE when
the daemon stops. --trace writes a Go execution trace of the whole run to
FILE (where latency goes: go tool trace -pprof=sched FILE shows the time
goroutines waited for a CPU).`,
		Args: nargs(0, 0),
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := LoadConfig(path)
			if err != nil {
				return err
			}
			if check {
				for _, w := range cfg.secretWarnings {
					fmt.Fprintf(c.ErrOrStderr(), "warning: %s: secret file %s is readable by group or others (%s); make it 0600 or 0400\n", w.key, w.path, w.mode)
				}
				fmt.Fprintln(c.OutOrStdout(), "configuration ok:", path)
				if err := placeholderUpstreams(cfg, path); err != nil {
					fmt.Fprintln(c.ErrOrStderr(), "warning: qxtd serve will refuse to start:", err)
				}
				return nil
			}
			if err := placeholderUpstreams(cfg, path); err != nil {
				return err
			}
			tuneGC()
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			if memProfile != "" {
				f, err := os.Create(memProfile)
				if err != nil {
					return fmt.Errorf("--memprofile: %w", err)
				}
				defer f.Close()
				defer func() {
					if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
						fmt.Fprintln(c.ErrOrStderr(), "--memprofile:", err)
					}
				}()
			}
			if traceFile != "" {
				f, err := os.Create(traceFile)
				if err != nil {
					return fmt.Errorf("--trace: %w", err)
				}
				defer f.Close()
				if err := trace.Start(f); err != nil {
					return fmt.Errorf("--trace: %w", err)
				}
				defer trace.Stop()
			}
			return serve(path, cfg, c.ErrOrStderr())
		},
	}
	c.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	c.Flags().StringVar(&memProfile, "memprofile", "", "write an allocation profile of the run to this file when it stops")
	c.Flags().StringVar(&traceFile, "trace", "", "write an execution trace of the run to this file")
	c.Flags().StringVar(&path, "config", "configs/qxtd.yaml", "configuration file")
	c.Flags().BoolVar(&check, "check", false, "validate the configuration and exit")
	return c
}

// serve runs the daemon of cfg (read from path) until SIGTERM or SIGINT;
// SIGHUP reloads path (reload.go) and never stops it.
func serve(path string, cfg *Config, logw io.Writer) error {
	log, level := newLogger(cfg.Log, logw)
	logSecretWarnings(log, cfg.secretWarnings)
	// Signals are caught before anything starts: a SIGHUP while starting
	// waits for the reload instead of killing the daemon.
	hups := make(chan os.Signal, 1) // several HUPs during one reload: one more reload
	signal.Notify(hups, syscall.SIGHUP)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	d, err := start(cfg, log, level)
	if err != nil {
		signal.Stop(hups)
		signal.Stop(sigs)
		return err
	}
	// Type=notify: systemd's start completes once every listener is up.
	notifySocket := os.Getenv("NOTIFY_SOCKET")
	if err := sdNotify(notifySocket, "READY=1"); err != nil {
		log.Warn("telling systemd the daemon is ready", "err", err)
	}
	var s os.Signal
	var lost <-chan struct{}
	if d.cluster != nil {
		lost = d.cluster.lost
	}
	for s == nil {
		select {
		case <-lost:
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_ = sdNotify(notifySocket, "STOPPING=1")
			if err := d.shutdown(ctx); err != nil {
				log.Error("shutdown", "err", err)
			}
			return errors.New("cluster membership lost")
		case <-hups:
			log.Info("SIGHUP: reloading the configuration", "config", path)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			d.reload(ctx, path)
			cancel()
		case s = <-sigs:
		}
	}
	// From here on SIGHUP is still caught (hups is never read again): a
	// reload during shutdown is ignored rather than killing the daemon.
	log.Info("shutting down", "signal", s.String())
	_ = sdNotify(notifySocket, "STOPPING=1") // best effort: systemd sees the stop anyway
	go func() {
		<-sigs
		log.Warn("second signal: exiting at once")
		os.Exit(1)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return d.shutdown(ctx)
}

// start opens the store and brings every listener up; on error what was
// started is stopped again.
func start(cfg *Config, log *slog.Logger, level *slog.LevelVar) (_ *daemon, err error) {
	d := &daemon{log: log, level: level, cfg: cfg}
	defer func() {
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = d.shutdown(ctx)
		}
	}()
	if dir := filepath.Dir(cfg.Store.Path); dir != "" {
		if err := queue.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("store.path: %w", err)
		}
	}
	// The store calls back into the gateway, which is built over the
	// store: the gateway registers once both exist, before any traffic.
	qopt := queue.Options{Logger: log.With("component", "store"), NodeID: uint16(cfg.Cluster.NodeID), CommitDelay: cfg.Store.CommitDelay, RecordDelay: cfg.Store.RecordDelay, MaxOrphans: cfg.Store.MaxOrphans}
	opening := time.Now()
	if d.db, err = queue.OpenDB(cfg.Store.Path, qopt); err != nil {
		return nil, fmt.Errorf("store.path: %w", err)
	}
	d.store, err = queue.New(d.db, qopt)
	if err != nil {
		return nil, fmt.Errorf("store.path: %w", err)
	}
	// How long the open took says whether the file was walked for its free
	// pages (a crash while their list was too long to write: queue.CloseDB).
	var size int64
	if fi, err := os.Stat(cfg.Store.Path); err == nil {
		size = fi.Size()
	}
	log.Info("store opened", "path", cfg.Store.Path, "bytes", size, "took", time.Since(opening).Round(time.Millisecond).String())
	if cfg.Cluster.Enabled() {
		// Before policy reads its buckets: they are loaded from etcd.
		if d.cluster, err = d.joinCluster(cfg.Cluster, d.db); err != nil {
			return nil, err
		}
	}

	if cfg.Simulator.Enabled {
		d.sim = smpp.NewSimulator(smpp.SimOptions{
			SystemID: cfg.Simulator.SystemID,
			Password: cfg.Simulator.Password,
			DLRDelay: cfg.Simulator.DLRDelay,
			IDFormat: cfg.Simulator.IDFormat,
			MaxBinds: cfg.Simulator.MaxBinds,
			Faults:   smpp.Faults{Undeliv: cfg.Simulator.Undeliv, Throttle: cfg.Simulator.Throttle},
			Logger:   log,
		})
		l, err := net.Listen("tcp", cfg.Simulator.Listen)
		if err != nil {
			return nil, fmt.Errorf("simulator.listen: %w", err)
		}
		d.simAddr = l.Addr()
		d.goServe("simulator", func() error { return d.sim.Serve(l) })
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	build := currentBuild()
	reg.MustRegister(newBuildInfoCollector(build))
	d.reloadMetrics = newReloadMetrics(reg)
	receiptZone, err := cfg.SMPP.receiptZone()
	if err != nil {
		return nil, err
	}
	gcfg := gateway.Config{
		Validity:       cfg.Delivery.Validity,
		RetryMin:       cfg.Delivery.RetryMin,
		RetryMax:       cfg.Delivery.RetryMax,
		DLRRetry:       cfg.Delivery.DLRRetry,
		DLRWindow:      cfg.Delivery.DLRWindow,
		MOWindow:       cfg.Delivery.MOWindow,
		TenantShare:    cfg.Delivery.TenantShare,
		FailoverAfter:  cfg.Delivery.FailoverAfter,
		FailoverQueued: cfg.Delivery.FailoverQueued,
		OptOutKeywords: cfg.OptOut.Keywords,
		ESMEIdle:       cfg.SMPP.Idle,
		Retention:      cfg.Store.Retention,

		MaxBindsPerAccount:    cfg.SMPP.MaxBindsPerAccount,
		MaxBindsPerEnterprise: cfg.SMPP.bindsPerEnterprise(),

		ReceiptZone:                     receiptZone,
		ReassemblyTimeout:               cfg.SMPP.ReassemblyTimeout,
		ReassemblyMaxGroups:             cfg.SMPP.ReassemblyMaxGroups,
		ReassemblyMaxBytes:              cfg.SMPP.ReassemblyMaxBytes,
		ReassemblyMaxBytesPerEnterprise: cfg.SMPP.ReassemblyMaxBytesPerEnterprise,
		MOReassemblyTimeout:             cfg.SMPP.MOReassemblyTimeout,
		MOReassemblyMaxParts:            cfg.SMPP.MOReassemblyMaxParts,
		MOReassemblyMaxBytes:            cfg.SMPP.MOReassemblyMaxBytes,
	}
	for i, u := range cfg.Upstreams {
		concat, _ := parseConcat(u.Concat)                      // validated
		alphabet, _ := segment.ParseAlphabet(u.DefaultAlphabet) // validated
		receiptIDs, _ := gateway.ParseReceiptIDs(u.ReceiptIDs)  // validated
		dial, err := d.upstreamDial(i, u)
		if err != nil {
			return nil, err
		}
		var outbind *gateway.OutbindConfig
		if u.OutbindListen != "" {
			l, err := net.Listen("tcp", u.OutbindListen)
			if err != nil {
				return nil, fmt.Errorf("upstreams[%d].outbind_listen: %w", i, err)
			}
			// The gateway closes it when it stops; the address is logged
			// for the SMSC's operator (and the tests: port 0).
			outbind = &gateway.OutbindConfig{Listener: l, SystemID: u.OutbindSystemID, Password: u.OutbindPassword}
			log.Info("upstream outbind listening", "upstream", u.Name, "addr", l.Addr().String())
		}
		gcfg.Upstreams = append(gcfg.Upstreams, gateway.UpstreamConfig{
			Transmitters: u.BindMode == bindModeTx, Outbind: outbind,
			Name: u.Name, Addr: u.Addr, SystemID: u.SystemID, Password: u.Password,
			SystemType: u.SystemType, Binds: u.Binds, Receivers: u.receivers(), Window: u.Window, RecordingSlots: u.RecordingSlots, TPS: u.TPS,
			RespTimeout: u.RespTimeout, EnquireLink: u.EnquireLink, ReconnectMax: u.ReconnectMax,
			Segment:       segment.Options{Concat: concat, GSMPacked: u.GSMPacked, Alphabet: alphabet},
			PassPriority:  u.PassPriority,
			Carriers:      carrierNames(u.Carriers),
			ReceiptIDs:    receiptIDs,
			AcceptedFinal: u.Acceptd == acceptdFinal,
			MORespTimeout: u.MORespTimeout,
			Dial:          dial,
		})
	}
	pcfg, err := policyConfig(cfg)
	if err != nil {
		return nil, err
	}
	// The policy writes the store's file too, through the store
	// (queue.Store.Update): after a commit whose sync failed, no writer
	// writes a page before the disk has confirmed one again.
	pcfg.Write = d.store.Update
	if d.cluster != nil {
		pcfg.Shared = d.cluster.replica
		gcfg.Cluster = d.cluster.gateway
		pc := cluster.NewPeerClient(d.cluster.node.ID(), []byte(cfg.Cluster.Secret), d.cluster.peerHTTP)
		gcfg.Peers = clusterPeers{node: d.cluster.node, client: pc}
		gcfg.SubmitRelay = &clusterSubmitRelay{self: d.cluster.node.ID(), members: d.cluster.node.Members, client: pc} // submit_sm through a node with a bind
		gcfg.Owners = clusterOwners{node: d.cluster.node, client: pc}                                                  // cluster_route.go
		gcfg.MOPartPeers = clusterMOParts{node: d.cluster.node, client: pc}                                            // cluster_moparts.go
		if gcfg.Relay, err = d.cluster.openRelay(cfg.Cluster.Secret); err != nil {                                     // cluster_deliver.go
			return nil, err
		}
	}
	pol, err := policy.New(d.db, pcfg)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	seed, err := seedData(cfg)
	if err != nil {
		return nil, err
	}
	rep, err := pol.Seed(context.Background(), seed)
	if err != nil {
		return nil, fmt.Errorf("seeding enterprises and accounts from the configuration: %w", err)
	}
	log.Info("seeded from configuration", "enterprises_created", rep.EnterprisesCreated,
		"enterprises_kept", rep.EnterprisesKept, "users_created", rep.UsersCreated, "users_kept", rep.UsersKept,
		"whitelist_added", rep.WhitelistAdded)
	d.policy = pol
	registerWhitelistMetrics(reg, pol, time.Now)
	hm := newHostileMetrics(reg)
	// Binds go through the credential cache: a known-good rebind skips
	// bcrypt, and the slow checks of unknown ones are queued fairly per
	// source address, as many at once as policy's bcrypt slots.
	auth := gateway.NewAuthCache(gateway.AuthOptions{Concurrency: pcfg.AuthConcurrency, OnCheck: hm.bindCheck})
	d.gw, err = gateway.New(gcfg, d.store, gateway.Rules{P: pol, Auth: auth}, reg, log)
	if err != nil {
		return nil, err
	}
	d.store.SetCallbacks(d.gw.OnDLRReady, d.gw.ObserveCommit)
	d.hooks, err = webhook.New(webhook.Config{Store: d.store, Secret: func(code string) string {
		if e, ok := pol.Lookup(code); ok {
			return e.Receipt.Secret
		}
		return ""
	}, Previous: func(code string) string {
		if e, ok := pol.Lookup(code); ok {
			return e.Receipt.PreviousSecret(time.Now())
		}
		return ""
	}, Batch: func(code string) int {
		if e, ok := pol.Lookup(code); ok {
			return e.Receipt.Batch
		}
		return 1
	}, ReplyBatch: func(code string) int {
		if e, ok := pol.Lookup(code); ok {
			return e.Receipt.ReplyBatch
		}
		return 1
	}, ReplyURL: func(code string) string {
		if e, ok := pol.Lookup(code); ok {
			return e.Receipt.ReplyURL
		}
		return ""
	}, Workers: cfg.Webhooks.Workers, PerEnterprise: cfg.Webhooks.PerEnterprise, Timeout: cfg.Webhooks.Timeout,
		MaxAge: cfg.Webhooks.MaxAge, AllowPrivate: cfg.Webhooks.AllowPrivate, Registerer: reg,
		Logger: log.With("component", "webhooks")})
	if err != nil {
		return nil, err
	}
	d.store.SetHookCallback(d.hooks.HooksReady)
	d.store.SetReplyCallback(d.hooks.RepliesReady)
	hooksCtx, hooksRun := context.WithCancel(context.Background())
	d.hooksRun = hooksRun
	d.hooksWG.Go(func() { d.hooks.Run(hooksCtx) })
	d.gw.Start()

	d.smpp = smpp.NewServer(d.gw, smpp.ServerOptions{
		SystemID:        cfg.SMPP.SystemID,
		MaxConns:        cfg.SMPP.MaxConns,
		MaxUnboundPerIP: cfg.SMPP.MaxUnboundPerIP,
		OnReject:        hm.smppReject,
		OnFieldRefused:  hm.fieldRefused,
		LogLimit:        loglimit.Options{OnSuppress: hm.logSuppressed},
		Conn: smpp.ConnOptions{
			Window:        cfg.SMPP.Window,
			InboundWindow: cfg.SMPP.Window,
			IdleTimeout:   cfg.SMPP.Idle,
			RespTimeout:   30 * time.Second,
		},
		Logger: log.With("component", "smpp"),
	})
	sl, err := net.Listen("tcp", cfg.SMPP.Listen)
	if err != nil {
		return nil, fmt.Errorf("smpp.listen: %w", err)
	}
	d.smppAddr = sl.Addr()
	d.goServe("smpp", func() error { return d.smpp.Serve(sl) })
	if err := d.listenSMPPTLS(cfg); err != nil {
		return nil, err
	}

	hl, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	d.httpAddr = hl.Addr()
	// The reminders' scheduler: its first pass sends what came due while
	// the daemon was down (within reminders.grace).
	rcfg := reminder.Config{DB: d.db, Gateway: d.gw, Policy: d.policy, Write: d.store.Update,
		Grace: cfg.Reminders.Grace, Ahead: cfg.Reminders.Ahead, Logger: log.With("component", "reminders")}
	d.load = &loadMeter{read: func() loadSample {
		st := d.store.Stats()
		return loadSample{at: time.Now(), cpu: processCPU(), accepted: d.gw.Accepted(), commits: st.Txns, written: st.Written,
			byEnterprise: d.gw.AcceptedByEnterprise(), upstreams: d.gw.UpstreamCounts()}
	}}
	loadCtx, loadRun := context.WithCancel(context.Background())
	d.loadRun = loadRun
	d.loadWG.Go(func() { d.load.run(loadCtx) })
	acfg := api.Config{AdminToken: cfg.HTTP.AdminToken, Store: d.store, Policy: d.policy, Gateway: d.gw,
		WriteTimeout: cfg.HTTP.WriteTimeout, Webhooks: d.hooks, ReceiptSecretOverlap: cfg.Webhooks.SecretOverlap, Load: d.load.status, Logger: log.With("component", "api"),
		Registerer: reg}
	acfg.Managers = d.managers(cfg)
	if d.cluster != nil {
		rcfg.Shared = d.cluster.replica
		acfg.Sessions = d.cluster.sessions
		loads := d.clusterLoads(cfg) // cluster_load.go
		acfg.ClusterStatus = func(ctx context.Context, keep func(string) bool) *api.ClusterStatus {
			st := d.cluster.status()
			loads.fill(ctx, st, keep)
			return st
		}
		if acfg.PeerUsage, err = d.clusterUsage(cfg); err != nil { // cluster_usage.go
			return nil, err
		}
		acfg.PeerHooks = d.clusterHooks(cfg)     // cluster_hooks.go
		acfg.PeerLists = d.clusterLists(cfg)     // cluster_lists.go
		acfg.PeerAnswers = d.clusterAnswers(cfg) // cluster_answers.go
	}
	if d.rem, err = reminder.New(rcfg); err != nil {
		return nil, err
	}
	if d.cluster == nil { // in a cluster, the leader runs it (startCluster)
		remCtx, remRun := context.WithCancel(context.Background())
		d.remRun = remRun
		d.remWG.Go(func() { d.rem.Run(remCtx) })
	}
	acfg.Reminders = d.rem
	d.api = api.New(acfg)
	d.api.SetUploadLimits(api.UploadLimits{Total: cfg.HTTP.MaxImports, PerEnterprise: cfg.HTTP.MaxImportsPerEnterprise})
	if code := cfg.Policy.NotifyEnterprise; code != "" {
		d.api.SetPasswordNotifier(d.notifier(code, cfg.Policy.NotifySource))
	}
	d.console, err = console.New(console.Config{API: d.api.Handler(), Logger: log.With("component", "console")})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	// One listener for everyone (the demo), or with http.ops_listen two
	// by audience: enterprises reach /v1 and their console, operators and
	// Prometheus the rest. Both have the same timeouts and caps.
	// HTTPS (http.tls_cert_file) applies to both listeners.
	if err := d.loadHTTPCerts(cfg); err != nil {
		return nil, err
	}
	conns := newConnMetrics(reg)
	if d.cluster != nil {
		if err := d.startCluster(cfg, reg, conns); err != nil {
			return nil, err
		}
	}
	// Batch jobs a restart stopped go on, now that the gateway can send
	// as a member of the cluster, before anyone can list them.
	d.api.ResumeBatches()
	public := d.routes(reg)
	if cfg.HTTP.OpsListen != "" {
		ol, err := net.Listen("tcp", cfg.HTTP.OpsListen)
		if err != nil {
			_ = hl.Close()
			return nil, fmt.Errorf("http.ops_listen: %w", err)
		}
		d.opsAddr = ol.Addr()
		public = d.enterpriseRoutes()
		d.ops = d.httpServer(cfg.HTTP, d.opsRoutes(reg), "ops")
		opsLimited := conns.limit(ol, cfg.HTTP.MaxConns, cfg.HTTP.MaxConnsPerAddr, smpp.NetworkCap(cfg.HTTP.MaxConnsPerAddr))
		opsLimited.tls = d.tls.http != nil
		opsLimited.evictIdle(d.ops)
		d.goServe("ops", func() error { return serveHTTP(d.ops, opsLimited, d.tls.http) })
	}
	d.http = d.httpServer(cfg.HTTP, public, "http")
	limited := conns.limit(hl, cfg.HTTP.MaxConns, cfg.HTTP.MaxConnsPerAddr, smpp.NetworkCap(cfg.HTTP.MaxConnsPerAddr))
	limited.tls = d.tls.http != nil
	limited.evictIdle(d.http)
	d.goServe("http", func() error { return serveHTTP(d.http, limited, d.tls.http) })

	log.Info("qxtd ready", "smpp", d.smppAddr.String(), "http", d.httpAddr.String(), "ops", addrString(d.opsAddr),
		"smpp_tls", addrString(d.smppTLSAddr), "https", d.tls.http != nil,
		"simulator", addrString(d.simAddr), "store", cfg.Store.Path,
		"node", cfg.Cluster.NodeID, "peer", addrString(d.peerAddr()),
		"version", build.Version, "revision", build.Revision)
	return d, nil
}

// httpServer is an HTTP server of handler with the http.* timeouts; name
// tells its listener's log lines apart.
func (d *daemon) httpServer(cfg HTTPConfig, handler http.Handler, name string) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(d.log.With("component", "http", "listener", name).Handler(), slog.LevelWarn),
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// goServe runs a Serve loop; an error other than a normal close is logged.
func (d *daemon) goServe(name string, serve func() error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := serve()
		if err != nil && !errors.Is(err, smpp.ErrServerClosed) && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("serve", "listener", name, "err", err)
		}
	}()
}

// shutdown stops taking work, lets what is in flight finish (SMPP peers
// are unbound after their outstanding requests are answered), unbinds the
// upstreams and closes the store. Anything not yet sent stays in the store.
func (d *daemon) shutdown(ctx context.Context) error {
	if d.smpp != nil {
		_ = d.smpp.Shutdown(ctx)
	}
	if d.http != nil {
		_ = d.http.Shutdown(ctx)
	}
	if d.ops != nil {
		_ = d.ops.Shutdown(ctx)
	}
	if d.api != nil {
		d.api.Close() // running batch jobs stop ("failed: shutdown"); what they accepted is stored
	}
	if d.remRun != nil {
		d.remRun() // an occurrence being sent is recorded first
		d.remWG.Wait()
	}
	if d.cluster != nil {
		d.cluster.stopFollowing() // the reminders' scheduler too, if this node leads
	}
	if d.gw != nil {
		d.gw.Stop()
	}
	if d.hooksRun != nil {
		d.hooksRun() // a POST under way is finished (at most webhooks.timeout) and its 2xx recorded
		d.hooksWG.Wait()
	}
	if d.loadRun != nil {
		d.loadRun()
		d.loadWG.Wait()
	}
	if d.cluster != nil {
		d.cluster.stop(ctx) // after the gateway: its binds are unbound, their slots released
	}
	if d.peerListener != nil && (d.cluster == nil || d.cluster.peer == nil) {
		_ = d.peerListener.Close() // start failed before the peer server took it
	}
	if d.sim != nil {
		_ = d.sim.Close()
	}
	d.wg.Wait()
	if d.store != nil {
		if err := d.store.Close(); err != nil {
			return fmt.Errorf("close store: %w", err)
		}
	}
	if d.db != nil {
		if err := queue.CloseDB(d.db, d.log.With("component", "store")); err != nil {
			return fmt.Errorf("close store file: %w", err)
		}
	}
	d.log.Info("stopped")
	return nil
}

// routes is the one listener's handler without http.ops_listen: every
// audience on one port (the demo).
func (d *daemon) routes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	d.health(mux)
	d.operatorRoutes(mux, reg)
	mux.Handle("/v1/", d.api.Handler())
	mux.Handle("/", d.console.Handler())
	return mux
}

// enterpriseRoutes is http.listen's handler with http.ops_listen set: the
// user API and the enterprise console (the console's 404 answers
// /metrics, /admin/ and /ops/ here), and the health checks.
func (d *daemon) enterpriseRoutes() http.Handler {
	mux := http.NewServeMux()
	d.health(mux)
	mux.Handle("/v1/", d.api.Handler())
	mux.Handle("/", d.console.EnterpriseHandler())
	return mux
}

// opsRoutes is http.ops_listen's handler: metrics, the admin API, the
// account manager's desk (its 404 answers /v1/ and the enterprise pages),
// and the health checks.
func (d *daemon) opsRoutes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	d.health(mux)
	d.operatorRoutes(mux, reg)
	mux.Handle("/", d.console.DeskHandler())
	return mux
}

// operatorRoutes are the operators' and Prometheus's: /metrics and the
// admin API.
func (d *daemon) operatorRoutes(mux *http.ServeMux, reg *prometheus.Registry) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("PUT /admin/v1/log-level", d.api.Operator(d.setLogLevel))
	mux.Handle("/admin/", d.api.Handler())
}

// health adds /healthz and /readyz, served on every listener (a load
// balancer checks the port it sends to).
func (d *daemon) health(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := d.smpp.Healthy(); err != nil {
			http.Error(w, "the SMPP listener is not accepting: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		h := d.gw.Health()
		if !h.StoreWritable {
			http.Error(w, "the store's last commit failed (disk full or I/O error)", http.StatusServiceUnavailable)
			return
		}
		if d.cluster != nil {
			// upstreams[].binds is the cluster's total: a node holding
			// fewer, or none, sends through the nodes that hold them
			// (gateway/submitrelay.go), so its binds do not make it unready.
			var b strings.Builder
			fmt.Fprintf(&b, "ready: cluster node %d;", d.cluster.node.ID())
			for _, u := range h.Upstreams {
				fmt.Fprintf(&b, " upstream %s %d of %d binds here", u.Name, u.BindsUp, u.BindsConfigured)
				if u.ReceiversConfigured > 0 {
					fmt.Fprintf(&b, ", %d of %d receivers", u.ReceiversUp, u.ReceiversConfigured)
				}
				if u.RoutedAround {
					b.WriteString(", routed around") // no node has a bind of it up
				}
				b.WriteString(";")
			}
			_, _ = io.WriteString(w, strings.TrimSuffix(b.String(), ";")+"\n")
			return
		}
		if !d.gw.Ready() {
			http.Error(w, "no upstream bind is up", http.StatusServiceUnavailable)
			return
		}
		if h.Degraded() {
			// Still ready: messages are accepted and relayed over the
			// binds that are up. The body says which are down.
			var b strings.Builder
			b.WriteString("degraded:")
			for _, u := range h.Upstreams {
				if u.BindsUp < u.BindsConfigured {
					fmt.Fprintf(&b, " upstream %s %d/%d binds up", u.Name, u.BindsUp, u.BindsConfigured)
					if u.RoutedAround {
						// delivery.failover_after: its carriers go elsewhere.
						b.WriteString(", routed around")
					}
					b.WriteString(";")
				}
				if u.ReceiversUp < u.ReceiversConfigured {
					// Sending goes on; the receipts and replies wait at
					// the SMSC until a receiver is back.
					fmt.Fprintf(&b, " upstream %s %d/%d receivers up;", u.Name, u.ReceiversUp, u.ReceiversConfigured)
				}
			}
			_, _ = io.WriteString(w, strings.TrimSuffix(b.String(), ";")+"\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
}

// notifier sends qxtd's own SMS (password resets) as the operator's
// notification enterprise, through the same durable path as every other
// message. No receipt is requested: nobody binds to collect it.
func (d *daemon) notifier(enterprise, source string) func(ctx context.Context, mobile, text string) error {
	acct := &gateway.Account{SystemID: gateway.SystemAccount, Enterprise: enterprise}
	return func(ctx context.Context, mobile, text string) error {
		res, err := d.gw.Send(ctx, acct, gateway.SendRequest{Ingress: "http", Source: source, Dests: []string{mobile}, Text: text})
		if err != nil {
			return err
		}
		return res[0].Err
	}
}

// setLogLevel changes the log level of the running daemon: the body is
// one of debug, info, warn, error.
func (d *daemon) setLogLevel(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 64))
	name := strings.Trim(strings.TrimSpace(string(b)), `"`)
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(name))); err != nil || d.level == nil {
		http.Error(w, "log level: want debug, info, warn or error", http.StatusBadRequest)
		return
	}
	d.level.Set(lv)
	d.log.Warn("log level changed", "level", lv.String())
	_, _ = io.WriteString(w, lv.String()+"\n")
}

// carrierNames turns configured carrier names (any spelling ParseCarrier
// takes) into the canonical ones the gateway routes by.
func carrierNames(in []string) []string {
	var out []string
	for _, c := range in {
		if car, ok := policy.ParseCarrier(c); ok {
			out = append(out, car.String())
		}
	}
	return out
}

// gcPercent is the Go garbage collector's target unless the environment
// sets GOGC: qxtd's live heap is small (the store is the buffer, not
// memory), so letting it grow to five times its live size before a
// collection costs little memory and saves about a tenth of the CPU per
// message (make bench-e2e). memLimit keeps that growth bounded when the
// live heap is not small (a large upload being read): near it the
// collector runs as often as it must, as with GOGC=100 or below. Both
// give way to GOGC and GOMEMLIMIT in the environment.
const (
	gcPercent = 400
	memLimit  = 512 << 20
)

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memLimit)
	}
}

// managers is cfg's account managers as the API takes them, at start and
// on a reload. A group code that names no enterprise is not an error (the
// admin token may open it later), but a typo would leave the manager
// without it: the log says so.
func (d *daemon) managers(cfg *Config) []api.Manager {
	var out []api.Manager
	for _, m := range cfg.HTTP.AccountManagers {
		out = append(out, api.Manager{Name: m.Name, Token: m.Token, Enterprises: m.Enterprises, ReadOnly: m.ReadOnly})
		for _, code := range m.Enterprises {
			if _, ok := d.policy.Lookup(code); !ok {
				d.log.Warn("an account manager's enterprise does not exist (yet)", "manager", m.Name, "enterprise", code)
			}
		}
	}
	return out
}
