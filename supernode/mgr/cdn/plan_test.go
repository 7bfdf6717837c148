package cdn

import (
	"errors"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// plan asks the source what the cache needs: nothing special without a
// usable meta, a conditional request for a complete file it can validate,
// a Range after the valid pieces of a partial one. Only strong validators
// are sent: a 304 or a 206 to a weak one could be of another version.
func TestPlan(t *testing.T) {
	const ps = 1 << 20 // the header keeps the size above its 24 length bits
	cs := int(piece.ContentSize(ps))
	mod := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	complete := store.Meta{TaskID: "t", URL: "http://o/f", PieceSize: ps, HTTPFileLen: 3 * int64(cs), Md5: "ABC",
		Finish: true, Success: true, ETag: `"e1"`, LastModified: mod.UnixMilli(), LastModifiedStrong: true}
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
		"no meta":                      {src: src, headers: map[string]string{}, resume: -1},
		"other url":                    {meta: &complete, edit: func(m *store.Meta) { m.URL = "http://o/g" }, src: src, headers: map[string]string{}, resume: -1},
		"other md5":                    {meta: &complete, edit: func(m *store.Meta) { m.Md5 = "abd" }, src: src, headers: map[string]string{}, resume: -1},
		"complete":                     {meta: &complete, src: src, resume: -1, headers: map[string]string{"If-None-Match": `"e1"`, "If-Modified-Since": mod.Format(http.TimeFormat)}},
		"complete, no etag":            {meta: &complete, edit: func(m *store.Meta) { m.ETag = "" }, src: src, resume: -1, headers: map[string]string{"If-Modified-Since": mod.Format(http.TimeFormat)}},
		"complete, no checks":          {meta: &complete, edit: func(m *store.Meta) { m.ETag, m.LastModified = "", 0 }, src: src, headers: map[string]string{}, resume: -1},
		"complete, weak date":          {meta: &complete, edit: func(m *store.Meta) { m.LastModifiedStrong = false }, src: src, resume: -1, headers: map[string]string{"If-None-Match": `"e1"`}},
		"complete, weak etag":          {meta: &complete, edit: func(m *store.Meta) { m.ETag = `W/"e1"` }, src: src, resume: -1, headers: map[string]string{"If-Modified-Since": mod.Format(http.TimeFormat)}},
		"complete, weak only":          {meta: &complete, edit: func(m *store.Meta) { m.ETag, m.LastModifiedStrong = `W/"e1"`, false }, src: src, headers: map[string]string{}, resume: -1},
		"complete, weak date, no etag": {meta: &complete, edit: func(m *store.Meta) { m.ETag, m.LastModifiedStrong = "", false }, src: src, headers: map[string]string{}, resume: -1},
		"partial":                      {meta: &partial, src: src, resume: 2, headers: map[string]string{"Range": rangeAfter2, "If-Range": `"e1"`}},
		"partial, date only":           {meta: &partial, edit: func(m *store.Meta) { m.ETag = "" }, src: src, resume: 2, headers: map[string]string{"Range": rangeAfter2, "If-Range": mod.Format(http.TimeFormat)}},
		// RFC 9110 forbids a weak ETag in If-Range: the date, or no resume.
		"partial, weak etag":      {meta: &partial, edit: func(m *store.Meta) { m.ETag = `W/"e1"` }, src: src, resume: 2, headers: map[string]string{"Range": rangeAfter2, "If-Range": mod.Format(http.TimeFormat)}},
		"partial, weak etag only": {meta: &partial, edit: func(m *store.Meta) { m.ETag, m.LastModified = `W/"e1"`, 0 }, src: src, headers: map[string]string{}, resume: -1},
		"partial, no journal":     {meta: &partial, src: src, headers: map[string]string{}, resume: -1, noJournal: true},
		"partial, user range":     {meta: &partial, src: ranged, headers: map[string]string{}, resume: -1},
		"partial, no checks":      {meta: &partial, edit: func(m *store.Meta) { m.ETag, m.LastModified = "", 0 }, src: src, headers: map[string]string{}, resume: -1},
		"partial, weak date":      {meta: &partial, edit: func(m *store.Meta) { m.LastModifiedStrong = false }, src: src, resume: 2, headers: map[string]string{"Range": rangeAfter2, "If-Range": `"e1"`}},
		"partial, weak date only": {meta: &partial, edit: func(m *store.Meta) { m.ETag, m.LastModifiedStrong = "", false }, src: src, headers: map[string]string{}, resume: -1},
		"partial, weak only":      {meta: &partial, edit: func(m *store.Meta) { m.ETag, m.LastModifiedStrong = `W/"e1"`, false }, src: src, headers: map[string]string{}, resume: -1},
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
			p := m.plan(tc.src, nil)
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
// source answers the Range with exactly the bytes asked for, of the same
// total and version; a 200 starts over with the size of the new length,
// and any other 206 drops the resume and asks for the file again (a part
// taken from byte 0, or a part of another version after the cached
// pieces, would be stored as the file). Without a resume, a 206 answers
// the task's own Range or nothing.
func TestPlanSettle(t *testing.T) {
	meta := &store.Meta{PieceSize: 64, HTTPFileLen: 1000, ETag: `"old"`, LastModified: 7000}
	oldMod := httpTime(7000)
	const again = -2 // wantLen: the resume is dropped, the file asked for again
	for name, tc := range map[string]struct {
		status    int
		cr        string
		length    int64
		header    http.Header // the answer's ETag and Last-Modified
		userRange string      // the task's own Range: no resume
		wantLen   int64       // again, or -3 for a source error
		wantSize  int32
		keepsETag bool
	}{
		// The resume asks from byte 59: one piece of 64 - 5 content bytes.
		"range answered":            {status: 206, cr: "bytes 59-999/1000", length: 941, header: http.Header{"Etag": {`"old"`}}, wantLen: 1000, wantSize: 64, keepsETag: true},
		"range answered, same date": {status: 206, cr: "bytes 59-999/1000", length: 941, header: http.Header{"Last-Modified": {oldMod}}, wantLen: 1000, wantSize: 64, keepsETag: true},
		"range answered, unsized":   {status: 206, cr: "bytes 59-999/1000", length: -1, wantLen: 1000, wantSize: 64, keepsETag: true},
		"whole file":                {status: 200, length: 1000, header: http.Header{"Etag": {`"new"`}}, wantLen: 1000, wantSize: piece.DefaultSize},
		"unknown, whole":            {status: 200, length: -1, header: http.Header{"Etag": {`"new"`}}, wantLen: -1, wantSize: piece.DefaultSize},
		// A source that ignores If-Range answers from the new version.
		"other total":           {status: 206, cr: "bytes 59-1099/1100", length: 1041, wantLen: again},
		"shorter total":         {status: 206, cr: "bytes 59-899/900", length: 841, wantLen: again},
		"no total in 206":       {status: 206, cr: "bytes 59-999/*", length: 941, wantLen: again},
		"other start":           {status: 206, cr: "bytes 500-999/1000", length: 500, wantLen: again},
		"other end":             {status: 206, cr: "bytes 59-500/1000", length: 442, wantLen: again},
		"length not the part":   {status: 206, cr: "bytes 59-999/1000", length: 100, wantLen: again},
		"no Content-Range":      {status: 206, length: 941, wantLen: again},
		"other ETag":            {status: 206, cr: "bytes 59-999/1000", length: 941, header: http.Header{"Etag": {`"new"`}}, wantLen: again},
		"weak form of the ETag": {status: 206, cr: "bytes 59-999/1000", length: 941, header: http.Header{"Etag": {`W/"old"`}}, wantLen: again},
		"other date":            {status: 206, cr: "bytes 59-999/1000", length: 941, header: http.Header{"Last-Modified": {httpTime(9000)}}, wantLen: again},
		// Without a resume.
		"206 without Range": {status: 206, cr: "bytes 0-99/1000", length: 100, userRange: "-", wantLen: -3},
		"user range":        {status: 206, cr: "bytes 10-19/1000", length: 10, userRange: "bytes=10-19", wantLen: 10, wantSize: piece.DefaultSize},
		"user range, other": {status: 206, cr: "bytes 0-9/1000", length: 10, userRange: "bytes=10-19", wantLen: -3},
		// The span tells the length a chunked 206 does not.
		"user range, unsized": {status: 206, cr: "bytes 10-19/1000", length: -1, userRange: "bytes=10-19", wantLen: 10, wantSize: piece.DefaultSize},
		// A 200 is the whole file: the task is its range.
		"user range, 200":              {status: 200, length: 1000, userRange: "bytes=10-19", wantLen: 10, wantSize: piece.DefaultSize},
		"user range, 200 open":         {status: 200, length: 1000, userRange: "bytes=10-", wantLen: 990, wantSize: piece.DefaultSize},
		"user range, 200 suffix":       {status: 200, length: 1000, userRange: "bytes=-10", wantLen: 10, wantSize: piece.DefaultSize},
		"user range, 200 past the end": {status: 200, length: 1000, userRange: "bytes=990-1999", wantLen: 10, wantSize: piece.DefaultSize},
		"user range, unsized 200":      {status: 200, length: -1, userRange: "bytes=10-19", wantLen: 10, wantSize: piece.DefaultSize},
		"user range, unsized 200 open": {status: 200, length: -1, userRange: "bytes=10-", wantLen: -1, wantSize: piece.DefaultSize},
		"user suffix, unsized 200":     {status: 200, length: -1, userRange: "bytes=-10", wantLen: -3},
		"user range, 200 too short":    {status: 200, length: 1000, userRange: "bytes=1000-", wantLen: -3},
	} {
		t.Run(name, func(t *testing.T) {
			p := &plan{meta: meta, resume: &prefix{count: 1}, headers: map[string]string{"Range": "bytes=59-999", "If-Range": `"old"`}}
			if tc.userRange != "" {
				p = &plan{headers: map[string]string{}, userRange: strings.TrimPrefix(tc.userRange, "-")}
			}
			resp := &http.Response{StatusCode: tc.status, ContentLength: tc.length, Header: http.Header{}}
			maps.Copy(resp.Header, tc.header)
			if tc.cr != "" {
				resp.Header.Set("Content-Range", tc.cr)
			}
			length, size, err := p.settle(resp)
			switch {
			case tc.wantLen == again:
				if !errors.Is(err, errResumeDropped) || p.resume != nil {
					t.Fatalf("settle = %d, %d, %v, resume %v; want the resume dropped", length, size, err, p.resume != nil)
				}
				return
			case tc.wantLen == -3:
				if err == nil || errors.Is(err, errResumeDropped) {
					t.Fatalf("settle = %d, %d, %v; want an error", length, size, err)
				}
				return
			}
			if err != nil || length != tc.wantLen || size != tc.wantSize || (p.resume != nil) != tc.keepsETag {
				t.Fatalf("settle = %d, %d, %v, resume %v; want %d, %d, resume %v", length, size, err, p.resume != nil,
					tc.wantLen, tc.wantSize, tc.keepsETag)
			}
			next := p.nextMeta(Source{TaskID: "t"}, resp, length, size)
			if tc.keepsETag && (next.ETag != `"old"` || next.LastModified != 7000) {
				t.Errorf("next meta of the resume: ETag %q, Last-Modified %d; want the cache's", next.ETag, next.LastModified)
			}
			if !tc.keepsETag && next.ETag != resp.Header.Get("ETag") {
				t.Errorf("next meta ETag %q, want the answer's %q", next.ETag, resp.Header.Get("ETag"))
			}
		})
	}
}
