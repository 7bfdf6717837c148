package ca

import (
	"container/list"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// leafValidity is short because leaves are minted on demand and cached in
// memory only; renewal costs one signature.
const leafValidity = 7 * 24 * time.Hour

// renewBefore is how close to expiry a cached leaf is replaced, so a client
// never receives a certificate that expires during its connection.
const renewBefore = 24 * time.Hour

// Issuer mints leaf certificates for host names, signed by a CA, and keeps
// the most recently used ones in a bounded cache. It is safe for concurrent
// use.
type Issuer struct {
	ca  *KeyPair
	key crypto.Signer // one leaf key for all hosts: minting is a signature, not a key generation
	max int
	now func() time.Time

	mu    sync.Mutex
	order *list.List               // front = most recently used; values are *leaf
	byKey map[string]*list.Element // host -> element of order
}

type leaf struct {
	host string
	cert *tls.Certificate
}

// NewIssuer returns an Issuer signing with ca, caching up to cacheSize
// leaves (at least 1).
func NewIssuer(ca *KeyPair, cacheSize int) (*Issuer, error) {
	if ca == nil || !ca.IsCA() {
		return nil, errors.New("issuer: the certificate is not a CA (basicConstraints CA:TRUE with keyCertSign)")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issuer: leaf key: %w", err)
	}
	if cacheSize < 1 {
		cacheSize = 1
	}
	return &Issuer{ca: ca, key: key, max: cacheSize, now: time.Now,
		order: list.New(), byKey: map[string]*list.Element{}}, nil
}

// Leaf returns a certificate for host (a DNS name or an IP literal, without
// port), minting it on a cache miss or when the cached one nears expiry.
func (is *Issuer) Leaf(host string) (*tls.Certificate, error) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return nil, errors.New("issuer: empty host name")
	}
	if c := is.cached(host); c != nil {
		return c, nil
	}
	// Minting outside the lock: two racing misses for one host both mint,
	// which is harmless and keeps other hosts from waiting.
	c, err := is.mint(host)
	if err != nil {
		return nil, err
	}
	is.store(host, c)
	return c, nil
}

// size is the number of cached leaves.
func (is *Issuer) size() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.order.Len()
}

func (is *Issuer) cached(host string) *tls.Certificate {
	is.mu.Lock()
	defer is.mu.Unlock()
	e, ok := is.byKey[host]
	if !ok {
		return nil
	}
	l := e.Value.(*leaf)
	if is.now().Add(renewBefore).After(l.cert.Leaf.NotAfter) {
		is.order.Remove(e)
		delete(is.byKey, host)
		return nil
	}
	is.order.MoveToFront(e)
	return l.cert
}

func (is *Issuer) store(host string, c *tls.Certificate) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if e, ok := is.byKey[host]; ok {
		e.Value.(*leaf).cert = c
		is.order.MoveToFront(e)
		return
	}
	is.byKey[host] = is.order.PushFront(&leaf{host: host, cert: c})
	for is.order.Len() > is.max {
		old := is.order.Back()
		is.order.Remove(old)
		delete(is.byKey, old.Value.(*leaf).host)
	}
}

func (is *Issuer) mint(host string) (*tls.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	now := is.now()
	notAfter := now.Add(leafValidity)
	if ca := is.ca.Cert.NotAfter; notAfter.After(ca) {
		notAfter = ca
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("issuer: the CA certificate expired on %s", is.ca.Cert.NotAfter.Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.ca.Cert, is.key.Public(), is.ca.key)
	if err != nil {
		return nil, fmt.Errorf("issuer: sign leaf for %s: %w", host, err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issuer: parse leaf for %s: %w", host, err)
	}
	return &tls.Certificate{
		Certificate: [][]byte{der, is.ca.Cert.Raw},
		PrivateKey:  is.key,
		Leaf:        parsed,
	}, nil
}
