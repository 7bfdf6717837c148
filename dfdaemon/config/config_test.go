package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/dfdaemon/ca"
	"github.com/damselfly-p2p/damselfly/pkg/rate"
)

// v1File is a dfdaemon.yml as Dragonfly 1.x documented it, with keys this
// dfdaemon does not use.
const v1File = `
registry_mirror:
  remote: https://registry.example.com
  insecure: true
  direct: false
proxies:
- regx: blobs/sha256.*
- regx: some-registry/
  use_https: true
- regx: no-proxy-reg
  direct: true
- regx: registry.example.com
  redirect: another-registry.example.com
hijack_https:
  cert: df.crt
  key: df.key
  hosts:
  - regx: mirror.aliyuncs.com:443
    insecure: true
supernodes:
- 10.0.0.1:8002=2
- 10.0.0.2
dfget_flags: ["--verbose", "-f", "Expires&OSSAccessKeyId&Signature"]
localIP: 10.0.0.9
port: 65002
ratelimit: 50M
maxprocs: 8
hostIp: 127.0.0.1
streamMode: false
`

func load(t *testing.T, file string, args ...string) (*Config, error) {
	t.Helper()
	return loadWith(t, filepath.Join(t.TempDir(), "none.yml"), file, args...)
}

// loadWith is load with dfget's properties file at props (never the
// host's /etc/dragonfly/dfget.yml).
func loadWith(t *testing.T, props, file string, args ...string) (*Config, error) {
	t.Helper()
	c := New()
	c.DfgetPropertyFile = props
	f := pflag.NewFlagSet("dfdaemon", pflag.ContinueOnError)
	c.BindFlags(f)
	if file != "" {
		p := filepath.Join(t.TempDir(), "dfdaemon.yml")
		if err := os.WriteFile(p, []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", p)
	}
	args = append(args, "--workHome", t.TempDir())
	if err := f.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c, c.Load(f)
}

func TestV1FileAcceptedAsIs(t *testing.T) {
	c, err := load(t, v1File)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 65002 || c.RateLimit != 50*rate.MB || c.LocalIP != "10.0.0.9" {
		t.Fatalf("port %d ratelimit %v localIP %q", c.Port, c.RateLimit, c.LocalIP)
	}
	if c.Registry().String() != "https://registry.example.com" || !c.RegistryMirror.Insecure {
		t.Fatalf("registry %v %+v", c.Registry(), c.RegistryMirror)
	}
	if c.Nodes.String() != "10.0.0.1:8002=2,10.0.0.2:8002=1" {
		t.Fatalf("nodes %s", c.Nodes.String())
	}
	if len(c.Proxies) != 4 || !c.Proxies[1].UseHTTPS || !c.Proxies[2].Direct || c.Proxies[3].Redirect == "" {
		t.Fatalf("proxies %+v", c.Proxies)
	}
	if c.HijackHTTPS == nil || c.HijackHTTPS.Cert != "df.crt" || !c.HijackHTTPS.Hosts[0].Insecure {
		t.Fatalf("hijack %+v", c.HijackHTTPS)
	}
	if c.LocalRepo != filepath.Join(c.WorkHome, "dfdaemon", "data") {
		t.Fatalf("localrepo %s", c.LocalRepo)
	}
	if _, err := os.Stat(c.LocalRepo); err != nil {
		t.Fatalf("localrepo not created: %v", err)
	}
}

func TestFlagsWinOverFile(t *testing.T) {
	c, err := load(t, v1File, "--port", "7000", "--registry", "http://127.0.0.1:5000", "--node", "10.1.1.1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 7000 || c.Registry().String() != "http://127.0.0.1:5000" || c.Nodes.String() != "10.1.1.1:8002=1" {
		t.Fatalf("port %d registry %v nodes %s", c.Port, c.Registry(), c.Nodes.String())
	}
	if c.RateLimit != 50*rate.MB {
		t.Fatalf("ratelimit %v: the file's value is lost", c.RateLimit)
	}
}

func TestDefaultsWithoutFile(t *testing.T) {
	c := New()
	f := pflag.NewFlagSet("dfdaemon", pflag.ContinueOnError)
	c.BindFlags(f)
	home := t.TempDir()
	if err := f.Parse([]string{"--workHome", home}); err != nil {
		t.Fatal(err)
	}
	c.File = filepath.Join(home, "missing.yml") // the default file may be absent
	if err := c.Load(f); err != nil {
		t.Fatal(err)
	}
	if c.Port != 65001 || c.RateLimit != 20*rate.MB || c.Registry().String() != DefaultRegistry || len(c.Nodes) != 0 {
		t.Fatalf("defaults: %+v", c)
	}
	if c.MaxStreams != 6 || c.SwarmOptions().MaxStreams != 6 {
		t.Fatalf("max streams %d (swarm %d), want the default 6", c.MaxStreams, c.SwarmOptions().MaxStreams)
	}
}

// maxStreams comes from the file, a flag wins over it, and 0 lifts the
// cap.
func TestMaxStreams(t *testing.T) {
	for _, tc := range []struct {
		file string
		args []string
		want int
	}{
		{"maxStreams: 2\n", nil, 2},
		{"maxStreams: 2\n", []string{"--max-streams", "9"}, 9},
		{"", []string{"--max-streams", "0"}, 0},
		{v1File, nil, DefaultMaxStreams},
	} {
		c, err := load(t, tc.file, tc.args...)
		if err != nil {
			t.Fatalf("file %q args %v: %v", tc.file, tc.args, err)
		}
		if c.MaxStreams != tc.want || c.SwarmOptions().MaxStreams != tc.want {
			t.Errorf("file %q args %v: max streams %d (swarm %d), want %d", tc.file, tc.args, c.MaxStreams,
				c.SwarmOptions().MaxStreams, tc.want)
		}
	}
}

func TestBadConfigExitCodes(t *testing.T) {
	for _, tc := range []struct {
		file string
		args []string
		code int
	}{
		{"port: [1]\n", nil, ExitConfig},
		{"", []string{"--port", "70000"}, ExitPortInvalid},
		{"", []string{"--registry", "ftp://x"}, ExitConfig},
		{"", []string{"--localrepo", "relative/dir"}, ExitPathNotAbs},
		{"", []string{"--certpem", "/x.pem"}, ExitConfig},
		{"supernodes: ['bad host']\n", nil, ExitConfig},
		{"ratelimit: lots\n", nil, ExitConfig},
		{"maxStreams: -1\n", nil, ExitConfig},
		{"", []string{"--max-streams", "-2"}, ExitConfig},
		{"proxies:\n- regx: '('\n", nil, ExitConfig},
		{"proxies:\n- direct: true\n", nil, ExitConfig},
		{"hijack_https:\n  cert: ca.crt\n", nil, ExitConfig},
		{"proxy_digest_hosts: ['https://reg.example']\n", nil, ExitConfig},
		{"proxy_digest_hosts: ['reg.example/v2']\n", nil, ExitConfig},
		{"proxy_digest_hosts: ['']\n", nil, ExitConfig},
	} {
		_, err := load(t, tc.file, tc.args...)
		var ce *Error
		if !errors.As(err, &ce) || ce.Code != tc.code {
			t.Errorf("file %q args %v: %v, want exit code %d", tc.file, tc.args, err, tc.code)
		}
	}
	c := New()
	f := pflag.NewFlagSet("dfdaemon", pflag.ContinueOnError)
	c.BindFlags(f)
	_ = f.Parse([]string{"--config", "/nonexistent/dfdaemon.yml"})
	var ce *Error
	if err := c.Load(f); !errors.As(err, &ce) || ce.Code != ExitConfig {
		t.Errorf("a missing --config file: %v, want exit code %d", err, ExitConfig)
	}
}

// The proxy shares blobs by digest only with the mirrored registry and
// the hosts the operator lists; a v1 file (no list) gets the registry's.
func TestDigestHosts(t *testing.T) {
	c, err := load(t, v1File)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.DigestHosts(), ","); got != "registry.example.com" {
		t.Errorf("v1 file: digest hosts %q, want the mirrored registry's", got)
	}
	c, err = load(t, v1File+"proxy_digest_hosts: [registry-1.docker.io, 'reg.example:5000', '[::1]:5000']\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.DigestHosts(), ","); got != "registry.example.com,registry-1.docker.io,reg.example:5000,[::1]:5000" {
		t.Errorf("digest hosts %q", got)
	}
}

