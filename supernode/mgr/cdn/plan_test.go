package cdn

import (
	"maps"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// plan asks the source what the cache needs: nothing special without a
// usable meta, a conditional request for a complete file it can validate,
// a Range after the valid pieces of a partial one.
func TestPlan(t *testing.T) {
	const ps = 1 << 20 // the header keeps the size above its 24 length bits
	cs := int(piece.ContentSize(ps))
	mod := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	complete := store.Meta{TaskID: "t", URL: "http://o/f", PieceSize: ps, HTTPFileLen: 3 * int64(cs), Md5: "ABC",
		Finish: true, Success: true, ETag: `"e1"`, LastModified: mod.UnixMilli()}
	partial := complete
	partial.Finish, partial.Success = false, false
	src := Source{TaskID: "t", TaskURL: "http://o/f", Md5: "abc"}
	ranged := src
	ranged.Headers = map[string]string{"Range": "bytes=0-9"}
	rangeAfter2 := "bytes=" + strconv.Itoa(2*cs) + "-" + strconv.Itoa(3*cs-1)

	for name, tc := range map[string]struct {
		meta    *store.Meta // nil: no meta on disk
		edit    func(*store.Meta)
		src     Source
		headers map[string]string
		resume  int // pieces kept, -1 for no resume
		// noJournal leaves the pieces without the journal of their fetch.
		noJournal bool
	}{
		"no meta":             {src: src, headers: map[string]string{}, resume: -1},
		"other url":           {meta: &complete, edit: func(m *store.Meta) { m.URL = "http://o/g" }, src: src, headers: map[string]string{}, resume: -1},
		"other md5":           {meta: &complete, edit: func(m *store.Meta) { m.Md5 = "abd" }, src: src, headers: map[string]string{}, resume: -1},
		"complete":            {meta: &complete, src: src, resume: -1, headers: map[string]string{"If-None-Match": `"e1"`, "If-Modified-Since": mod.Format(http.TimeFormat)}},
		"complete, no etag":   {meta: &complete, edit: func(m *store.Meta) { m.ETag = "" }, src: src, resume: -1, headers: map[string]string{"If-Modified-Since": mod.Format(http.TimeFormat)}},
		"complete, no checks": {meta: &complete, edit: func(m *store.Meta) { m.ETag, m.LastModified = "", 0 }, src: src, headers: map[string]string{}, resume: -1},
		"partial":             {meta: &partial, src: src, resume: 2, headers: map[string]string{"Range": rangeAfter2, "If-Range": `"e1"`}},
		"partial, date only":  {meta: &partial, edit: func(m *store.Meta) { m.ETag = "" }, src: src, resume: 2, headers: map[string]string{"Range": rangeAfter2, "If-Range": mod.Format(http.TimeFormat)}},
		"partial, no journal": {meta: &partial, src: src, headers: map[string]string{}, resume: -1, noJournal: true},
		"partial, user range": {meta: &partial, src: ranged, headers: map[string]string{}, resume: -1},
		"partial, no checks":  {meta: &partial, edit: func(m *store.Meta) { m.ETag, m.LastModified = "", 0 }, src: src, headers: map[string]string{}, resume: -1},
	} {
		t.Run(name, func(t *testing.T) {
			m, st := newManager(t, nil, 0)
			if tc.meta != nil {
				meta := *tc.meta
				if tc.edit != nil {
					tc.edit(&meta)
				}
				if err := st.WriteMeta(&meta); err != nil {
					t.Fatal(err)
				}
				recs := writePieces(t, st, "t", ps, cs, 2) // two whole pieces of three
				if !tc.noJournal {
					j, err := st.CreateJournal("t", journalKey(&meta), recs)
					if err != nil {
						t.Fatal(err)
					}
					j.Close()
				}
			}
			p := m.plan(tc.src)
			if !maps.Equal(p.headers, tc.headers) {
				t.Errorf("headers %v, want %v", p.headers, tc.headers)
			}
			switch {
			case tc.resume < 0 && p.resume != nil:
				t.Errorf("resumes after %d pieces, want no resume", p.resume.count)
			case tc.resume >= 0 && (p.resume == nil || p.resume.count != tc.resume):
				t.Errorf("resume %+v, want after %d pieces", p.resume, tc.resume)
			}
			if p.conditional() != (tc.headers["If-None-Match"] != "" || tc.headers["If-Modified-Since"] != "") {
				t.Errorf("conditional() = %v with headers %v", p.conditional(), p.headers)
			}
		})
	}
}

// writePieces writes count whole wrapped pieces of cs content bytes and
// returns their journal records.
func writePieces(t *testing.T, st *store.Store, id string, ps int32, cs, count int) []store.PieceRecord {
	t.Helper()
	f, err := st.OpenData(id, true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []store.PieceRecord
	for i := range count {
		content := make([]byte, cs)
		for j := range content {
			content[j] = byte(i + j)
		}
		w := piece.Wrap(nil, content, ps)
		if _, err := f.Write(w); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, store.PieceRecord{Num: i, Len: len(w), Blake3: digest.Sum(digest.BLAKE3, w)})
	}
	return recs
}

// A resumed fetch keeps its piece size and validators only when the
// source answers the Range from the byte asked for, with the same total;
// otherwise it starts over with the size of the new length.
func TestPlanSettle(t *testing.T) {
	meta := &store.Meta{PieceSize: 64, HTTPFileLen: 1000, ETag: `"old"`, LastModified: 7}
	for name, tc := range map[string]struct {
		status    int
		cr        string
		length    int64
		wantLen   int64
		wantSize  int32
		keepsETag bool
	}{
		// The resume asks from byte 59: one piece of 64 - 5 content bytes.
		"range answered":  {http.StatusPartialContent, "bytes 59-999/1000", 941, 1000, 64, true},
		"whole file":      {http.StatusOK, "", 1000, 1000, piece.DefaultSize, false},
		"other total":     {http.StatusPartialContent, "bytes 59-1099/1100", 1041, 1041, piece.DefaultSize, false},
		"unknown, whole":  {http.StatusOK, "", -1, -1, piece.DefaultSize, false},
		"no total in 206": {http.StatusPartialContent, "bytes 59-999/*", 941, 941, piece.DefaultSize, false},
		"other start":     {http.StatusPartialContent, "bytes 500-999/1000", 500, 500, piece.DefaultSize, false},
	} {
		t.Run(name, func(t *testing.T) {
			p := &plan{meta: meta, resume: &prefix{count: 1}}
			resp := &http.Response{StatusCode: tc.status, ContentLength: tc.length, Header: http.Header{"Etag": {`"new"`}}}
			if tc.cr != "" {
				resp.Header.Set("Content-Range", tc.cr)
			}
			length, size := p.settle(resp)
			if length != tc.wantLen || size != tc.wantSize || (p.resume != nil) != tc.keepsETag {
				t.Fatalf("settle = %d, %d, resume %v; want %d, %d, resume %v", length, size, p.resume != nil, tc.wantLen, tc.wantSize, tc.keepsETag)
			}
			next := p.nextMeta(Source{TaskID: "t"}, resp, length, size)
			if (next.ETag == `"old"`) != tc.keepsETag {
				t.Errorf("next meta ETag %q (resumed %v)", next.ETag, tc.keepsETag)
			}
		})
	}
}
