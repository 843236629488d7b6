package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qxtd/qxtd/smpp"
)

// testCA is a throwaway certificate authority: the tests' certificates
// are made here, in t.TempDir(), never read from the repository.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	file string // the CA certificate, PEM
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, pool: x509.NewCertPool(), file: filepath.Join(dir, name+".pem")}
	ca.pool.AddCert(cert)
	writeFile(t, ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return ca
}

// issue makes a server certificate with serial for the names given (an
// IP address or a DNS name each) and returns it and its key, PEM.
func (ca *testCA) issue(t *testing.T, serial int64, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// issueFiles issues a certificate and writes it and its key to certFile
// and keyFile (replacing what is there).
func (ca *testCA) issueFiles(t *testing.T, serial int64, certFile, keyFile string, names ...string) {
	t.Helper()
	c, k := ca.issue(t, serial, names...)
	writeFile(t, certFile, c)
	writeFile(t, keyFile, k)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsSerial makes one handshake with addr, verifying its certificate
// against pool, and returns the leaf's serial.
func tlsSerial(t *testing.T, addr string, pool *x509.CertPool) int64 {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// tlsSMSC runs the SMSC simulator behind a TLS listener with a
// certificate for smsc.test; snis records the names clients asked for.
type tlsSMSC struct {
	sim  *smpp.Simulator
	addr string
	mu   sync.Mutex
	snis []string
}

func startTLSSim(t *testing.T, ca *testCA) *tlsSMSC {
	t.Helper()
	cp, kp := ca.issue(t, 301, "smsc.test")
	cert, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsSMSC{sim: smpp.NewSimulator(smpp.SimOptions{SystemID: "up", Password: "uppw", Record: true, DLRDelay: 10 * time.Millisecond})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	tl := tls.NewListener(l, &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			s.mu.Lock()
			s.snis = append(s.snis, hi.ServerName)
			s.mu.Unlock()
			return nil, nil
		},
	})
	go func() { _ = s.sim.Serve(tl) }()
	t.Cleanup(func() { _ = s.sim.Close() })
	return s
}

// TestDaemonTLS runs the daemon with SMPP over TLS, HTTPS and an upstream
// bound over TLS, every certificate from a throwaway CA: an ESME binds over
// TLS and submits, the message reaches the SMSC over TLS and its receipt
// comes back; /healthz answers over HTTPS. A certificate swapped on disk is
// served by the next handshake after SIGHUP (its serial), while the bound
// ESME goes on; a bad file at the next SIGHUP keeps the certificate served.
func TestDaemonTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "qxtd-test-ca")
	smsc := startTLSSim(t, ca)
	smppCert, smppKey := filepath.Join(dir, "smpp.crt"), filepath.Join(dir, "smpp.key")
	httpCert, httpKey := filepath.Join(dir, "http.crt"), filepath.Join(dir, "http.key")
	ca.issueFiles(t, 101, smppCert, smppKey, "127.0.0.1")
	ca.issueFiles(t, 201, httpCert, httpKey, "127.0.0.1")

	path := writeConfig(t, dir, smsc.addr, "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "smpp: { listen: 127.0.0.1:0 }",
		"smpp: { listen: 127.0.0.1:0, tls_listen: 127.0.0.1:0, tls_cert_file: "+smppCert+", tls_key_file: "+smppKey+" }", 1)
	cfg = strings.Replace(cfg, "http: { listen: 127.0.0.1:0, admin_token: test-token }",
		"http: { listen: 127.0.0.1:0, admin_token: test-token, tls_cert_file: "+httpCert+", tls_key_file: "+httpKey+" }", 1)
	cfg = strings.Replace(cfg, "    resp_timeout: 2s\n",
		"    resp_timeout: 2s\n    tls: true\n    tls_ca_file: "+ca.file+"\n    tls_server_name: smsc.test\n", 1)
	writeFile(t, path, []byte(cfg))

	d := startDaemon(t, path)
	ready := d.waitLog(t, "qxtd ready", 0, time.Second)
	smppTLS, _ := ready["smpp_tls"].(string)
	if smppTLS == "" || ready["https"] != true {
		t.Fatalf("ready line without the TLS listeners: %v", ready)
	}

	// An ESME over TLS: submit, the SMSC gets it over TLS, the receipt
	// comes back over TLS.
	sink := newSink()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	esmeDialer := &tls.Dialer{Config: &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}}
	esme, err := smpp.Dial(ctx, smpp.ClientOptions{
		Addr: smppTLS, SystemID: "esme", Password: "secret1", Kind: smpp.BindTransceiver, Handler: sink.handler(),
		Dial: esmeDialer.DialContext, Conn: smpp.ConnOptions{Window: 8, RespTimeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatalf("bind over TLS: %v", err)
	}
	t.Cleanup(func() { _ = esme.Close() })
	id, err := submit(ctx, esme, "8613800138001", "over TLS")
	if err != nil {
		t.Fatalf("submit over TLS: %v", err)
	}
	sink.waitAll(t, []string{id}, 30*time.Second)
	if got := waitReceived(t, smsc.sim, "13800138001", 10*time.Second); len(got) != 1 {
		t.Fatalf("the SMSC got %d messages", len(got))
	}
	smsc.mu.Lock()
	snis := strings.Join(smsc.snis, ",")
	smsc.mu.Unlock()
	if !strings.HasPrefix(snis, "smsc.test") {
		t.Errorf("the upstream's handshakes asked for %q, want upstreams[0].tls_server_name smsc.test", snis)
	}

	// HTTPS, verified with the CA.
	https := func() int64 {
		t.Helper()
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}}
		resp, err := c.Get("https://" + d.httpAddr + "/healthz")
		if err != nil {
			t.Fatalf("GET /healthz over HTTPS: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
			t.Fatalf("GET /healthz over HTTPS: %d %q", resp.StatusCode, body)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if s := https(); s != 201 {
		t.Errorf("HTTPS serves serial %d, want 201", s)
	}
	if s := tlsSerial(t, smppTLS, ca.pool); s != 101 {
		t.Errorf("SMPP over TLS serves serial %d, want 101", s)
	}

	// Renewed certificates on disk, then SIGHUP: the next handshakes get them.
	ca.issueFiles(t, 102, smppCert, smppKey, "127.0.0.1")
	ca.issueFiles(t, 202, httpCert, httpKey, "127.0.0.1")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		rec := d.waitLog(t, "TLS certificate reloaded", i, 30*time.Second)
		if want := map[string]string{"smpp": "66", "http": "ca"}[rec["listener"].(string)]; rec["serial"] != want {
			t.Errorf("reload log: %v, want serial %s", rec, want)
		}
	}
	if s := tlsSerial(t, smppTLS, ca.pool); s != 102 {
		t.Errorf("after SIGHUP SMPP over TLS serves serial %d, want 102", s)
	}
	if s := https(); s != 202 {
		t.Errorf("after SIGHUP HTTPS serves serial %d, want 202", s)
	}
	// The session bound before the swap goes on.
	id2, err := submit(ctx, esme, "8613800138002", "after the swap")
	if err != nil {
		t.Fatalf("submit after the swap: %v", err)
	}
	sink.waitAll(t, []string{id2}, 30*time.Second)

	// A bad certificate file: logged naming it, the served one stays.
	writeFile(t, smppCert, []byte("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"))
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rec := d.waitLog(t, "TLS certificate reload failed; the previous certificate stays", 0, 30*time.Second)
	if f, _ := rec["file"].(string); !strings.Contains(f, smppCert) || rec["listener"] != "smpp" {
		t.Errorf("reload failure log does not name %s: %v", smppCert, rec)
	}
	if s := tlsSerial(t, smppTLS, ca.pool); s != 102 {
		t.Errorf("after a bad reload SMPP over TLS serves serial %d, want 102 still", s)
	}
	if s := https(); s != 202 {
		t.Errorf("after a bad reload of the SMPP certificate HTTPS serves serial %d, want 202", s)
	}
	select {
	case <-d.exited:
		t.Fatalf("daemon exited:\n%s", d.log())
	default:
	}
}

// TestUpstreamTLSVerifies: the upstream's dialer (upstreams[].tls) binds
// only to an SMSC whose certificate chains to tls_ca_file and names
// tls_server_name (default the host of addr), unless verification is
// explicitly off.
func TestUpstreamTLSVerifies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, other := newTestCA(t, dir, "ca"), newTestCA(t, dir, "other-ca")
	smsc := startTLSSim(t, ca)
	for _, tc := range []struct {
		name string
		u    UpstreamConfig
		err  string // "" = binds
	}{
		{"ca and name", UpstreamConfig{TLSCAFile: ca.file, TLSServerName: "smsc.test"}, ""},
		{"another ca", UpstreamConfig{TLSCAFile: other.file, TLSServerName: "smsc.test"}, "certificate signed by unknown authority"},
		{"default name is the address", UpstreamConfig{TLSCAFile: ca.file}, "127.0.0.1"},
		{"wrong name", UpstreamConfig{TLSCAFile: ca.file, TLSServerName: "other.test"}, "other.test"},
		{"insecure", UpstreamConfig{TLSInsecureSkipVerify: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.u
			u.Name, u.Addr, u.TLS = "smsc", smsc.addr, true
			ut, err := newUpstreamTLS(0, u)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := smpp.Dial(ctx, smpp.ClientOptions{Addr: smsc.addr, SystemID: "up", Password: "uppw", Dial: ut.dial,
				Conn: smpp.ConnOptions{RespTimeout: 5 * time.Second}})
			if tc.err == "" {
				if err != nil {
					t.Fatalf("bind: %v", err)
				}
				_ = c.Close()
				return
			}
			if err == nil {
				_ = c.Close()
				t.Fatalf("bound; want an error with %q", tc.err)
			}
			if !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v; want it to contain %q", err, tc.err)
			}
		})
	}
}

