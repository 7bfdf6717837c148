package server

//go:generate go tool mockgen -source=pieceserver.go -destination=mock_servable_test.go -package=server

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// Servable is the CDN's view of which bytes of a cache file may be sent.
type Servable interface {
	Servable(taskID string, start, end int64) (int64, int)
}

// piecePath accepts only /download/<id[0:3]>/<id> with a plain ID: no
// dots (so no sidecars, no traversal), no slashes beyond the two.
var piecePath = regexp.MustCompile(`^/download/([0-9A-Za-z_-]{3})/([0-9A-Za-z_-]{3,200})$`)

// PieceServer serves CDN files on the download port with Range support.
type PieceServer struct {
	repo  string
	cdn   Servable
	bytes prometheus.Counter
}

// NewPieceServer serves <repo>/download.
func NewPieceServer(repo string, c Servable, bytes prometheus.Counter) *PieceServer {
	return &PieceServer{repo: repo, cdn: c, bytes: bytes}
}

func (p *PieceServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	m := piecePath.FindStringSubmatch(r.URL.Path)
	if m == nil || !strings.HasPrefix(m[2], m[1]) {
		http.NotFound(w, r)
		return
	}
	id := m[2]
	start, end, single := singleRange(r.Header.Get("Range"))
	if !single {
		start, end = 0, -1
	}
	size, state := p.cdn.Servable(id, start, end)
	switch state {
	case cdn.ServeNotFound:
		http.NotFound(w, r)
		return
	case cdn.ServeNotReady:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "piece not written yet", http.StatusServiceUnavailable)
		return
	}
	f, err := openNoFollow(filepath.Join(p.repo, store.DownloadDir, m[1], id))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < size {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	cw := &countWriter{ResponseWriter: w}
	if single {
		// The common case, one piece: answered here so the body goes out
		// with sendfile (ServeContent over a SectionReader copies through
		// user space).
		servePiece(cw, r, f, start, end, size)
	} else {
		http.ServeContent(cw, r, "", time.Time{}, io.NewSectionReader(f, 0, size))
	}
	if p.bytes != nil {
		p.bytes.Add(float64(cw.n))
	}
}

// servePiece answers "Range: bytes=start-end" from the first size bytes of f.
func servePiece(w http.ResponseWriter, r *http.Request, f *os.File, start, end, size int64) {
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	if start >= size {
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
		return
	}
	end = min(end, size-1)
	n := end - start + 1
	h.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(end, 10)+"/"+strconv.FormatInt(size, 10))
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusPartialContent)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return
	}
	_, _ = io.CopyN(w, f, n) // a failed copy means the client went away
}

// openNoFollow opens a file refusing a symlink as the last component, and
// refuses a bucket directory that is a symlink.
func openNoFollow(path string) (*os.File, error) {
	dir, err := os.Lstat(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	if !dir.IsDir() {
		return nil, errors.New("bucket is not a directory")
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// singleRange is the range of a Range header naming both bounds
// ("bytes=s-e", as urlutil.ParseByteRange reads it); anything else is not a
// single explicit range and is left to http.ServeContent.
func singleRange(h string) (int64, int64, bool) {
	br, err := urlutil.ParseByteRange(h)
	if err != nil || br.Suffix > 0 || br.Last < 0 {
		return 0, 0, false
	}
	return br.First, br.Last, true
}

type countWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// ReadFrom keeps sendfile for the file copy while counting.
func (c *countWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.n += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	c.n += n
	return n, err
}
