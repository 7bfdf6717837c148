// Package ca makes and loads the certificate authority that dfdaemon uses to
// intercept HTTPS (hijack_https), and mints the per-host leaf certificates it
// presents to clients that trust that authority.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Key types accepted by GenerateOptions.KeyType.
const (
	KeyECDSA = "ecdsa" // P-256
	KeyRSA   = "rsa"
)

// Bounds and defaults of GenerateOptions.
const (
	DefaultValidity = 10 * 365 * 24 * time.Hour
	MinRSABits      = 2048
	// MaxRSABits bounds the key size: generating a much larger RSA key
	// takes minutes to hours, and no client needs one.
	MaxRSABits = 8192
)

// GenerateOptions tunes Generate; the zero value makes an ECDSA P-256 CA
// named "dfdaemon CA <hostname>" valid for ten years. The fields follow
// v1's gen-ca flags (--common-name, --expire-duration, --overwrite) plus
// the key type.
type GenerateOptions struct {
	KeyType    string        // KeyECDSA (default) or KeyRSA
	RSABits    int           // default 2048; MinRSABits..MaxRSABits
	CommonName string        // default "dfdaemon CA <hostname>": one CA per host, told apart in trust stores
	Validity   time.Duration // 0: DefaultValidity; negative is refused
	Overwrite  bool          // replace existing files
}

// Generate writes a new self-signed CA: the certificate to certPath (PEM,
// mode 0644) and its PKCS#8 private key to keyPath (PEM, mode 0600). It
// refuses to replace an existing file unless opts.Overwrite is set, because a
// replaced CA silently breaks every client that trusts the old one.
func Generate(certPath, keyPath string, opts GenerateOptions) error {
	if certPath == "" || keyPath == "" {
		return errors.New("gen-ca: certificate and key paths are required")
	}
	if destination(certPath) == destination(keyPath) {
		// The certificate would be renamed over the key, which no one
		// has then: the CA could never sign again.
		return fmt.Errorf("gen-ca: certificate and key are the same file %s: give two paths", certPath)
	}
	if opts.Validity < 0 {
		return fmt.Errorf("gen-ca: validity %v: want a positive duration", opts.Validity)
	}
	if !opts.Overwrite {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("gen-ca: %s exists (remove it or pass --overwrite)", p)
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("gen-ca: %w", err)
			}
		}
	}
	key, err := newKey(opts.KeyType, opts.RSABits)
	if err != nil {
		return fmt.Errorf("gen-ca: %w", err)
	}
	der, err := selfSign(key, opts)
	if err != nil {
		return fmt.Errorf("gen-ca: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("gen-ca: encode key: %w", err)
	}
	// Both files are staged before either is renamed into place, so a
	// failure (say, a missing directory) leaves neither half behind.
	keyTmp, err := stagePEM(keyPath, "PRIVATE KEY", keyDER, 0o600)
	if err != nil {
		return fmt.Errorf("gen-ca: %w", err)
	}
	defer os.Remove(keyTmp) // no-op after the rename
	certTmp, err := stagePEM(certPath, "CERTIFICATE", der, 0o644)
	if err != nil {
		return fmt.Errorf("gen-ca: %w", err)
	}
	defer os.Remove(certTmp)
	if err := os.Rename(keyTmp, keyPath); err != nil {
		return fmt.Errorf("gen-ca: write %s: %w", keyPath, err)
	}
	if err := os.Rename(certTmp, certPath); err != nil {
		return fmt.Errorf("gen-ca: write %s: %w", certPath, err)
	}
	return nil
}

func newKey(kind string, bits int) (crypto.Signer, error) {
	switch kind {
	case "", KeyECDSA:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA:
		if bits == 0 {
			bits = MinRSABits
		}
		if bits < MinRSABits || bits > MaxRSABits {
			return nil, fmt.Errorf("RSA key of %d bits: want %d..%d", bits, MinRSABits, MaxRSABits)
		}
		return rsa.GenerateKey(rand.Reader, bits)
	default:
		return nil, fmt.Errorf("unknown key type %q (want %s or %s)", kind, KeyECDSA, KeyRSA)
	}
}

func selfSign(key crypto.Signer, opts GenerateOptions) ([]byte, error) {
	cn := opts.CommonName
	if cn == "" {
		cn = "dfdaemon CA"
		if h, err := os.Hostname(); err == nil && h != "" {
			cn += " " + h
		}
	}
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"dfdaemon"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clocks lag
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs leaves only, never another CA
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	return der, nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	sum := sha1.Sum(der) // RFC 5280 method 1 uses SHA-1; it only names the key
	return sum[:], nil
}

// destination is the file that renaming onto p replaces: p made absolute
// and clean, its directory's symbolic links resolved (p's own last
// element, if a link, is replaced by the rename, not followed).
func destination(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	dir, base := filepath.Split(abs)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		return filepath.Join(real, base)
	}
	return abs
}

// stagePEM writes der as PEM to a temporary file beside path and returns its
// name; the caller renames it into place, so an interrupted run never leaves
// a truncated key where a client or dfdaemon would read it.
func stagePEM(path, kind string, der []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".gen-ca-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	err = f.Chmod(mode)
	if err == nil {
		err = pem.Encode(f, &pem.Block{Type: kind, Bytes: der})
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return f.Name(), nil
}

// KeyPair is a loaded certificate with its private key. When Cert is a CA it
// can sign leaf certificates (see Issuer).
type KeyPair struct {
	Cert *x509.Certificate
	TLS  tls.Certificate
	key  crypto.Signer
}

// IsCA reports whether the pair may sign certificates: a CA basic
// constraint and, when key usage is present, the certSign bit.
func (p *KeyPair) IsCA() bool {
	c := p.Cert
	if !c.BasicConstraintsValid || !c.IsCA {
		return false
	}
	return c.KeyUsage == 0 || c.KeyUsage&x509.KeyUsageCertSign != 0
}

// Load reads a PEM certificate and its private key (PKCS#1, PKCS#8 or SEC 1)
// and checks that they belong together.
func Load(certPath, keyPath string) (*KeyPair, error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("load key pair %s, %s: %w", certPath, keyPath, err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load key pair %s: unsupported private key type %T", keyPath, pair.PrivateKey)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("load key pair %s: %w", certPath, err)
		}
	}
	return &KeyPair{Cert: pair.Leaf, TLS: pair, key: signer}, nil
}