// TestHTTPSConnectionCap: over HTTPS a connection beyond http.max_conns is
// closed without the plain-text 503 (which a TLS client could not read):
// its handshake ends at once, while the held connection is served.
func TestHTTPSConnectionCap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	certFile, keyFile := filepath.Join(dir, "http.crt"), filepath.Join(dir, "http.key")
	ca.issueFiles(t, 7, certFile, keyFile, "127.0.0.1")
	certs, err := newCertReloader("http", "http.tls_cert_file", certFile, "http.tls_key_file", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	limited := newConnMetrics(reg).limit(l, 1, 1, 4)
	limited.tls = true
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})}
	go func() { _ = serveHTTP(srv, limited, certs) }()
	t.Cleanup(func() { _ = srv.Close() })

	// The first connection holds the one slot (kept alive after a request).
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	resp, err := c.Get("https://" + l.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", l.Addr().String())
	if err == nil {
		conn.Close()
		t.Fatal("a second connection over the cap completed its handshake")
	}
	if strings.Contains(err.Error(), "record") || ctx.Err() != nil {
		t.Fatalf("refused handshake: %v; want a plain close (EOF or reset), at once", err)
	}
	if got := testutil.ToFloat64(limited.m.refused.WithLabelValues("max_conns")); got != 1 {
		t.Errorf("refused max_conns %v, want 1", got)
	}
}