func TestPartialRegistryMirrorKeepsDefaultRemote(t *testing.T) {
	c, err := load(t, "registry_mirror:\n  insecure: true\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Registry().String() != DefaultRegistry || !c.RegistryMirror.Insecure {
		t.Fatalf("registry %v insecure %v", c.Registry(), c.RegistryMirror.Insecure)
	}
}

// TestDfgetFlags: v1 setups name their supernodes in dfget_flags; the flags
// that mean something to in-process downloads are taken where dfdaemon's
// own flags and keys left them unset, and the rest are named for a warning.
func TestDfgetFlags(t *testing.T) {
	const file = `
dfget_flags: ["--node","192.168.33.21,192.168.33.22=2","--verbose","--ip","192.168.33.23","--port","15001",
  "--expiretime","3m0s","-f","filterParam1&filterParam2","--notbs"]
`
	c, err := load(t, file)
	if err != nil {
		t.Fatal(err)
	}
	if c.Nodes.String() != "192.168.33.21:8002=1,192.168.33.22:8002=2" || c.LocalIP != "192.168.33.23" ||
		c.PeerPort != 15001 || !c.Verbose {
		t.Fatalf("nodes %s ip %q peer port %d verbose %v", c.Nodes.String(), c.LocalIP, c.PeerPort, c.Verbose)
	}
	if got := strings.Join(c.IgnoredDfgetFlags, " "); got != "--expiretime -f --notbs" {
		t.Fatalf("ignored %q", got)
	}
	// dfdaemon's own --node and the supernodes key win, as v1's --node
	// came after dfget_flags on the command line.
	c, err = load(t, file, "--node", "10.9.9.9")
	if err != nil || c.Nodes.String() != "10.9.9.9:8002=1" {
		t.Fatalf("--node: %v %s", err, c.Nodes.String())
	}
	c, err = load(t, v1File)
	if err != nil || c.Nodes.String() != "10.0.0.1:8002=2,10.0.0.2:8002=1" || c.LocalIP != "10.0.0.9" || !c.Verbose {
		t.Fatalf("supernodes and localIP keys: %v nodes %s ip %s verbose %v", err, c.Nodes.String(), c.LocalIP, c.Verbose)
	}
	for _, bad := range []string{`dfget_flags: ["--node", "a:0"]`, `dfget_flags: ["--port", "x"]`} {
		if _, err := load(t, bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestBadLocalIPIsAConfigError(t *testing.T) {
	for _, file := range []string{"localIP: notanip\n", "localIP: 10.0.0.1.2\n", "localIP: '::1'\n",
		"dfget_flags: ['--ip', '300.1.1.1']\n"} {
		_, err := load(t, file)
		var ce *Error
		if !errors.As(err, &ce) || ce.Code != ExitConfig {
			t.Errorf("file %q: %v, want exit code %d", file, err, ExitConfig)
		}
	}
}

// dfget's properties are read once, by Load; an error in them, or one in
// the dfget configuration every download gets, is a startup error.
func TestDfgetPropertiesReadAtStartup(t *testing.T) {
	dir := t.TempDir()
	props := filepath.Join(dir, "dfget.yml")
	write := func(s string) {
		if err := os.WriteFile(props, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("nodes: [10.0.0.7:8002]\nnodeToken: tok\n")
	c, err := loadWith(t, props, "")
	if err != nil {
		t.Fatal(err)
	}
	write("nodes: [\n")
	if o := c.SwarmOptions(); o.Properties.NodeToken != "tok" || len(o.Properties.Nodes) != 1 {
		t.Fatalf("swarm properties %+v, want the file's as Load read it", o.Properties)
	}
	for _, bad := range []string{"nodes: [\n", "nodes: ['a:b:c']\n", "nodeCACerts: [" + dir + "/none.pem]\n"} {
		write(bad)
		_, err := loadWith(t, props, "")
		var ce *Error
		if !errors.As(err, &ce) || ce.Code != ExitConfig {
			t.Errorf("properties %q: %v, want exit code %d", bad, err, ExitConfig)
		}
	}
}

// A certificate pair that cannot serve stops dfdaemon with the
// configuration's exit code, before it listens.
func TestTLSPairLoadedByLoad(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := ca.Generate(cert, key, ca.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := load(t, "", "--certpem", cert, "--keypem", key)
	if err != nil || c.TLSCert == nil {
		t.Fatalf("good pair: %v, cert %v", err, c.TLSCert)
	}
	other, otherKey := filepath.Join(dir, "c2.pem"), filepath.Join(dir, "k2.pem")
	if err := ca.Generate(other, otherKey, ca.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"missing key":   {"--certpem", cert, "--keypem", filepath.Join(dir, "none.pem")},
		"junk cert":     {"--certpem", junk, "--keypem", key},
		"another's key": {"--certpem", cert, "--keypem", otherKey},
	} {
		_, err := load(t, "", args...)
		var ce *Error
		if !errors.As(err, &ce) || ce.Code != ExitConfig {
			t.Errorf("%s: %v, want exit code %d", name, err, ExitConfig)
		}
	}
}

// A v1 dfdaemon command line starts: its flags this dfdaemon needs
// little are accepted, as their YAML keys are.
func TestV1CommandLineFlags(t *testing.T) {
	c, err := load(t, "", "--maxprocs", "3", "--hostIp", "10.1.1.1", "--streamMode", "--dfpath", "/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxProcs != 3 || c.DfPath != "/bin/true" || c.SwarmOptions().ServerExecutable != "/bin/true" {
		t.Fatalf("maxprocs %d dfpath %q server %q", c.MaxProcs, c.DfPath, c.SwarmOptions().ServerExecutable)
	}
	if c.LocalIP != "" {
		t.Fatalf("hostIp became localIP %q: v1 never used it", c.LocalIP)
	}
	c, err = load(t, "maxprocs: 2\ndfpath: /bin/true\nhostIp: x\nstreamMode: true\n", "--maxprocs", "5")
	if err != nil || c.MaxProcs != 5 || c.DfPath != "/bin/true" {
		t.Fatalf("file and flag: %v, maxprocs %d dfpath %q; want the flag's 5", err, c.MaxProcs, c.DfPath)
	}
	for args, code := range map[string]int{"--maxprocs=-1": ExitConfig, "--dfpath=/nonexistent/dfget": ExitDfgetMissing} {
		_, err := load(t, "", args)
		var ce *Error
		if !errors.As(err, &ce) || ce.Code != code {
			t.Errorf("%s: %v, want exit code %d", args, err, code)
		}
	}
}
