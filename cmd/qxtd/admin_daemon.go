package main

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qxtd/qxtd/api"
)

// The admin routes about the daemon rather than an enterprise: the package
// table, the health summary and the log level, so that every admin route
// `qxtd admin` has a use for is reachable without curl.

func (a *adminCLI) packageList() *cobra.Command {
	return a.leaf("list", "List the configured package table (套餐)", 0, 0, func(c *cobra.Command, cl *api.Client, _ []string) error {
		pkgs, err := cl.Packages()
		if err != nil {
			return err
		}
		return a.out(c, api.PackageList{Packages: pkgs}, func(w io.Writer) {
			fmt.Fprintln(w, "ID\tFEE\tINCLUDED\tOVERAGE")
			for _, p := range pkgs {
				fmt.Fprintf(w, "%d\t%s CNY\t%d\t%s CNY\n", p.ID, p.FeeYuan, p.Included, p.OverageYuan)
			}
		})
	})
}

// daemonWhoami prints whom the token acts as: a token pasted from a
// password manager, or a manager's after a reload, is checked without
// trying a change.
func (a *adminCLI) daemonWhoami() *cobra.Command {
	return a.leaf("whoami", "Whom the token acts as: the account manager, its enterprises, read-only", 0, 0, func(c *cobra.Command, cl *api.Client, _ []string) error {
		who, err := cl.OperatorSession()
		if err != nil {
			return err
		}
		return a.out(c, who, func(w io.Writer) {
			fmt.Fprintf(w, "name\t%s\n", who.Name)
			if who.Enterprises == nil {
				fmt.Fprintln(w, "enterprises\tevery enterprise")
			} else {
				fmt.Fprintf(w, "enterprises\t%s\n", strings.Join(who.Enterprises, ", "))
			}
			fmt.Fprintf(w, "read_only\t%s\n", yesNo(who.ReadOnly))
		})
	})
}

func (a *adminCLI) daemonStatus() *cobra.Command {
	return a.leaf("status", "Binds, store, queue, refusals and the last minute's load of the running daemon", 0, 0, func(c *cobra.Command, cl *api.Client, _ []string) error {
		st, err := cl.Status()
		if err != nil {
			return err
		}
		return a.out(c, st, func(w io.Writer) {
			fmt.Fprintf(w, "store_writable\t%s\n", yesNo(st.StoreWritable))
			if l := st.Load; l != nil {
				cost := "no message accepted"
				if l.CPUMicrosPerMessage != nil {
					cost = fmt.Sprintf("%.0f µs CPU a message", *l.CPUMicrosPerMessage)
				}
				fmt.Fprintf(w, "load (last %.0f s)\t%.1f msg/s accepted (%d), %.2f CPU cores, %s, %.0f store commits/s, %.1f MiB/s written\n",
					l.Seconds, l.AcceptedPerSecond, l.Accepted, l.CPUCores, cost, l.CommitsPerSecond, l.WrittenBytesPerSecond/(1<<20))
				for _, u := range l.Upstreams {
					fmt.Fprintf(w, "load upstream %s\t%s\n", u.Name, upstreamLoad(u))
				}
				for _, e := range l.TopEnterprises {
					fmt.Fprintf(w, "load by %s\t%.1f msg/s accepted (%d, %s)\n", e.Enterprise, e.AcceptedPerSecond, e.Accepted, sharePercent(e.Accepted, l.Accepted))
				}
			}
			if cl := st.Cluster; cl != nil {
				for _, m := range cl.Members {
					self := ""
					if m.ID == cl.Node {
						self = " (this node)"
					}
					fmt.Fprintf(w, "node %d %s%s\t%s\n", m.ID, m.Name, self, memberLoad(m.Load))
				}
				for _, part := range cl.ConfigDiffers {
					var each []string
					for _, m := range cl.Members {
						each = append(each, fmt.Sprintf("node %d %s", m.ID, cmp.Or(m.ConfigDigests[part], "none")))
					}
					fix := "restart every node with the same file"
					if part == digestManagers {
						fix = "reload every node with the same file"
					}
					fmt.Fprintf(w, "cluster config differs\t%s unlike between the nodes (%s): %s\n", part, strings.Join(each, ", "), fix)
				}
				if l := cl.Load; l != nil {
					fmt.Fprintf(w, "cluster load (%d of %d nodes)\t%.1f msg/s accepted (%d), %.2f CPU cores\n",
						l.Members, len(cl.Members), l.AcceptedPerSecond, l.Accepted, l.CPUCores)
					atLeast := ""
					if l.TopPartial {
						atLeast = "at least "
					}
					for _, e := range l.TopEnterprises {
						fmt.Fprintf(w, "cluster load by %s\t%s%.1f msg/s accepted (%d, %s)\n", e.Enterprise, atLeast,
							e.AcceptedPerSecond, e.Accepted, sharePercent(e.Accepted, l.Accepted))
					}
				}
			}
			for _, u := range st.Upstreams {
				fmt.Fprintf(w, "upstream %s\t%d/%d binds up", u.Name, u.BindsUp, u.BindsConfigured)
				if u.ReceiversConfigured > 0 {
					fmt.Fprintf(w, ", %d/%d receivers up", u.ReceiversUp, u.ReceiversConfigured)
				}
				if u.OutbindSessions > 0 {
					fmt.Fprintf(w, ", %d outbind sessions", u.OutbindSessions)
				}
				if u.RoutedAround {
					fmt.Fprint(w, ", routed around (its carriers go to the next upstream)")
				}
				fmt.Fprintf(w, ", %d segments queued\n", u.Queued)
			}
			for _, s := range []string{"accepted", "submitted", "delivered", "undeliverable", "expired", "rejected", "unknown", "cancelled", "waiting"} {
				if n, ok := st.Queue[s]; ok {
					fmt.Fprintf(w, "queue %s\t%d\n", s, n)
				}
			}
			for _, r := range st.Refusals {
				if r.Count > 0 {
					fmt.Fprintf(w, "refused %s\t%d\n", r.Reason, r.Count)
				}
			}
			for _, kind := range []struct {
				what string
				fs   []api.FailingWebhook
			}{{"receipt", st.ReceiptWebhooksFailing}, {"reply", st.ReplyWebhooksFailing}} {
				for _, f := range kind.fs {
					since := ""
					if f.Last.FailingSince != nil {
						since = "since " + f.Last.FailingSince.Format(time.RFC3339) + ": "
					}
					fmt.Fprintf(w, "%s webhook failing %s\t%s%s\n", kind.what, f.Enterprise, since, f.Last.Error)
				}
			}
		})
	})
}

