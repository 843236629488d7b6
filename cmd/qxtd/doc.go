// Command qxtd is the SMPP 3.4 gateway daemon and its command line; the
// README is the user's guide.
//
// # Commands
//
//	qxtd serve --config FILE    the daemon: SMPP ingress, HTTP API, upstream binds
//	qxtd send …                 a test ESME: bind, submit, wait for the receipt
//	qxtd admin …                the account manager's operations, over /admin/v1
//	qxtd export dlr | bill | backup   billing exports and a hot backup, over /admin/v1
//	qxtd disk-check [DIR]       what the disk under DIR lets the store do
//	qxtd version, completion    build information, shell completion
//	                            (--version prints what version prints)
//
// One cobra command tree (run.go builds it; no package-level flags), run by
// run(args, stdout, stderr), which main wraps in os.Exit: tests call run.
// Exit status 0 done, 1 failure, 2 usage error.
//
// # Files
//
//	main.go, run.go     the command tree and exit codes
//	config.go           Config: the YAML file and QXTD_* environment, its one
//	                    table of defaults, validation naming the key
//	yamlbounds.go       the file's bounds (size, nesting, keys, values with aliases
//	                    expanded), checked before viper reads it
//	secrets.go          passwords and tokens from <key>_file; the QXTD_ environment
//	                    checked by name (an unknown variable is an error)
//	seed.go             the configuration's enterprises and accounts, for policy.Seed
//	serve.go            the daemon's wiring: the state file (queue.OpenDB) shared
//	                    by the queue and policy stores, the gateway, the SMPP and
//	                    HTTP listeners, signals and shutdown
//	reload.go           SIGHUP: re-read the file, apply what can change at run
//	                    time, log what needs a restart; the reload gauges
//	connlimit.go        the HTTP listeners' connection caps (in all, per address, per
//	                    network) and the idle connection closed for room at max_conns
//	version.go          what runs: the -ldflags values make build stamps
//	                    (version, commit, branch, date), completed from
//	                    runtime/debug.ReadBuildInfo; qxtd_build_info
//	logging.go          log.format auto (text on a terminal, JSON
//	                    otherwise) and UTC times in every log line
//	tls.go              TLS: SMPP over TLS, HTTPS (serveHTTP, for every
//	                    http.Server), certificates and CA bundles reloaded on
//	                    SIGHUP, the upstreams' TLS dialer
//	sdnotify.go         READY=1 to systemd once the listeners are up (Type=notify)
//	placeholder.go      the Debian package's placeholder upstream, refused by serve
//	clusterconfig.go    the cluster: section (cluster mode, README "Cluster")
//	cluster*.go         cluster mode's wiring: joining etcd, the shared state,
//	                    sessions and bind slots, the peer listener and the
//	                    adapters of package cluster to gateway and api (owners,
//	                    relays, deliveries, usage)
//	send.go             qxtd send
//	admin*.go, ops.go   the admin and operations commands (api.Client)
//
// Only this package reads configuration: it fills each package's Config and
// passes values to constructors.
package main
