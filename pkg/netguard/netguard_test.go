package netguard

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestClass(t *testing.T) {
	cases := map[string]string{
		"127.0.0.1": "loopback", "127.9.8.7": "loopback", "::1": "loopback", "::ffff:127.0.0.1": "loopback",
		"ff01::1":         "loopback",
		"169.254.169.254": "link-local", "::ffff:169.254.1.1": "link-local", "fe80::1": "link-local",
		"fe80::1%eth0": "link-local", "febf::1": "link-local", "224.0.0.251": "link-local", "ff02::1": "link-local",
		"0.0.0.0": "unspecified", "::": "unspecified", "::ffff:0.0.0.0": "unspecified", "0.1.2.3": "unspecified",
		// Private and public ranges stay allowed.
		"10.1.2.3": "", "172.16.0.1": "", "192.168.1.1": "", "198.18.0.1": "", "8.8.8.8": "",
		"fc00::1": "", "2001:db8::1": "", "::ffff:10.0.0.1": "", "128.0.0.1": "", "169.255.0.1": "", "fec0::1": "",
	}
	for s, want := range cases {
		if got := Class(netip.MustParseAddr(s)); got != want {
			t.Errorf("Class(%s) = %q, want %q", s, got, want)
		}
	}
}

func TestValidateEntry(t *testing.T) {
	for _, ok := range []string{"mirror.example", "localhost", "127.0.0.1", "::1", "127.0.0.0/8", "fe80::/10", "::ffff:127.0.0.0/104", "LOCALHOST"} {
		if err := ValidateEntry(ok); err != nil {
			t.Errorf("ValidateEntry(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "http://x", "x:80", "user@x", "a b", "127.0.0.1:80", "[::1]", "fe80::1%eth0", "10.0.0.0/33"} {
		if err := ValidateEntry(bad); err == nil {
			t.Errorf("ValidateEntry(%q) accepted", bad)
		}
	}
}

func TestCheckAllowList(t *testing.T) {
	cases := []struct {
		allow   []string
		addr    string
		byName  bool
		refused bool
	}{
		{nil, "127.0.0.1", false, true},
		{nil, "::ffff:127.0.0.1", false, true},
		{nil, "169.254.169.254", false, true},
		{nil, "fe80::1", false, true},
		{nil, "0.0.0.0", false, true},
		{nil, "::", false, true},
		{nil, "10.0.0.1", false, false},
		{nil, "127.0.0.1", true, false},
		{[]string{"127.0.0.1"}, "127.0.0.1", false, false},
		{[]string{"127.0.0.1"}, "::ffff:127.0.0.1", false, false},
		{[]string{"127.0.0.1"}, "127.0.0.2", false, true},
		{[]string{"127.0.0.0/8"}, "127.0.0.2", false, false},
		{[]string{"::ffff:127.0.0.0/104"}, "127.3.0.1", false, false},
		{[]string{"::1"}, "::1", false, false},
		{[]string{"::1"}, "127.0.0.1", false, true},
		{[]string{"fe80::/10"}, "fe80::1%eth0", false, false},
		{[]string{"169.254.0.0/16"}, "169.254.169.254", false, false},
		{[]string{"localhost"}, "127.0.0.1", false, true},
	}
	for _, c := range cases {
		err := New(c.allow).Check(netip.MustParseAddr(c.addr), c.byName)
		if (err != nil) != c.refused {
			t.Errorf("allow %v, %s (byName %v): err %v, want refused %v", c.allow, c.addr, c.byName, err, c.refused)
		}
		if err != nil && !IsRefused(err) {
			t.Errorf("error %v is not a RefusedError", err)
		}
	}
}

func TestHostAllowed(t *testing.T) {
	g := New([]string{"Mirror.Example", "127.0.0.0/8", "::1"})
	for host, want := range map[string]bool{
		"mirror.example": true, "MIRROR.example": true, "127.0.0.5": true, "::1": true, "::ffff:127.0.0.1": true,
		"localhost": false, "other.example": false, "128.0.0.1": false, "::2": false,
	} {
		if got := g.HostAllowed(host); got != want {
			t.Errorf("HostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
	if !New(nil).HostAllowed("anything") {
		t.Error("an empty list must allow every host")
	}
}

// testGuard is New(allow) with names resolved by hosts (tests simulate DNS).
func testGuard(allow []string, hosts map[string]string) *Guard {
	g := New(allow)
	g.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		if a, ok := hosts[host]; ok {
			return []netip.Addr{netip.MustParseAddr(a)}, nil
		}
		return nil, errors.New("no such host")
	}
	return g
}

func get(t *testing.T, c *http.Client, u string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func secretServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "secret") }))
	t.Cleanup(srv.Close)
	return srv
}

