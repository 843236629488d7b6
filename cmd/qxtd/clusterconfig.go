package main

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// ClusterConfig is cluster mode (package cluster): N qxtd nodes that share
// accounts, quotas, carrier binds and receipts through etcd. With no
// etcd_endpoints qxtd is one node on its own, exactly as without this
// section.
type ClusterConfig struct {
	// EtcdEndpoints are the etcd members' client addresses (host:port).
	// Empty: no cluster.
	EtcdEndpoints []string `mapstructure:"etcd_endpoints"`
	// NodeID names this node in the cluster, 1..65535, unique: it is the
	// top 16 bits of every message id this node creates, so any node can
	// tell a message's owner.
	NodeID int `mapstructure:"node_id"`
	// Name is for people (logs, /admin/v1/status); default node-<id>.
	Name string `mapstructure:"name"`
	// PeerListen is where the other nodes reach this one (receipts that
	// came in on another node's bind, messages asked of their owner).
	PeerListen string `mapstructure:"peer_listen"`
	// PeerURL is the address the others use for PeerListen, when it is not
	// http://<peer_listen> (a wildcard listen, NAT).
	PeerURL string `mapstructure:"peer_url"`
	// Secret authenticates node-to-node requests (HMAC-SHA256); every node
	// has the same one, at least 16 bytes.
	Secret     string `mapstructure:"secret"`
	SecretFile string `mapstructure:"secret_file"`
	// Prefix is where this cluster's keys live in etcd, so one etcd can
	// serve several clusters.
	Prefix string `mapstructure:"prefix"`
	// LeaseTTL: a node that stops answering etcd loses its binds, its
	// quota blocks and its membership this long after.
	LeaseTTL time.Duration `mapstructure:"lease_ttl"`
	// QuotaBlock is how many segments of an enterprise's month a node
	// takes from the shared counter at a time (enterprises with a limit).
	QuotaBlock int64 `mapstructure:"quota_block"`
	// EtcdUsername and EtcdPassword when etcd has authentication on.
	EtcdUsername     string `mapstructure:"etcd_username"`
	EtcdPassword     string `mapstructure:"etcd_password"`
	EtcdPasswordFile string `mapstructure:"etcd_password_file"`
}

// Enabled tells cluster mode on.
func (c ClusterConfig) Enabled() bool { return len(c.EtcdEndpoints) > 0 }

// AdvertisedPeerURL is the URL the other nodes use for this one.
func (c ClusterConfig) AdvertisedPeerURL() string {
	if c.PeerURL != "" {
		return strings.TrimRight(c.PeerURL, "/")
	}
	return "http://" + c.PeerListen
}

// minClusterSecret is the shortest node-to-node secret accepted.
const minClusterSecret = 16

func (c ClusterConfig) validate() []error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	for i, e := range c.EtcdEndpoints {
		if _, _, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(e, "http://"), "https://")); err != nil {
			errs = append(errs, fmt.Errorf("cluster.etcd_endpoints[%d]: bad address %q: %w", i, e, err))
		}
	}
	if c.NodeID < 1 || c.NodeID > 65535 {
		errs = append(errs, fmt.Errorf("cluster.node_id: %d must be 1..65535 (and unique in the cluster)", c.NodeID))
	}
	if c.PeerListen == "" {
		errs = append(errs, fmt.Errorf("cluster.peer_listen: required in cluster mode"))
	} else if host, _, err := net.SplitHostPort(c.PeerListen); err != nil {
		errs = append(errs, fmt.Errorf("cluster.peer_listen: bad address %q: %w", c.PeerListen, err))
	} else if c.PeerURL == "" && (host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified()) {
		errs = append(errs, fmt.Errorf("cluster.peer_url: required when cluster.peer_listen %q listens on every address (the others need one they can reach)", c.PeerListen))
	}
	if c.PeerURL != "" {
		if u, err := url.Parse(c.PeerURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("cluster.peer_url: %q is not an http(s) URL", c.PeerURL))
		}
	}
	if len(c.Secret) < minClusterSecret {
		errs = append(errs, fmt.Errorf("cluster.secret: required in cluster mode, at least %d bytes (or cluster.secret_file)", minClusterSecret))
	}
	if !strings.HasPrefix(c.Prefix, "/") || !strings.HasSuffix(c.Prefix, "/") {
		errs = append(errs, fmt.Errorf("cluster.prefix: %q must start and end with /", c.Prefix))
	}
	if c.LeaseTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("cluster.lease_ttl: %s must be at least 2s", c.LeaseTTL))
	}
	if c.QuotaBlock < 1 {
		errs = append(errs, fmt.Errorf("cluster.quota_block: %d must be at least 1", c.QuotaBlock))
	}
	return errs
}
