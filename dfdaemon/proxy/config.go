package proxy

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
)

// Regexp is a regular expression read from YAML or JSON as a string and
// compiled once, when the configuration is read: a bad expression fails the
// configuration, not a request.
type Regexp struct {
	*regexp.Regexp
}

// NewRegexp compiles expr.
func NewRegexp(expr string) (*Regexp, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("bad regular expression %q: %w", expr, err)
	}
	return &Regexp{re}, nil
}

// UnmarshalText implements encoding.TextUnmarshaler (YAML and JSON).
func (r *Regexp) UnmarshalText(b []byte) error {
	re, err := NewRegexp(string(b))
	if err != nil {
		return err
	}
	*r = *re
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (r Regexp) MarshalText() ([]byte, error) {
	if r.Regexp == nil {
		return nil, nil
	}
	return []byte(r.String()), nil
}

// Rule is one entry of dfdaemon.yml's `proxies` list. Rules are tried in
// order against the full request URL; the first whose Regx matches decides.
type Rule struct {
	// Regx is matched (unanchored) against the whole URL, query included.
	Regx *Regexp `yaml:"regx" json:"regx"`
	// UseHTTPS fetches the URL with https instead of http.
	UseHTTPS bool `yaml:"use_https" json:"use_https"`
	// Direct keeps matching requests off the swarm.
	Direct bool `yaml:"direct" json:"direct"`
	// Redirect, when set, replaces the URL's host (host or host:port).
	Redirect string `yaml:"redirect" json:"redirect"`
}

// HijackConfig is dfdaemon.yml's `hijack_https`: a CONNECT to a host that
// matches one of Hosts is intercepted with a certificate signed by the CA in
// Cert and Key, instead of being tunnelled.
type HijackConfig struct {
	Cert  string       `yaml:"cert" json:"cert"`
	Key   string       `yaml:"key" json:"key"`
	Hosts []HijackHost `yaml:"hosts" json:"hosts"`
}

// HijackHost selects hosts to intercept and says how their upstream TLS
// certificate is verified.
type HijackHost struct {
	// Regx is matched (unanchored) against the CONNECT authority, host:port.
	Regx *Regexp `yaml:"regx" json:"regx"`
	// Insecure skips verification of the upstream certificate.
	Insecure bool `yaml:"insecure" json:"insecure"`
	// Certs are PEM files of extra roots trusted for this host, beside the
	// system roots (for registries with self-signed certificates).
	Certs []string `yaml:"certs" json:"certs"`
}

// ValidateRules checks rules as read from YAML: every rule has a regx and
// a redirect, when given, is a bare host or host:port.
func ValidateRules(rules []Rule) error {
	for i, r := range rules {
		if r.Regx == nil || r.Regx.Regexp == nil {
			return fmt.Errorf("proxies[%d]: regx is required", i)
		}
		if r.Redirect != "" {
			if err := validAuthority(r.Redirect); err != nil {
				return fmt.Errorf("proxies[%d] (%s): redirect: %w", i, r.Regx, err)
			}
		}
	}
	return nil
}

// Validate checks the section without touching files (New loads them):
// cert and key come together and every host entry has a regx.
func (h *HijackConfig) Validate() error {
	if h == nil {
		return nil
	}
	if (h.Cert == "") != (h.Key == "") {
		return errors.New("hijack_https: cert and key must be given together")
	}
	for i, host := range h.Hosts {
		if host.Regx == nil || host.Regx.Regexp == nil {
			return fmt.Errorf("hijack_https.hosts[%d]: regx is required", i)
		}
		for j, c := range host.Certs {
			if strings.TrimSpace(c) == "" {
				return fmt.Errorf("hijack_https.hosts[%d].certs[%d]: empty path", i, j)
			}
		}
	}
	return nil
}

// enabled reports whether any CONNECT can be intercepted. Like v1, a
// section without a key pair intercepts nothing.
func (h *HijackConfig) enabled() bool {
	return h != nil && h.Cert != "" && len(h.Hosts) > 0
}

func validAuthority(s string) error {
	if strings.ContainsAny(s, "/?#@ ") {
		return fmt.Errorf("%q is not a host[:port]", s)
	}
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if port == "" {
			return fmt.Errorf("%q has an empty port", s)
		}
		host = h
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	return nil
}
