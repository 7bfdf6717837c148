package proxy

import (
	"encoding/json"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// v1Sample is a dfdaemon.yml as Dragonfly 1.x documents it, with keys this
// package does not own left in place.
const v1Sample = `
dfget_flags: ["--node","192.168.33.21","-f","filterParam1&filterParam2"]
registry_mirror:
  remote: https://index.docker.io
  insecure: false
  certs: []
proxies:
  # proxy all http image layer download requests with dfget
  - regx: blobs/sha256.*
  # change http requests to some-registry to https and proxy them with dfget
  - regx: some-registry/
    use_https: true
  # proxy requests directly, without dfget
  - regx: no-proxy-reg
    direct: true
  # proxy requests with redirect
  - regx: some-registry
    redirect: another-registry
hijack_https:
  cert: df.crt
  key: df.key
  hosts:
    - regx: mirror.aliyuncs.com:443  # regexp to match request hosts
      insecure: false
      certs: []
    - regx: host-2
      insecure: true
    - regx: host-3
      certs: ["server.crt"]
`

type v1File struct {
	Proxies []Rule        `yaml:"proxies"`
	Hijack  *HijackConfig `yaml:"hijack_https"`
}

func TestV1YAML(t *testing.T) {
	var f v1File
	if err := yaml.Unmarshal([]byte(v1Sample), &f); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if err := ValidateRules(f.Proxies); err != nil {
		t.Fatal(err)
	}
	if err := f.Hijack.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		regx     string
		useHTTPS bool
		direct   bool
		redirect string
	}{
		{"blobs/sha256.*", false, false, ""},
		{"some-registry/", true, false, ""},
		{"no-proxy-reg", false, true, ""},
		{"some-registry", false, false, "another-registry"},
	}
	if len(f.Proxies) != len(want) {
		t.Fatalf("%d rules, want %d", len(f.Proxies), len(want))
	}
	for i, w := range want {
		r := f.Proxies[i]
		if r.Regx.String() != w.regx || r.UseHTTPS != w.useHTTPS || r.Direct != w.direct || r.Redirect != w.redirect {
			t.Errorf("rule %d = {%s %v %v %q}, want %+v", i, r.Regx, r.UseHTTPS, r.Direct, r.Redirect, w)
		}
	}
	h := f.Hijack
	if h.Cert != "df.crt" || h.Key != "df.key" || len(h.Hosts) != 3 {
		t.Fatalf("hijack = %+v", h)
	}
	if h.Hosts[0].Regx.String() != "mirror.aliyuncs.com:443" || h.Hosts[0].Insecure || len(h.Hosts[0].Certs) != 0 {
		t.Errorf("hosts[0] = %+v", h.Hosts[0])
	}
	if !h.Hosts[1].Insecure || h.Hosts[2].Certs[0] != "server.crt" {
		t.Errorf("hosts[1..2] = %+v %+v", h.Hosts[1], h.Hosts[2])
	}
	if !h.Hosts[0].Regx.MatchString("mirror.aliyuncs.com:443") || h.Hosts[0].Regx.MatchString("mirror.aliyuncs.com:80") {
		t.Error("hosts[0] regx does not match as a regexp")
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	var f v1File
	if err := yaml.Unmarshal([]byte(v1Sample), &f); err != nil {
		t.Fatal(err)
	}
	for name, marshal := range map[string]func(any) ([]byte, error){"yaml": yaml.Marshal, "json": json.Marshal} {
		out, err := marshal(f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(string(out), "blobs/sha256.*") || !strings.Contains(string(out), "use_https") {
			t.Errorf("%s output lost the rules:\n%s", name, out)
		}
		var back v1File
		unmarshal := yaml.Unmarshal
		if name == "json" {
			unmarshal = json.Unmarshal
		}
		if err := unmarshal(out, &back); err != nil {
			t.Fatalf("%s: read back: %v", name, err)
		}
		if back.Proxies[3].Regx.String() != "some-registry" || back.Hijack.Hosts[2].Certs[0] != "server.crt" {
			t.Errorf("%s: round trip changed the config: %+v", name, back)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"bad regexp":       {"proxies:\n  - regx: 'blobs/(sha256'\n", "blobs/(sha256"},
		"bad host regexp":  {"hijack_https:\n  cert: a\n  key: b\n  hosts:\n    - regx: '[z-a]'\n", "[z-a]"},
		"missing regx":     {"proxies:\n  - use_https: true\n", "proxies[0]: regx is required"},
		"host no regx":     {"hijack_https:\n  cert: a\n  key: b\n  hosts:\n    - insecure: true\n", "hosts[0]: regx is required"},
		"redirect url":     {"proxies:\n  - regx: x\n    redirect: http://a/b\n", "redirect"},
		"redirect no port": {"proxies:\n  - regx: x\n    redirect: 'a:'\n", "empty port"},
		"cert alone":       {"hijack_https:\n  cert: a\n", "together"},
		"empty cert path":  {"hijack_https:\n  hosts:\n    - regx: a\n      certs: ['']\n", "empty path"},
	} {
		t.Run(name, func(t *testing.T) {
			var f v1File
			err := yaml.Unmarshal([]byte(tc.yaml), &f)
			if err == nil {
				err = ValidateRules(f.Proxies)
			}
			if err == nil {
				err = f.Hijack.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
