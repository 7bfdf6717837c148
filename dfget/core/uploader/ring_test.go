package uploader

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// The streaming dfget's side of the ring, as dfget/core does it: reserve a
// slot, write the piece into the ring file, commit.
func pushRing(t *testing.T, c *api.Client, port int, f *os.File, num int, wrapped []byte) int {
	t.Helper()
	ctx := context.Background()
	slot, err := c.ReserveStreamSlot(ctx, "127.0.0.1", port, "st", num)
	if err != nil {
		t.Fatalf("reserve %d: %v", num, err)
	}
	if _, err := f.WriteAt(wrapped, int64(slot)*testPieceSize); err != nil {
		t.Fatal(err)
	}
	if err := c.CommitStreamSlot(ctx, "127.0.0.1", port, "st", num, slot, len(wrapped)); err != nil {
		t.Fatalf("commit %d: %v", num, err)
	}
	return slot
}

func TestStreamRing(t *testing.T) {
	fs := &fakeSupernode{}
	sn := httptest.NewServer(fs)
	defer sn.Close()
	s, _ := newTestServer(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	c := api.New()
	c.SetLocalToken(testToken)
	ctx := context.Background()
	ring, err := c.RegisterStreamTask(ctx, "127.0.0.1", port, api.StreamTask{TaskFileName: "st", TaskID: "T", CID: "C",
		SuperNode: sn.Listener.Addr().String(), PieceSize: testPieceSize, WindowSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if ring.Path == "" || ring.Slots != 4 {
		t.Fatalf("ring %+v, want a path and 2 x window = 4 slots", ring)
	}
	f, err := OpenRing(ring.Path, ring.Slots, testPieceSize)
	if err != nil {
		t.Fatalf("open ring as the dfget does: %v", err)
	}
	defer f.Close()

	wrapped := make([][]byte, 6)
	slots := map[int]bool{}
	for i := range wrapped {
		wrapped[i] = piece.Wrap(nil, bytes.Repeat([]byte{byte(i + 1)}, 1000+i), testPieceSize)
		slots[pushRing(t, c, port, f, i, wrapped[i])] = true
	}
	// Window 2: evicted slots come back, so 6 pieces fit in 4 slots.
	if len(slots) > 4 {
		t.Errorf("pieces used slots %v", slots)
	}
	h := s.Handler()
	if w := do(t, h, "GET", "/peer/file/st", "10.0.0.9:1", pieceHeaders(3, -1), nil); w.Code != 404 {
		t.Errorf("evicted piece 3 served: %d", w.Code)
	}
	for _, n := range []int{4, 5} {
		if w := do(t, h, "GET", "/peer/file/st", "10.0.0.9:1", pieceHeaders(n, -1), nil); w.Code != 206 || !bytes.Equal(w.Body.Bytes(), wrapped[n]) {
			t.Errorf("cached piece %d from the ring: %d, %d bytes", n, w.Code, w.Body.Len())
		}
	}

	// A commit that fails its checks frees its slot and caches nothing.
	slot, err := c.ReserveStreamSlot(ctx, "127.0.0.1", port, "st", 6)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CommitStreamSlot(ctx, "127.0.0.1", port, "st", 6, slot, 0); err == nil {
		t.Error("commit of length 0 accepted")
	}
	if err := c.CommitStreamSlot(ctx, "127.0.0.1", port, "st", 7, slot, len(wrapped[0])); err == nil {
		t.Error("commit of a slot not reserved for the piece accepted")
	}
	// Every slot must be free again but the two cached ones (pieces 4, 5):
	// otherwise failed commits would leak slots and shrink the window.
	for range 2 {
		if _, err := c.ReserveStreamSlot(ctx, "127.0.0.1", port, "st", 8); err != nil {
			t.Fatalf("slot leaked by a failed commit: %v", err)
		}
	}

	// Dropping the cache while a response sends from the ring keeps the
	// mapping until that response ends.
	sc := s.stream("st")
	sc.mu.Lock()
	sc.sending++ // as send does
	sc.mu.Unlock()
	if err := c.CloseStreamTask(ctx, "127.0.0.1", port, "st"); err != nil {
		t.Fatal(err)
	}
	sc.mu.Lock()
	mapped := sc.ring != nil
	sc.sending--
	sc.shutRing()
	unmapped := sc.ring == nil
	sc.mu.Unlock()
	if !mapped || !unmapped {
		t.Errorf("ring mapped while sending: %v; unmapped after: %v", mapped, unmapped)
	}
	if _, err := c.ReserveStreamSlot(ctx, "127.0.0.1", port, "st", 9); err == nil {
		t.Error("slot reserved on a closed stream")
	}
}

// A peer server without a ring (or a dfget that cannot open it) still
// takes pushed bodies; the ring path is an optimisation only.
func TestStreamRingAbsent(t *testing.T) {
	s, _ := newTestServer(t)
	h := s.Handler()
	w := do(t, h, "POST", "/stream/task", "127.0.0.1:1", map[string]string{"taskFileName": "st", "taskID": "T",
		"cid": "C", "pieceSize": strconv.Itoa(testPieceSize), "windowSize": "2"}, nil)
	if w.Code != 200 || w.Header().Get(api.HeaderStreamRing) != "" {
		t.Fatalf("stream task without asking for a ring: %d, ring %q", w.Code, w.Header().Get(api.HeaderStreamRing))
	}
	if w := do(t, h, "POST", "/stream/slot", "127.0.0.1:1", map[string]string{"taskFileName": "st", "pieceNum": "0"}, nil); w.Code != 400 {
		t.Errorf("slot without a ring: %d", w.Code)
	}
}

// A reservation whose commit never comes (the commit request was lost)
// frees its slot and its place in the window after slotTTL.
func TestStreamRingReservationExpires(t *testing.T) {
	s, _ := newTestServer(t)
	s.slotTTL = 10 * time.Millisecond
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	c := api.New()
	c.SetLocalToken(testToken)
	ctx := context.Background()
	if _, err := c.RegisterStreamTask(ctx, "127.0.0.1", port, api.StreamTask{TaskFileName: "st", TaskID: "T", CID: "C",
		PieceSize: testPieceSize, WindowSize: 1}); err != nil {
		t.Fatal(err)
	}
	lost, err := c.ReserveStreamSlot(ctx, "127.0.0.1", port, "st", 0)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if _, err := c.ReserveStreamSlot(ctx, "127.0.0.1", port, "st", 1); err != nil {
		t.Fatal(err)
	}
	sc := s.stream("st")
	sc.mu.Lock()
	reserved, pending := sc.reserved, len(sc.pending)
	sc.mu.Unlock()
	if reserved != 1 || pending != 1 {
		t.Errorf("after the lost reservation expired: %d reserved, %d pending, want 1 and 1", reserved, pending)
	}
	if err := c.CommitStreamSlot(ctx, "127.0.0.1", port, "st", 0, lost, 100); err == nil {
		t.Error("a commit of an expired reservation was accepted")
	}
}
