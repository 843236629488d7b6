package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// TLS for the listeners (smpp.tls_listen, HTTPS on the HTTP listener) and
// for the upstream binds (upstreams[].tls).
//
// A listener's certificate and key are read at start and again at every
// SIGHUP, from the files the running configuration names: the handshake
// takes the certificate from an atomically swapped pointer
// (GetCertificate), so a renewed certificate (certbot, an internal CA) is
// served by the next handshake without a restart, and connections already
// open keep theirs. A file that cannot be read or parsed, or a key that
// does not match its certificate, keeps the certificate served so far.
// The upstreams' CA bundles are reloaded alike.
//
// The version floor is TLS 1.2 both ways; the cipher suites are Go's
// defaults (no RSA key exchange, no CBC-SHA256).

// certReloader serves one certificate/key pair and reloads it.
type certReloader struct {
	name              string // the listener it serves, for logs: "smpp", "http"
	certKey, keyKey   string // their configuration keys, for errors
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// newCertReloader loads the pair once; an error names the key and file.
func newCertReloader(name, certKey, certFile, keyKey, keyFile string) (*certReloader, error) {
	r := &certReloader{name: name, certKey: certKey, keyKey: keyKey, certFile: certFile, keyFile: keyFile}
	c, _, err := loadKeyPair(certKey, certFile, keyKey, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert.Store(c)
	return r, nil
}

// reload reads the files again; on error the served certificate stays
// and file names the file at fault (both, for a pair that does not match).
func (r *certReloader) reload() (c *tls.Certificate, file string, err error) {
	c, file, err = loadKeyPair(r.certKey, r.certFile, r.keyKey, r.keyFile)
	if err != nil {
		return nil, file, err
	}
	r.cert.Store(c)
	return c, "", nil
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// serverConfig is the tls.Config of a listener: whichever server uses it
// (the SMPP listener, every http.Server serve.go builds) serves the
// reloaded certificate.
func (r *certReloader) serverConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.getCertificate}
}

// certAttrs describe a certificate in logs: what an operator checks
// after a renewal.
func certAttrs(c *tls.Certificate) []any {
	if c == nil || c.Leaf == nil {
		return nil
	}
	return []any{"serial", c.Leaf.SerialNumber.Text(16), "subject", c.Leaf.Subject.String(),
		"not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339)}
}

// loadKeyPair reads a certificate chain and its key, each bounded as
// kindKeyPair (namedfiles.go). Each file is read on its own so that the
// error names the one that failed (file); a pair that does not match
// names both keys.
func loadKeyPair(certKey, certFile, keyKey, keyFile string) (*tls.Certificate, string, error) {
	certPEM, _, err := readNamedFile(certFile, kindKeyPair)
	if err != nil {
		return nil, certFile, fmt.Errorf("%s: %w", certKey, err)
	}
	keyPEM, _, err := readNamedFile(keyFile, kindKeyPair)
	if err != nil {
		return nil, keyFile, fmt.Errorf("%s: %w", keyKey, err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, certFile + ", " + keyFile, fmt.Errorf("%s (%s) and %s (%s): %w", certKey, certFile, keyKey, keyFile, err)
	}
	return &c, "", nil
}

// validateKeyPair checks a pair of *_file keys: both or neither, and
// (both set) files that load.
func validateKeyPair(certKey, certFile, keyKey, keyFile string) []error {
	switch {
	case certFile == "" && keyFile == "":
		return nil
	case certFile == "" || keyFile == "":
		return []error{fmt.Errorf("%s and %s: set both or neither", certKey, keyKey)}
	}
	if _, _, err := loadKeyPair(certKey, certFile, keyKey, keyFile); err != nil {
		return []error{err}
	}
	return nil
}

// serveHTTP serves srv on l: HTTPS only when certs is set (the
// listener's http.tls_* files), else plain HTTP. Any http.Server of the
// daemon goes through here, so every HTTP listener follows the keys.
func serveHTTP(srv *http.Server, l net.Listener, certs *certReloader) error {
	if certs == nil {
		return srv.Serve(l)
	}
	// With GetCertificate set, ServeTLS reads no file; it adds HTTP/2's
	// and HTTP/1.1's ALPN names to a clone of the config.
	srv.TLSConfig = certs.serverConfig()
	return srv.ServeTLS(l, "", "")
}

// upstreamTLS dials one upstream over TLS with the CA bundle read at
// start and at every SIGHUP (reload).
type upstreamTLS struct {
	name string
	key  string // "upstreams[i]", for errors
	u    UpstreamConfig
	cfg  atomic.Pointer[tls.Config]
}

func newUpstreamTLS(i int, u UpstreamConfig) (*upstreamTLS, error) {
	t := &upstreamTLS{name: u.Name, key: fmt.Sprintf("upstreams[%d]", i), u: u}
	if err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// reload re-reads the CA bundle; on error the one read before stays.
func (t *upstreamTLS) reload() error {
	cfg, err := upstreamTLSConfig(t.key, t.u)
	if err != nil {
		return err
	}
	t.cfg.Store(cfg)
	return nil
}

// dial is smpp.ClientOptions.Dial: it returns after the handshake, with
// the SMSC's certificate verified (unless tls_insecure_skip_verify).
func (t *upstreamTLS) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := tls.Dialer{Config: t.cfg.Load()}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return c, nil
}

// upstreamTLSConfig is the client side of upstreams[i] (key): the SMSC's
// certificate must chain to tls_ca_file (default: the system's roots)
// and name tls_server_name (default: the host of addr, which tls.Dialer
// fills in when ServerName is empty).
func upstreamTLSConfig(key string, u UpstreamConfig) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         u.TLSServerName,
		InsecureSkipVerify: u.TLSInsecureSkipVerify, // only when set in the file; warned at start
	}
	if u.TLSCAFile != "" {
		pool, err := loadCAPool(u.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.tls_ca_file: %w", key, err)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// loadCAPool reads the PEM bundle at path, bounded as kindCABundle
// (namedfiles.go).
func loadCAPool(path string) (*x509.CertPool, error) {
	b, _, err := readNamedFile(path, kindCABundle)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// validateTLS checks the TLS keys of c; every error names its key.
func (c *Config) validateTLS() []error {
	var errs []error
	smppPair := validateKeyPair("smpp.tls_cert_file", c.SMPP.TLSCertFile, "smpp.tls_key_file", c.SMPP.TLSKeyFile)
	errs = append(errs, smppPair...)
	switch {
	case c.SMPP.TLSListen != "":
		if _, _, err := net.SplitHostPort(c.SMPP.TLSListen); err != nil {
			errs = append(errs, fmt.Errorf("smpp.tls_listen: bad address %q: %w", c.SMPP.TLSListen, err))
		}
		if c.SMPP.TLSCertFile == "" && c.SMPP.TLSKeyFile == "" {
			errs = append(errs, errors.New("smpp.tls_listen: needs smpp.tls_cert_file and smpp.tls_key_file"))
		}
	case c.SMPP.TLSCertFile != "" || c.SMPP.TLSKeyFile != "":
		// Likely a forgotten listener: a certificate that nothing serves.
		errs = append(errs, errors.New("smpp.tls_cert_file, smpp.tls_key_file: set, but smpp.tls_listen is empty (no TLS listener)"))
	}
	errs = append(errs, validateKeyPair("http.tls_cert_file", c.HTTP.TLSCertFile, "http.tls_key_file", c.HTTP.TLSKeyFile)...)
	caErrs := map[string]error{}
	for i, u := range c.Upstreams {
		k := fmt.Sprintf("upstreams[%d]", i)
		if !u.TLS {
			for _, s := range []struct {
				key string
				set bool
			}{{"tls_ca_file", u.TLSCAFile != ""}, {"tls_server_name", u.TLSServerName != ""}, {"tls_insecure_skip_verify", u.TLSInsecureSkipVerify}} {
				if s.set {
					errs = append(errs, fmt.Errorf("%s.%s: set, but %s.tls is false", k, s.key, k))
				}
			}
			continue
		}
		if u.TLSInsecureSkipVerify && u.TLSCAFile != "" {
			errs = append(errs, fmt.Errorf("%s.tls_insecure_skip_verify: with %s.tls_ca_file, which it would ignore", k, k))
		}
		// Each CA bundle is parsed once, however many upstreams name it:
		// the system's bundle takes some 10 ms and 1 MiB, and a YAML
		// alias repeats an upstream at three bytes a copy.
		if u.TLSCAFile != "" {
			err, ok := caErrs[u.TLSCAFile]
			if !ok {
				_, err = loadCAPool(u.TLSCAFile)
				caErrs[u.TLSCAFile] = err
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.tls_ca_file: %w", k, err))
			}
		}
	}
	return errs
}

// tlsState is the daemon's TLS material that SIGHUP reloads.
type tlsState struct {
	http      *certReloader   // the HTTP listeners' pair; nil: plain HTTP
	certs     []*certReloader // every listener's
	upstreams []*upstreamTLS
}

// reload reloads every certificate, key and CA bundle; an error is
// logged naming the file, and what was loaded before stays. It reports
// whether all reloaded.
func (s *tlsState) reload(log *slog.Logger) bool {
	ok := true
	for _, r := range s.certs {
		c, file, err := r.reload()
		if err != nil {
			ok = false
			log.Error("TLS certificate reload failed; the previous certificate stays", "listener", r.name, "file", file, "err", err)
			continue
		}
		log.Info("TLS certificate reloaded", append([]any{"listener", r.name, "cert_file", r.certFile}, certAttrs(c)...)...)
	}
	for _, u := range s.upstreams {
		if err := u.reload(); err != nil {
			ok = false
			log.Error("upstream TLS CA bundle reload failed; the previous one stays", "upstream", u.name, "file", u.u.TLSCAFile, "err", err)
			continue
		}
		if u.u.TLSCAFile != "" {
			// Said as the listeners' certificates are: an operator
			// rotating the carrier's CA sees it taken.
			log.Info("upstream TLS CA bundle reloaded", "upstream", u.name, "file", u.u.TLSCAFile)
		}
	}
	return ok
}

// upstreamDial is the dialer of upstreams[i]: nil (plain TCP) unless
// tls is set.
func (d *daemon) upstreamDial(i int, u UpstreamConfig) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	if !u.TLS {
		return nil, nil
	}
	t, err := newUpstreamTLS(i, u)
	if err != nil {
		return nil, err
	}
	if u.TLSInsecureSkipVerify {
		d.log.Warn("upstream TLS certificate verification is off (tls_insecure_skip_verify): anyone on the path can read and change the traffic and the bind password",
			"upstream", u.Name, "addr", u.Addr)
	}
	d.tls.upstreams = append(d.tls.upstreams, t)
	return t.dial, nil
}

// listenSMPPTLS starts the SMPP over TLS listener (smpp.tls_listen) on
// the same server as the plain one: sessions, caps (max_conns counts both
// listeners) and timeouts are shared. A client that never completes the
// handshake is closed with the unbound ones (30 s to bind).
func (d *daemon) listenSMPPTLS(cfg *Config) error {
	if cfg.SMPP.TLSListen == "" {
		return nil
	}
	certs, err := newCertReloader("smpp", "smpp.tls_cert_file", cfg.SMPP.TLSCertFile, "smpp.tls_key_file", cfg.SMPP.TLSKeyFile)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", cfg.SMPP.TLSListen)
	if err != nil {
		return fmt.Errorf("smpp.tls_listen: %w", err)
	}
	d.tls.certs = append(d.tls.certs, certs)
	d.smppTLSAddr = l.Addr()
	d.log.Info("TLS certificate loaded", append([]any{"listener", "smpp", "cert_file", certs.certFile}, certAttrs(certs.cert.Load())...)...)
	d.goServe("smpp-tls", func() error {
		return d.smpp.Serve(tlsListener{l.(*net.TCPListener), certs.serverConfig()})
	})
	return nil
}

// tlsListener is what tls.NewListener returns, with the TCP listener's
// SetDeadline kept: the SMPP server retries a failed Accept (EMFILE) with
// a deadline, to learn that it accepts again without waiting for a client.
type tlsListener struct {
	*net.TCPListener
	config *tls.Config
}

func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, l.config), nil
}

// loadHTTPCerts loads http.tls_cert_file and http.tls_key_file, if set,
// into d.tls.http: every HTTP listener (serveHTTP) serves them.
func (d *daemon) loadHTTPCerts(cfg *Config) error {
	if cfg.HTTP.TLSCertFile == "" {
		return nil
	}
	certs, err := newCertReloader("http", "http.tls_cert_file", cfg.HTTP.TLSCertFile, "http.tls_key_file", cfg.HTTP.TLSKeyFile)
	if err != nil {
		return err
	}
	d.tls.http = certs
	d.tls.certs = append(d.tls.certs, certs)
	d.log.Info("TLS certificate loaded", append([]any{"listener", "http", "cert_file", certs.certFile}, certAttrs(certs.cert.Load())...)...)
	return nil
}
