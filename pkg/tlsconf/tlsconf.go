// Package tlsconf builds the client TLS settings for an upstream an
// operator configured by hand (a registry mirror, a hijacked HTTPS host):
// the system roots plus the PEM CA files given, or no verification when
// the operator asked for that. One place, so every client that reaches
// such an upstream trusts it the same way.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Trust says how to verify an upstream's certificate.
type Trust struct {
	// CAFiles are PEM files whose certificates are trusted beside the
	// system roots.
	CAFiles []string
	// Insecure skips verification altogether.
	Insecure bool
}

// Config returns a client tls.Config for t, TLS 1.2 at least. A CA file
// that cannot be read or holds no PEM certificate is an error, not a
// silently weaker trust.
func (t Trust) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.Insecure} //nolint:gosec // the operator's explicit choice
	if len(t.CAFiles) == 0 {
		return cfg, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		// No system roots (a bare container): the files alone.
		pool = x509.NewCertPool()
	}
	for _, f := range t.CAFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", f)
		}
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// BaseURL is the root URL of a server at hostport reached with cfg: https
// with a TLS config, plain http without one. Every caller that reaches a
// server it was given a TLS config for builds its URLs here, so the scheme
// and the config can never disagree.
func BaseURL(cfg *tls.Config, hostport string) string {
	if cfg != nil {
		return "https://" + hostport
	}
	return "http://" + hostport
}
