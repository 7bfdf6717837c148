package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// With --max-streams 1, two layers fetched at once through the mirror
// (plain GETs, as an engine's parallel layer downloads) stream one after
// the other: the second waits for the slot (streams_waiting shows it,
// never two streams in flight) and is not forwarded, and both are whole
// and correct, from the swarm, each read once from the registry.
func TestDfdaemonStreamCap(t *testing.T) {
	reg, _ := startRegistry(t)
	dir, img := writeOCI(t, 300, 8<<20, 8<<20+5)
	pushOCI(t, dir, reg, "cap/app:v1")
	cp := startCountingProxy(t, reg, "")
	sn := startSupernode(t, t.TempDir())
	// 4 MB/s: a layer streams for about 2 s, so the second GET arrives
	// while the first holds the slot.
	d := startDfdaemon(t, cp.addr, sn, "--max-streams", "1", "--ratelimit", "4MB")

	errs := make([]error, len(img.Layers))
	var wg sync.WaitGroup
	for i, l := range img.Layers {
		wg.Go(func() { errs[i] = getBlob("http://"+d.addr+"/v2/cap/app/blobs/"+l, l, len(img.Blobs[l])) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var maxWaiting, maxInFlight float64
	for polling := true; polling; {
		select {
		case <-done:
			polling = false
		case <-time.After(20 * time.Millisecond):
		}
		page := d.metricsPage(t)
		w, _ := sampleSum(strings.NewReader(page), "dragonfly_dfdaemon_streams_waiting ")
		f, _ := sampleSum(strings.NewReader(page), "dragonfly_dfdaemon_streams_in_flight ")
		maxWaiting, maxInFlight = max(maxWaiting, w), max(maxInFlight, f)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
	if maxWaiting != 1 || maxInFlight != 1 {
		t.Fatalf("at most %v GETs waiting and %v streams in flight, want 1 and 1", maxWaiting, maxInFlight)
	}
	d.wantStreams(t, "p2p", 2)
	if n := d.metric(t, "dragonfly_dfdaemon_stream_wait_timeouts_total "); n != 0 {
		t.Fatalf("%v waits ended on the bound, want none", n)
	}
	if n := d.metric(t, "dragonfly_dfdaemon_forwarded_total "); n != 0 {
		t.Fatalf("%v requests forwarded, want none", n)
	}
	wantLayersReadOnce(t, img, cp.reads)
}

// getBlob GETs url and checks the body against digest d and its size.
func getBlob(url, d string, size int) error {
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s after %d bytes: %w", url, n, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d || n != int64(size) {
		return fmt.Errorf("GET %s: %d bytes of digest %s, want %d of %s", url, n, got, size, d)
	}
	return nil
}
