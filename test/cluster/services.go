package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/test/cluster/synth"
)

// httpClient is for the harness's own short control requests.
func httpClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// WaitHTTP polls url until it answers 200 with a body starting with want,
// the process p exits, or timeout passes.
func WaitHTTP(ctx context.Context, url, want string, timeout time.Duration, p *Proc) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl := httpClient()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := cl.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.HasPrefix(string(b), want) {
				return nil
			}
			err = fmt.Errorf("status %d body %q", resp.StatusCode, b)
		}
		last = err
		var exited <-chan struct{}
		if p != nil {
			exited = p.Done()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", url, ctx.Err(), last)
		case <-exited:
			return fmt.Errorf("waiting for %s: process exited: %v", url, p.Wait())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Origin is a running synthetic-content origin server.
type Origin struct {
	Host *Host
	Proc *Proc
	Port int
}

// StartOrigin builds (once per cluster) and starts test/cmd/origin on h.
func (c *Cluster) StartOrigin(ctx context.Context, h *Host) (*Origin, error) {
	c.mu.Lock()
	bin := c.originBin
	c.mu.Unlock()
	if bin == "" {
		b, err := BuildOrigin(ctx, c.dir)
		if err != nil {
			return nil, err
		}
		bin = b
		c.mu.Lock()
		c.originBin = b
		c.mu.Unlock()
	}
	port, err := h.Port(8080)
	if err != nil {
		return nil, err
	}
	p, err := h.Start(c.ctx, Exec{Label: h.NextLabel("origin"), Path: bin, Args: []string{"-listen", h.Addr(port)}})
	if err != nil {
		return nil, err
	}
	o := &Origin{Host: h, Proc: p, Port: port}
	if err := WaitHTTP(ctx, o.base()+synth.PingPath, "OK", 15*time.Second, p); err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	return o, nil
}

func (o *Origin) base() string { return "http://" + o.Host.Addr(o.Port) }

// URL is the address of the synthetic file name of the given size.
func (o *Origin) URL(name string, size int64) string { return o.base() + synth.FilePath(name, size) }

// Stats fetches the origin's byte counters.
func (o *Origin) Stats(ctx context.Context) (synth.Stats, error) {
	var st synth.Stats
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.base()+synth.StatsPath, nil)
	resp, err := httpClient().Do(req)
	if err != nil {
		return st, fmt.Errorf("origin stats: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("origin stats: %w", err)
	}
	return st, nil
}

// BytesServed is how many file bytes the origin sent for one file.
func (o *Origin) BytesServed(ctx context.Context, name string, size int64) (int64, error) {
	st, err := o.Stats(ctx)
	if err != nil {
		return 0, err
	}
	return st.ByPath[synth.FilePath(name, size)], nil
}

// Supernode is a running bin/supernode.
type Supernode struct {
	Host         *Host
	Proc         *Proc
	Port         int
	DownloadPort int
	Home         string
}

// StartSupernode starts bin/supernode on h (ports 8002/8001 in namespace
// mode) and waits until /_ping answers OK. extra is appended to the flags.
func (c *Cluster) StartSupernode(ctx context.Context, h *Host, extra ...string) (*Supernode, error) {
	bin, err := Binary("supernode")
	if err != nil {
		return nil, err
	}
	port, err := h.Port(8002)
	if err != nil {
		return nil, err
	}
	dport, err := h.Port(8001)
	if err != nil {
		return nil, err
	}
	label := h.NextLabel("supernode")
	s := &Supernode{Host: h, Port: port, DownloadPort: dport, Home: filepath.Join(h.Dir(), label)}
	args := []string{
		"--port", strconv.Itoa(port), "--download-port", strconv.Itoa(dport),
		"--home-dir", s.Home, "--advertise-ip", h.IP,
	}
	if c.mode == ModeLoopback {
		// Origins are on 127.x addresses, which a supernode refuses unless
		// told; an extra --source-allow replaces this one.
		args = append(args, "--source-allow", "127.0.0.0/8")
	}
	args = append(args, extra...)
	s.Proc, err = h.Start(c.ctx, Exec{Label: label, Path: bin, Args: args})
	if err != nil {
		return nil, err
	}
	if err := WaitHTTP(ctx, "http://"+s.Node()+"/_ping", "OK", 30*time.Second, s.Proc); err != nil {
		return nil, fmt.Errorf("supernode: %w", err)
	}
	return s, nil
}

// Node is the supernode's ip:port, as dfget's --node wants it.
func (s *Supernode) Node() string { return s.Host.Addr(s.Port) }

// Metrics fetches /metrics and returns every sample, keyed by the metric
// name with its labels as printed (e.g. `x_total{code="200"}`).
func (s *Supernode) Metrics(ctx context.Context) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Node()+"/metrics", nil)
	resp, err := httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("supernode metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("supernode metrics: status %d", resp.StatusCode)
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics reads Prometheus text exposition into name{labels} -> value.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			return nil, fmt.Errorf("metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		m[strings.TrimSpace(line[:i])] = v
	}
	return m, sc.Err()
}

// SumMetric adds the samples of one metric over all its label sets.
func SumMetric(m map[string]float64, name string) float64 {
	var sum float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}

// Dfget describes one dfget download.
type Dfget struct {
	URL    string
	Output string   // ignored with Stream
	Nodes  []string // supernode ip:port values
	// Stream, when set, runs dfget --stream and receives the file.
	Stream io.Writer
	// Extra flags, appended last.
	Extra []string
}

// DfgetHome is the --home every dfget on h uses, so that one peer server
// per host serves all of its downloads.
func (h *Host) DfgetHome() string { return filepath.Join(h.Dir(), "dfget-home") }

// StartDfget starts bin/dfget on h with --ip, --home and --notbs (a
// benchmark must never silently fall back to the origin).
func (h *Host) StartDfget(ctx context.Context, d Dfget) (*Proc, error) {
	bin, err := Binary("dfget")
	if err != nil {
		return nil, err
	}
	args := []string{"-u", d.URL, "--node", strings.Join(d.Nodes, ","), "--ip", h.IP, "--home", h.DfgetHome(), "--notbs"}
	if d.Stream != nil {
		args = append(args, "--stream")
	} else {
		args = append(args, "-o", d.Output)
	}
	args = append(args, d.Extra...)
	return h.Start(ctx, Exec{Label: h.NextLabel("dfget"), Path: bin, Args: args, Stdout: d.Stream})
}

// StartCurl starts `curl` on h downloading url to out; curl fails on HTTP
// errors and gives up after maxTime.
func (h *Host) StartCurl(ctx context.Context, url, out string, maxTime time.Duration) (*Proc, error) {
	args := []string{"-sS", "-f", "-o", out, "--max-time", strconv.Itoa(int(maxTime.Seconds())), url}
	return h.Start(ctx, Exec{Label: h.NextLabel("curl"), Path: "curl", Args: args})
}
