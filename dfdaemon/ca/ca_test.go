package ca

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func genCA(t *testing.T, opts GenerateOptions) (certPath, keyPath string) {
	t.Helper()
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := Generate(certPath, keyPath, opts); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return certPath, keyPath
}

func TestGenerateFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts GenerateOptions
		rsa  bool
	}{
		{"ecdsa", GenerateOptions{}, false},
		{"rsa", GenerateOptions{KeyType: KeyRSA}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPath, keyPath := genCA(t, tc.opts)
			for p, want := range map[string]os.FileMode{certPath: 0o644, keyPath: 0o600} {
				st, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != want {
					t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), want)
				}
			}
			raw, err := os.ReadFile(certPath)
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(raw)
			if block == nil || block.Type != "CERTIFICATE" {
				t.Fatalf("certificate file is not a PEM CERTIFICATE: %q", raw)
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if !c.IsCA || !c.BasicConstraintsValid || !c.MaxPathLenZero {
				t.Errorf("IsCA=%v valid=%v maxPathLenZero=%v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLenZero)
			}
			if c.KeyUsage&x509.KeyUsageCertSign == 0 || c.KeyUsage&x509.KeyUsageCRLSign == 0 {
				t.Errorf("key usage %b lacks certSign/cRLSign", c.KeyUsage)
			}
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if c.NotAfter.Before(time.Now().Add(9 * 365 * 24 * time.Hour)) {
				t.Errorf("NotAfter %v: want about ten years", c.NotAfter)
			}
			switch c.PublicKey.(type) {
			case *rsa.PublicKey:
				if !tc.rsa {
					t.Error("RSA key, want ECDSA")
				}
			case *ecdsa.PublicKey:
				if tc.rsa {
					t.Error("ECDSA key, want RSA")
				}
			}
			kp, err := Load(certPath, keyPath)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !kp.IsCA() {
				t.Error("loaded pair is not a CA")
			}
		})
	}
}

func TestGenerateRefusesOverwrite(t *testing.T) {
	certPath, keyPath := genCA(t, GenerateOptions{})
	before, _ := os.ReadFile(keyPath)
	err := Generate(certPath, keyPath, GenerateOptions{})
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second Generate: %v, want an 'exists' error", err)
	}
	if after, _ := os.ReadFile(keyPath); string(after) != string(before) {
		t.Fatal("key changed although Generate refused")
	}
	if err := Generate(certPath, keyPath, GenerateOptions{Overwrite: true}); err != nil {
		t.Fatalf("forced Generate: %v", err)
	}
	if after, _ := os.ReadFile(keyPath); string(after) == string(before) {
		t.Fatal("forced Generate kept the old key")
	}
	// Only the cert present still counts as existing.
	os.Remove(keyPath)
	if err := Generate(certPath, keyPath, GenerateOptions{}); err == nil {
		t.Fatal("Generate over an existing certificate succeeded")
	}
}

func TestGenerateBadInput(t *testing.T) {
	dir := t.TempDir()
	c, k := filepath.Join(dir, "c"), filepath.Join(dir, "k")
	for name, opts := range map[string]GenerateOptions{
		"key type":  {KeyType: "dsa"},
		"rsa small": {KeyType: KeyRSA, RSABits: 1024},
	} {
		if err := Generate(c, k, opts); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := Generate(filepath.Join(dir, "missing", "c"), k, GenerateOptions{}); err == nil {
		t.Error("missing directory: no error")
	}
	if err := Generate("", k, GenerateOptions{}); err == nil {
		t.Error("empty path: no error")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed runs left files: %v", entries)
	}
}

func TestLoadErrors(t *testing.T) {
	certPath, keyPath := genCA(t, GenerateOptions{})
	if _, err := Load(certPath, filepath.Join(t.TempDir(), "nope.key")); err == nil || !strings.Contains(err.Error(), "nope.key") {
		t.Errorf("missing key: %v", err)
	}
	otherCert, _ := genCA(t, GenerateOptions{})
	if _, err := Load(otherCert, keyPath); err == nil {
		t.Error("mismatched key accepted")
	}
}

func TestGenerateNameAndValidity(t *testing.T) {
	certPath, keyPath := genCA(t, GenerateOptions{CommonName: "node-7 CA", Validity: 48 * time.Hour})
	kp, err := Load(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if kp.Cert.Subject.CommonName != "node-7 CA" {
		t.Errorf("CN %q", kp.Cert.Subject.CommonName)
	}
	if left := time.Until(kp.Cert.NotAfter); left < 47*time.Hour || left > 49*time.Hour {
		t.Errorf("valid for %v more, want 48h", left)
	}
}

// One file for both would end with the certificate renamed over the key:
// a CA that can never sign again.
func TestGenerateRefusesOneFileForBoth(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, pair := range [][2]string{
		{"ca.pem", "ca.pem"},
		{"ca.pem", "./real/../ca.pem"},
		{filepath.Join(dir, "ca.pem"), "ca.pem"},
		{"link/ca.pem", "real/ca.pem"},
	} {
		err := Generate(pair[0], pair[1], GenerateOptions{Overwrite: true})
		if err == nil || !strings.Contains(err.Error(), "same file") {
			t.Errorf("cert %s, key %s: %v, want a same-file error", pair[0], pair[1], err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "real")} {
		if entries, _ := os.ReadDir(d); len(entries) > 2 {
			t.Errorf("refused runs left files in %s: %v", d, entries)
		}
	}
}

func TestGenerateBounds(t *testing.T) {
	dir := t.TempDir()
	c, k := filepath.Join(dir, "c"), filepath.Join(dir, "k")
	start := time.Now()
	err := Generate(c, k, GenerateOptions{KeyType: KeyRSA, RSABits: MaxRSABits + 8})
	if err == nil || !strings.Contains(err.Error(), "8192") {
		t.Errorf("RSA %d bits: %v, want an error naming the bound", MaxRSABits+8, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusing a too large key took %v", d)
	}
	if err := Generate(c, k, GenerateOptions{Validity: -time.Hour}); err == nil {
		t.Error("negative validity: no error")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused runs left files: %v", entries)
	}
}

func runGenCA(t *testing.T, args ...string) error {
	t.Helper()
	cmd := Command()
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	return cmd.Execute()
}

func TestCommandRefusesNonPositiveValidity(t *testing.T) {
	dir := t.TempDir()
	c, k := filepath.Join(dir, "c"), filepath.Join(dir, "k")
	for _, d := range []string{"0s", "-1h"} {
		if err := runGenCA(t, "--cert-output", c, "--key-output", k, "--expire-duration", d); err == nil {
			t.Errorf("--expire-duration %s: no error", d)
		}
	}
	if err := runGenCA(t, "--cert-output", c, "--key-output", k); err != nil {
		t.Fatal(err)
	}
	p, err := Load(c, k)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Cert.NotAfter.Sub(p.Cert.NotBefore); got < DefaultValidity {
		t.Fatalf("default validity %v, want %v", got, DefaultValidity)
	}
}
