package swarm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// writeAll feeds body to w in chunks of n bytes and returns the first
// error.
func writeAll(w io.Writer, body []byte, n int) error {
	for len(body) > 0 {
		c := min(n, len(body))
		if _, err := w.Write(body[:c]); err != nil {
			return err
		}
		body = body[c:]
	}
	return nil
}

func TestBlobWriterSendsAllOnlyWhenDigestMatches(t *testing.T) {
	body := bytes.Repeat([]byte("layer-bytes-"), 1000)
	rec := httptest.NewRecorder()
	w := newBlobWriter(rec, http.Header{"Docker-Content-Digest": {sum(body)}}, int64(len(body)), sum(body))
	if err := writeAll(w, body[:len(body)-10], 333); err != nil {
		t.Fatal(err)
	}
	if got := rec.Body.Len(); got != len(body)-11 {
		t.Fatalf("%d bytes out before the end, want all but the held last one (%d)", got, len(body)-11)
	}
	if rec.Header().Get("Content-Length") != "12000" || rec.Header().Get("Docker-Content-Digest") != sum(body) {
		t.Fatalf("headers: %v", rec.Header())
	}
	if err := writeAll(w, body[len(body)-10:], 3); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Body.Bytes(), body) {
		t.Fatalf("body: %d bytes, differs", rec.Body.Len())
	}
	if err := w.finish(true); err != nil {
		t.Fatalf("finish: %v", err)
	}
}

func TestBlobWriterHoldsLastByteOnMismatch(t *testing.T) {
	good := bytes.Repeat([]byte{7}, 4096)
	bad := bytes.Clone(good)
	bad[100] = 8
	rec := httptest.NewRecorder()
	w := newBlobWriter(rec, nil, int64(len(bad)), sum(good))
	err := writeAll(w, bad, 1000)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("write of wrong bytes: %v, want a digest mismatch", err)
	}
	if rec.Body.Len() != len(bad)-1 {
		t.Fatalf("%d bytes reached the client, want %d (never the last)", rec.Body.Len(), len(bad)-1)
	}
	if err := w.finish(true); !errors.Is(err, ErrDigestMismatch) || !w.mismatch() {
		t.Fatalf("finish after a mismatch: %v", err)
	}
	if _, err := w.Write([]byte{1}); err == nil {
		t.Fatal("a write after the mismatch was taken")
	}
}

func TestBlobWriterUnknownLengthChecksAtFinish(t *testing.T) {
	body := []byte("a blob of unknown length")
	for _, tc := range []struct {
		digest string
		ok     bool
	}{{sum(body), true}, {sum([]byte("other")), false}} {
		rec := httptest.NewRecorder()
		w := newBlobWriter(rec, nil, -1, tc.digest)
		if err := writeAll(w, body, 5); err != nil {
			t.Fatal(err)
		}
		if rec.Body.Len() != len(body)-1 {
			t.Fatalf("%d bytes out before finish, want %d", rec.Body.Len(), len(body)-1)
		}
		err := w.finish(true)
		if (err == nil) != tc.ok || (tc.ok && !bytes.Equal(rec.Body.Bytes(), body)) {
			t.Fatalf("digest %s: finish %v, body %q", tc.digest[:15], err, rec.Body.Bytes())
		}
	}
}

func TestBlobWriterRefusesMoreThanAnnounced(t *testing.T) {
	rec := httptest.NewRecorder()
	w := newBlobWriter(rec, nil, 4, "")
	if _, err := w.Write([]byte("12345")); err == nil {
		t.Fatal("5 bytes taken for a 4-byte body")
	}
	if err := w.finish(true); err == nil {
		t.Fatal("finish after too many bytes succeeded")
	}
}

func TestBlobWriterShortDownloadFails(t *testing.T) {
	rec := httptest.NewRecorder()
	w := newBlobWriter(rec, nil, 10, "")
	if _, err := w.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	if err := w.finish(true); err == nil {
		t.Fatal("5 of 10 bytes reported whole")
	}
	if err := w.finish(false); err == nil {
		t.Fatal("a failed download reported whole")
	}
}

// failWriter is a client whose connection is gone.
type failWriter struct{ *httptest.ResponseRecorder }

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

func TestBlobWriterClientGoneIsClosedPipe(t *testing.T) {
	w := newBlobWriter(failWriter{httptest.NewRecorder()}, nil, 10, "")
	if _, err := w.Write([]byte("12345")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("write to a gone client: %v, want io.ErrClosedPipe (dfget's reader-left)", err)
	}
}

func TestBlobDigest(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for path, want := range map[string]string{
		"/v2/library/alpine/blobs/" + d:     d,
		"/v2/a/b/c/blobs/" + d:              d,
		"/prefix/v2/team/app/blobs/" + d:    d,
		"/v2/x/blobs/sha512:" + d[7:]:       "",
		"/v2/x/manifests/" + d:              "",
		"/v2/x/blobs/" + d + "/extra":       "",
		"/v2/x/blobs/sha256:" + d[7:60]:     "",
		"/files/blobs/" + d:                 "",
		"/v2/x/blobs/SHA256:" + d[7:]:       "",
		"/v2/x/blobs/uploads/" + d:          "",
		"/v2/x/blobs/" + strings.ToUpper(d): "",
	} {
		if got := BlobDigest(path); got != want {
			t.Errorf("BlobDigest(%q) = %q, want %q", path, got, want)
		}
	}
}