func TestClientRefusesLoopback(t *testing.T) {
	srv := secretServer(t)
	d := &net.Dialer{Timeout: 2 * time.Second}
	_, err := get(t, New(nil).NewClient(d), srv.URL)
	if !IsRefused(err) || !strings.Contains(err.Error(), "source address 127.0.0.1 is refused: loopback; allow it with --source-allow") {
		t.Fatalf("want a loopback refusal, got %v", err)
	}
	mapped := strings.Replace(srv.URL, "127.0.0.1", "[::ffff:127.0.0.1]", 1)
	if _, err := get(t, New(nil).NewClient(d), mapped); !IsRefused(err) {
		t.Fatalf("IPv4-mapped loopback: want a refusal, got %v", err)
	}
	for _, allow := range [][]string{{"127.0.0.1"}, {"127.0.0.0/8"}} {
		if body, err := get(t, New(allow).NewClient(d), srv.URL); err != nil || body != "secret" {
			t.Fatalf("allow %v: got %q, %v", allow, body, err)
		}
	}
}

func TestNameResolvingToLoopback(t *testing.T) {
	srv := secretServer(t)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	hosts := map[string]string{"public.example": "127.0.0.1"}
	u := "http://public.example:" + port + "/"
	if _, err := get(t, testGuard(nil, hosts).NewClient(&net.Dialer{}), u); !IsRefused(err) {
		t.Fatalf("a name resolving to loopback: want a refusal, got %v", err)
	}
	// Listing the name vouches for what it resolves to.
	if body, err := get(t, testGuard([]string{"public.example"}, hosts).NewClient(&net.Dialer{}), u); err != nil || body != "secret" {
		t.Fatalf("listed name: got %q, %v", body, err)
	}
}

// A redirect from an allowed host to loopback (by address or by a name that
// resolves there) is refused when it is dialed.
func TestRedirectToLoopbackRefused(t *testing.T) {
	secret := secretServer(t)
	_, sport, _ := net.SplitHostPort(secret.Listener.Addr().String())
	for _, target := range []string{secret.URL + "/x", "http://sneaky.example:" + sport + "/x"} {
		redir := httptest.NewServer(http.RedirectHandler(target, http.StatusFound))
		_, rport, _ := net.SplitHostPort(redir.Listener.Addr().String())
		g := testGuard([]string{"origin.example"}, map[string]string{"origin.example": "127.0.0.1", "sneaky.example": "127.0.0.1"})
		body, err := get(t, g.NewClient(&net.Dialer{}), "http://origin.example:"+rport+"/")
		redir.Close()
		if !IsRefused(err) {
			t.Fatalf("redirect to %s: want a refusal, got %q, %v", target, body, err)
		}
	}
}

// A proxy on loopback is dialed for proxied requests, their targets are
// checked, and a direct request to the proxy's own address is refused.
func TestProxy(t *testing.T) {
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "via proxy "+r.URL.Host)
	}))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)
	g := testGuard(nil, map[string]string{"public.example": "198.18.0.7", "sneaky.example": "169.254.169.254"})
	g.proxies = map[string]bool{canonicalAddr(pu): true}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(pu)
	c := &http.Client{Transport: g.Transport(tr, &net.Dialer{})}
	if body, err := get(t, c, "http://public.example/f"); err != nil || body != "via proxy public.example" {
		t.Fatalf("proxied public target: got %q, %v", body, err)
	}
	for _, u := range []string{"http://127.0.0.1:9/", "http://sneaky.example/"} {
		if _, err := get(t, c, u); !IsRefused(err) {
			t.Fatalf("proxied %s: want a refusal, got %v", u, err)
		}
	}
	direct := &http.Client{Transport: g.Transport(http.DefaultTransport.(*http.Transport).Clone(), &net.Dialer{})}
	direct.Transport.(*guardedRT).t.Proxy = nil
	if _, err := get(t, direct, proxy.URL); !IsRefused(err) {
		t.Fatalf("direct request to the proxy's address: want a refusal, got %v", err)
	}
}

func TestEnvProxies(t *testing.T) {
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} {
		t.Setenv(k, "")
	}
	t.Setenv("HTTP_PROXY", "proxy.local:3128")
	t.Setenv("https_proxy", "https://10.0.0.1")
	got := envProxies()
	if len(got) != 2 || !got["proxy.local:3128"] || !got["10.0.0.1:443"] {
		t.Fatalf("envProxies = %v", got)
	}
}

// FuzzValidateEntry: any entry is accepted or refused without a panic, and
// an accepted one makes a non-empty allow list.
func FuzzValidateEntry(f *testing.F) {
	for _, s := range []string{"mirror.example", "127.0.0.1", "::1", "10.0.0.0/8", "::ffff:127.0.0.0/104", "a:b", "", "fe80::1%eth0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateEntry(s)
		if g := New([]string{s}); (err == nil) == g.Empty() {
			t.Fatalf("%q: ValidateEntry %v but Empty() = %v", s, err, g.Empty())
		}
		if err == nil {
			_ = New([]string{s}).Check(netip.MustParseAddr("127.0.0.1"), false)
		}
	})
}
