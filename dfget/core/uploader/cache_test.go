package uploader

import (
	"bytes"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// newTestCache is a stream cache with its notifier running and no
// supernode to report to; ringSlots 0 means no ring.
func newTestCache(t *testing.T, window, ringSlots int) *streamCache {
	t.Helper()
	var rg *ring
	if ringSlots > 0 {
		var err error
		if rg, err = newRing(ringSlots, testPieceSize); err != nil {
			t.Fatal(err)
		}
	}
	sc := newStreamCache(api.StreamTask{TaskFileName: "st", TaskID: "T", CID: "C", PieceSize: testPieceSize,
		WindowSize: window}, rg, api.New(), proc{})
	go sc.notify(logrus.New())
	return sc
}

// writeSlot writes a wrapped piece into a ring slot through the memfd, as
// the dfget does through its own mapping (the server's is read-only).
func writeSlot(t *testing.T, rg *ring, slot int, wrapped []byte) {
	t.Helper()
	if _, err := unix.Pwrite(rg.fd, wrapped, int64(slot*rg.size)); err != nil {
		t.Error(err)
	}
}

// The stream cache is guarded by its own lock: with the peer server's lock
// held elsewhere, pushes, reservations, commits, sends and the drop all go
// through, and concurrent use keeps the window's books straight (run with
// -race).
func TestStreamCacheOwnLock(t *testing.T) {
	s, _ := newTestServer(t)
	s.openStream(api.StreamTask{TaskFileName: "st", TaskID: "T", CID: "C", PieceSize: testPieceSize, WindowSize: 3},
		nil, api.NodeCreds{}, proc{})
	sc := s.stream("st")
	s.mu.Lock() // held for the whole test: the cache must never need it
	defer s.mu.Unlock()

	const pushers, perPusher = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, pushers*perPusher)
	for p := range pushers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range perPusher {
				num := p*perPusher + i
				w := piece.Wrap(nil, bytes.Repeat([]byte{byte(num)}, 100+num), testPieceSize)
				if err := sc.push(num, bytes.NewReader(w), len(w)); err != nil {
					errs <- err
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range perPusher {
				num := p*perPusher + i
				sc.send(num, testPieceSize, "127.0.0.1", func(b []byte) {
					if _, err := piece.Unwrap(b); err != nil || len(b) != 100+num+piece.WrapSize {
						errs <- errors.New("sent a piece other than the one cached: " + strconv.Itoa(num))
					}
				})
			}
		}()
	}
	waitOrFail(t, &wg, "the pushes and sends waited for the server's lock")
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sc.mu.Lock()
	reserved, cached, order := sc.reserved, len(sc.pieces), len(sc.order)
	sc.mu.Unlock()
	if reserved != 0 || cached != order || cached > 3 || cached == 0 {
		t.Errorf("after the pushes: %d reserved, %d cached, %d in order; want 0 reserved and 1-3 cached", reserved, cached, order)
	}

	wg.Add(1)
	go func() { defer wg.Done(); sc.drop() }()
	waitOrFail(t, &wg, "drop waited for the server's lock")
	w := piece.Wrap(nil, []byte("late"), testPieceSize)
	if err := sc.push(999, bytes.NewReader(w), len(w)); !errors.Is(err, errStreamClosed) {
		t.Errorf("push after the drop: %v, want errStreamClosed", err)
	}
}

// The ring's slots are the cache's state too: reservations, commits and
// sends from many goroutines leave every slot either free or holding a
// cached piece.
func TestStreamCacheRingConcurrent(t *testing.T) {
	sc := newTestCache(t, 2, 4)
	rg := sc.ring // the dfget's view: the ring stays mapped until the end
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				num := g*20 + i
				slot, err := sc.reserveSlot(num, time.Minute)
				if errors.Is(err, errRingFull) {
					continue // the dfget pushes the body then
				}
				if err != nil {
					t.Error(err)
					return
				}
				w := piece.Wrap(nil, bytes.Repeat([]byte{byte(num)}, 50), testPieceSize)
				writeSlot(t, rg, slot, w)
				if err := sc.commitSlot(num, slot, strconv.Itoa(len(w))); err != nil {
					t.Errorf("commit %d: %v", num, err)
				}
				sc.send(num, testPieceSize, "127.0.0.1", func(b []byte) { _, _ = piece.Unwrap(b) })
			}
		}()
	}
	wg.Wait()
	sc.mu.Lock()
	busy := 0
	for _, b := range sc.ring.busy {
		if b {
			busy++
		}
	}
	cached, pending, reserved := len(sc.pieces), len(sc.pending), sc.reserved
	sc.mu.Unlock()
	if busy != cached || pending != 0 || reserved != 0 || cached > 2 {
		t.Errorf("%d busy slots, %d cached, %d pending, %d reserved; want busy == cached <= 2 and none pending", busy, cached, pending, reserved)
	}
	sc.replaced()
	if _, err := sc.reserveSlot(100, time.Minute); !errors.Is(err, errNoRing) {
		t.Errorf("reservation on a replaced cache: %v", err)
	}
}

func waitOrFail(t *testing.T, wg *sync.WaitGroup, msg string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal(msg)
	}
}

// A request that took a stream cache before a new registration of its task
// file replaced it sends nothing from it: the replaced cache's ring is
// unmapped, and reading a piece from it would kill the peer server.
func TestStreamCacheReplacedSendsNothing(t *testing.T) {
	sc := newTestCache(t, 2, 2)
	slot, err := sc.reserveSlot(0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	w := piece.Wrap(nil, []byte("piece zero"), testPieceSize)
	writeSlot(t, sc.ring, slot, w)
	if err := sc.commitSlot(0, slot, strconv.Itoa(len(w))); err != nil {
		t.Fatal(err)
	}
	sc.replaced()
	// The write callback does not touch the bytes: without the check it
	// would be handed a slice of the unmapped ring.
	if sc.send(0, testPieceSize, "127.0.0.1", func([]byte) {}) == nil {
		t.Fatal("a replaced cache sent a piece from its unmapped ring")
	}
	sc.mu.Lock()
	n := len(sc.pieces)
	sc.mu.Unlock()
	if n != 0 {
		t.Fatalf("a replaced cache still lists %d pieces in its unmapped ring", n)
	}
}
