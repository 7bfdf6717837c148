package ca

import (
	"crypto/x509"
	"testing"
	"time"
)

func newIssuer(t *testing.T, size int) (*Issuer, *x509.CertPool) {
	t.Helper()
	certPath, keyPath := genCA(t, GenerateOptions{})
	kp, err := Load(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	is, err := NewIssuer(kp, size)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(kp.Cert)
	return is, pool
}

func TestLeafVerifies(t *testing.T) {
	is, pool := newIssuer(t, 10)
	for _, host := range []string{"registry.example.com", "127.0.0.1", "::1"} {
		c, err := is.Leaf(host)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		_, err = c.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			t.Errorf("%s: leaf does not verify: %v", host, err)
		}
		if len(c.Certificate) != 2 {
			t.Errorf("%s: chain of %d, want leaf+CA", host, len(c.Certificate))
		}
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "other.example.com", Roots: pool}); err == nil {
			t.Errorf("%s: leaf also valid for another host", host)
		}
	}
}

func TestLeafCacheBoundedLRU(t *testing.T) {
	is, _ := newIssuer(t, 2)
	a1, _ := is.Leaf("a")
	if a2, _ := is.Leaf("A."); a2 != a1 {
		t.Fatal("same host (case, trailing dot) minted twice")
	}
	is.Leaf("b")
	is.Leaf("a") // a is now most recent; c evicts b
	is.Leaf("c")
	if is.size() != 2 {
		t.Fatalf("cache holds %d, want 2", is.size())
	}
	if a3, _ := is.Leaf("a"); a3 != a1 {
		t.Error("recently used leaf was evicted")
	}
	b1 := is.cached("b")
	if b1 != nil {
		t.Error("least recently used leaf was kept")
	}
}

func TestLeafRenewedNearExpiry(t *testing.T) {
	is, _ := newIssuer(t, 4)
	c1, _ := is.Leaf("h")
	is.now = func() time.Time { return time.Now().Add(leafValidity - renewBefore/2) }
	c2, err := is.Leaf("h")
	if err != nil {
		t.Fatal(err)
	}
	if c2 == c1 || !c2.Leaf.NotAfter.After(c1.Leaf.NotAfter) {
		t.Error("leaf near expiry was not renewed")
	}
}

func TestIssuerRejects(t *testing.T) {
	is, _ := newIssuer(t, 1)
	if _, err := is.Leaf(""); err == nil {
		t.Error("empty host accepted")
	}
	leafPair := &KeyPair{Cert: &x509.Certificate{}}
	if _, err := NewIssuer(leafPair, 1); err == nil {
		t.Error("non-CA accepted as issuer")
	}
	is.now = func() time.Time { return time.Now().Add(20 * 365 * 24 * time.Hour) }
	if _, err := is.Leaf("late"); err == nil {
		t.Error("minted under an expired CA")
	}
}
