package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dfgetPeer is one simulated host: a loopback IP and a work home, so it has
// its own peer server.
type dfgetPeer struct {
	t    *testing.T
	ip   string
	home string
}

// newDfgetPeer makes a peer whose peer server (spawned by dfget itself)
// is killed at cleanup through the pid it records.
func newDfgetPeer(t *testing.T, ip string) *dfgetPeer {
	t.Helper()
	p := &dfgetPeer{t: t, ip: ip, home: filepath.Join(t.TempDir(), "home-"+ip)}
	t.Cleanup(func() { p.killServer() })
	return p
}

// serverPid is the pid of the peer's running peer server, 0 if none.
func (p *dfgetPeer) serverPid() int {
	b, err := os.ReadFile(filepath.Join(p.home, "meta", "server.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// clientLog is the peer's dfget log ("" if none yet).
func (p *dfgetPeer) clientLog() string {
	b, _ := os.ReadFile(filepath.Join(p.home, "logs", "dfclient.log"))
	return string(b)
}

// serverLog is the peer server's log ("" if none yet).
func (p *dfgetPeer) serverLog() string {
	b, _ := os.ReadFile(filepath.Join(p.home, "logs", "dfserver.log"))
	return string(b)
}

func (p *dfgetPeer) killServer() {
	if pid := p.serverPid(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// dfgetRun is a finished dfget process.
type dfgetRun struct {
	code     int
	stdout   string
	stderr   string
	duration time.Duration
}

// dfgetArgs are the flags every e2e dfget gets: this peer's IP and home, a
// short peer server life, no properties file.
func (p *dfgetPeer) args(sn *supernode, extra ...string) []string {
	a := []string{"--ip", p.ip, "--home", p.home, "--config", "/dev/null", "--alivetime", "60s",
		"--expiretime", "60s"}
	if sn != nil {
		a = append(a, "--node", Addr(sn.api))
	}
	return append(a, extra...)
}

// run runs dfget to completion (at most 2 minutes).
func (p *dfgetPeer) run(sn *supernode, extra ...string) dfgetRun {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(p.t, "dfget"), p.args(sn, extra...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := dfgetRun{stdout: out.String(), stderr: errb.String(), duration: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		p.t.Fatalf("run dfget: %v", err)
	}
	if ctx.Err() != nil {
		p.t.Fatalf("dfget did not finish in time: %s %s", r.stdout, r.stderr)
	}
	return r
}

// stream runs dfget --stream and hands its stdout to consume; it returns
// the run once dfget exits.
func (p *dfgetPeer) stream(sn *supernode, consume func(io.Reader), extra ...string) dfgetRun {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(p.t, "dfget"), p.args(sn, append([]string{"--stream"}, extra...)...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	consume(out)
	_, _ = io.Copy(io.Discard, out)
	err = cmd.Wait()
	r := dfgetRun{stderr: errb.String(), duration: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("stream dfget: %v", err)
	}
	return r
}

// metricValue sums the samples of a Prometheus metric whose line starts
// with prefix (name plus optional labels). A labelled series that was never
// incremented is not on the page and reads 0; where a 0 is the assertion,
// use metricPresent, which a renamed metric cannot pass.
func metricValue(t *testing.T, sn *supernode, prefix string) float64 {
	t.Helper()
	v, _ := metricLines(t, sn, prefix)
	return v
}

// metricPresent is metricValue that fails the test when no line of the
// page starts with prefix.
func metricPresent(t *testing.T, sn *supernode, prefix string) float64 {
	t.Helper()
	v, n := metricLines(t, sn, prefix)
	if n == 0 {
		t.Fatalf("metric %s not on %s/metrics", prefix, sn.apiURL)
	}
	return v
}

func metricLines(t *testing.T, sn *supernode, prefix string) (float64, int) {
	t.Helper()
	resp, err := http.Get(sn.apiURL + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	return sampleSum(resp.Body, prefix)
}

// sampleSum sums the samples of a Prometheus text page whose line starts
// with prefix, and counts those lines.
func sampleSum(page io.Reader, prefix string) (sum float64, lines int) {
	sc := bufio.NewScanner(page)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
			lines++
		}
	}
	return sum, lines
}

// tlsClient is an HTTP client that trusts the certificates in the PEM file
// cert (a self-signed supernode's).
func tlsClient(t *testing.T, cert string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(cert)
	pool := x509.NewCertPool()
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("read %s: %v", cert, err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func fileEquals(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read output: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, differs from the %d-byte origin file", path, len(got), len(want))
	}
}

func noFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("%s exists after a failed download (%v)", path, err)
	}
}

func listenOn(ip string, port int) (net.Listener, error) {
	return net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(port)))
}
