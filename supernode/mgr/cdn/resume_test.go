package cdn

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// interrupted fills task id from an origin that stops after keep whole
// pieces of data, then stops the manager as a supernode stop does: the
// cache is left partial, with its journal, for a restarted manager.
func interrupted(t *testing.T, id string, data []byte, keep int) (*store.Store, *originT, Source) {
	t.Helper()
	cs := int(piece.ContentSize(piece.DefaultSize))
	o := newOriginT(t, data)
	o.stallAt = keep * cs
	p := NewMockProgress(gomock.NewController(t))
	p.EXPECT().ResetCDN(id)
	p.EXPECT().SetCDNPiece(id, gomock.Any()).Times(keep)
	p.EXPECT().FinishCDN(id, 0, false)
	m, st := newManager(t, p, 0)
	src := Source{TaskID: id, RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Md5: piece.Md5Hex(data)}
	if res := interruptAfter(t, m, src, keep-1); res.OK {
		t.Fatalf("interrupted fill succeeded: %+v", res)
	}
	return st, o, src
}

// interruptAfter starts src's fill on m and, once piece num is written,
// closes m as a supernode stop does: the cache is left partial, with its
// journal. It returns the fill's result.
func interruptAfter(t *testing.T, m *Manager, src Source, num int) Result {
	t.Helper()
	done := make(chan Result, 1)
	if _, err := m.Start(src, func(r Result) { done <- r }); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); m.PieceDigest(src.TaskID, num).IsZero(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("piece %d never written", num)
		}
	}
	m.Close()
	return <-done
}

// editJournal rewrites the journal of id with edit applied to its lines
// (the header first, then one record per line, sorted by piece number).
func editJournal(t *testing.T, st *store.Store, id string, edit func(lines []string) []string) {
	t.Helper()
	path := st.DataPath(id) + ".journal"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	recs := lines[1:]
	// Two writers may record pieces out of order.
	byNum := func(l string) int { n, _ := strconv.Atoi(strings.Fields(l)[0]); return n }
	for i := range recs {
		for j := i + 1; j < len(recs); j++ {
			if byNum(recs[j]) < byNum(recs[i]) {
				recs[i], recs[j] = recs[j], recs[i]
			}
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(edit(lines), "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func withNewlines(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l + "\n"
	}
	return out
}

// A resume keeps a piece only when the journal of the interrupted fetch
// records it and its bytes on disk hash to the recorded digest: a piece
// whose header and tail survived but whose middle did not, a torn or
// garbled record, a journal of another fetch or none at all all mean the
// fetch resumes earlier (or starts over), and the file is right.
func TestResumeTrustsOnlyTheJournal(t *testing.T) {
	ps := int64(piece.DefaultSize)
	cs := int(piece.ContentSize(piece.DefaultSize))
	data := make([]byte, 3*cs+cs/2)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	for name, tc := range map[string]struct {
		damage func(t *testing.T, st *store.Store, id string)
		resume int // first piece fetched again
	}{
		"intact": {resume: 3},
		"middle of piece 1 lost": {resume: 1, damage: func(t *testing.T, st *store.Store, id string) {
			f, err := os.OpenFile(st.DataPath(id), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, 4096), ps+ps/2); err != nil {
				t.Fatal(err)
			}
		}},
		"journal torn in piece 1's record": {resume: 1, damage: func(t *testing.T, st *store.Store, id string) {
			editJournal(t, st, id, func(l []string) []string {
				return append(withNewlines(l[:2]), l[2][:len(l[2])/2])
			})
		}},
		"piece 1's record garbled": {resume: 1, damage: func(t *testing.T, st *store.Store, id string) {
			editJournal(t, st, id, func(l []string) []string {
				l[2] = l[2][:len(l[2])-1] + map[bool]string{true: "1", false: "0"}[strings.HasSuffix(l[2], "0")]
				return withNewlines(l)
			})
		}},
		"piece 1 not recorded": {resume: 1, damage: func(t *testing.T, st *store.Store, id string) {
			editJournal(t, st, id, func(l []string) []string { return withNewlines(append(l[:2], l[3])) })
		}},
		"journal of another fetch": {resume: 0, damage: func(t *testing.T, st *store.Store, id string) {
			editJournal(t, st, id, func(l []string) []string {
				// Another last hex digit: always a different key.
				other := "0"
				if strings.HasSuffix(l[0], "0") {
					other = "1"
				}
				l[0] = l[0][:len(l[0])-1] + other
				return withNewlines(l)
			})
		}},
		"no journal": {resume: 0, damage: func(t *testing.T, st *store.Store, id string) {
			if err := os.Remove(st.DataPath(id) + ".journal"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(name, func(t *testing.T) {
			st, o, src := interrupted(t, "r1", data, 3)
			if tc.damage != nil {
				tc.damage(t, st, "r1")
			}
			p := NewMockProgress(gomock.NewController(t))
			m := restarted(t, st, p)
			expectRun(p, "r1", 4)
			_, res := start(t, m, src)
			if !res.OK || res.RealMd5 != piece.Md5Hex(data) {
				t.Fatalf("after the resume: %+v", res)
			}
			var got []byte
			for i, w := range wrappedPieces(t, st, "r1") {
				c, err := piece.Unwrap(w)
				if err != nil {
					t.Fatalf("piece %d: %v", i, err)
				}
				got = append(got, c...)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("the cache file differs from the source")
			}
			want := "bytes=" + strconv.Itoa(tc.resume*cs) + "-" + strconv.Itoa(len(data)-1)
			if tc.resume == 0 {
				want = ""
			}
			if ranges, _ := o.seen(t, 2); len(ranges) != 2 || ranges[1] != want {
				t.Fatalf("requests %q, want the second with Range %q", ranges, want)
			}
			if _, err := os.Stat(st.DataPath("r1") + ".journal"); !os.IsNotExist(err) {
				t.Fatalf("journal left after the fill completed: %v", err)
			}
		})
	}
}