// sharePercent is part's share of all, at most 100 %: the two counts are
// read a moment apart, so a message counted between may make a share
// over it.
func sharePercent(part, all uint64) string {
	share := 100.0
	if part < all {
		share = 100 * float64(part) / float64(all)
	}
	return fmt.Sprintf("%.0f%%", share)
}

// upstreamLoad is an upstream's part of the load on one line.
func upstreamLoad(u api.UpstreamLoad) string {
	out := fmt.Sprintf("%.1f segments/s relayed (%d), %d throttled, %d failed", u.RelayedPerSecond, u.Relayed, u.Throttled, u.Failed)
	if u.SubmitMeanMS != nil {
		out += fmt.Sprintf(", %.1f ms mean answer", *u.SubmitMeanMS)
	}
	switch {
	case u.PacePerSecond == nil:
		out += ", no pace limit"
	case *u.PacePerSecond == 0:
		out += ", pace 0/s (no bind up here)"
	case u.TPS > 0:
		out += fmt.Sprintf(", pace %.0f/s (tps %.0f)", *u.PacePerSecond, u.TPS)
	default:
		out += fmt.Sprintf(", pace %.0f/s", *u.PacePerSecond)
	}
	return out + fmt.Sprintf(", %d of %d in flight", u.InFlight, u.Slots)
}

// memberLoad is a cluster member's last minute on one line.
func memberLoad(l *api.LoadStatus) string {
	if l == nil {
		return "load unknown: no answer within 2 s"
	}
	out := fmt.Sprintf("%.1f msg/s accepted, %.2f CPU cores", l.AcceptedPerSecond, l.CPUCores)
	if l.CPUMicrosPerMessage != nil {
		out += fmt.Sprintf(", %.0f µs CPU a message", *l.CPUMicrosPerMessage)
	}
	if len(l.TopEnterprises) > 0 {
		out += fmt.Sprintf(", most from %s (%.1f msg/s)", l.TopEnterprises[0].Enterprise, l.TopEnterprises[0].AcceptedPerSecond)
	}
	return out
}

func (a *adminCLI) daemonLogLevel() *cobra.Command {
	return a.leaf("log-level debug|info|warn|error", "Change the running daemon's log level (until it restarts)", 1, 1, func(c *cobra.Command, cl *api.Client, args []string) error {
		switch lv := strings.ToLower(args[0]); lv {
		case "debug", "info", "warn", "error":
			now, err := cl.SetLogLevel(c.Context(), lv)
			if err != nil {
				return err
			}
			return a.done(c, "log level "+now)
		default:
			return usagef("daemon log-level: %q: want debug, info, warn or error", args[0])
		}
	})
}
