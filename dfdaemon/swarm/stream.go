package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	dfgetcfg "github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core"
	"github.com/damselfly-p2p/damselfly/pkg/httpidle"
	"github.com/damselfly-p2p/damselfly/pkg/nodes"
)

// copiedHeaders are the source's answer headers a streamed response
// repeats (from its HEAD).
var copiedHeaders = []string{"Content-Type", "Docker-Content-Digest", "Docker-Distribution-Api-Version", "Etag",
	"Last-Modified", "Cache-Control"}

// stream serves r by an in-process stream download. The client's headers
// go to the source (and to the supernode's CDN fetch) as dfget --header
// lines. A response that cannot be completed with verified bytes is
// aborted (the connection dropped before its last byte), never ended as
// if whole.
func (s *Swarm) stream(w http.ResponseWriter, r *http.Request, src Source, id Identity, head *http.Response) {
	cfg, err := s.config(r, src, id)
	if err != nil {
		// Options.Check found every error of the configuration at
		// startup; what is left is this request's (its URL, its
		// headers). The source serves it as it would without a swarm.
		s.log.Warnf("GET %s: no swarm download (%v); forwarding the GET", src.URL.Redacted(), err)
		s.Forward(w, r, src)
		return
	}
	release, ok := s.slot(w, r, src)
	if !ok {
		return
	}
	defer release()
	hdr := http.Header{}
	for _, k := range copiedHeaders {
		if v := head.Header.Values(k); len(v) > 0 {
			hdr[k] = v
		}
	}
	bw := newBlobWriter(httpidle.New(w, s.opt.WriteIdle), hdr, head.ContentLength, id.Digest)
	s.m.InFlight.Inc()
	defer s.m.InFlight.Dec()
	log := s.log.WithFields(logrus.Fields{"task": cfg.TaskFileName, "url": src.URL.Redacted()})
	log.Infof("stream start: length %d identity %q", head.ContentLength, cfg.Identifier)
	// A client that leaves stops the download, unless it had the whole
	// body: then the download ends normally (the supernode's finish,
	// the report) within its own timeouts.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	stop := context.AfterFunc(r.Context(), func() {
		if !bw.whole() {
			cancel()
		}
	})
	defer stop()
	// The writer checks the digest before the last byte leaves; dfget's
	// own whole-stream sha256 would hash every byte again.
	out := core.Execute(ctx, cfg, core.IO{Data: bw, Console: lineLog{log}, Log: s.log, DataChecksDigest: bw.h != nil})
	err = bw.finish(out.Code == 0 && out.Err == nil)
	s.m.Bytes.Add(float64(bw.sent()))
	switch {
	case err == nil:
		result := "p2p"
		if out.Reason != 0 && out.Code == 0 {
			result = "source"
		}
		s.m.result(result)
		log.Infof("stream done: %d bytes, %s, back-source reason %d", bw.sent(), result, out.Reason)
		return
	case ctx.Err() != nil || errors.Is(err, io.ErrClosedPipe):
		// A write that failed or timed out (a client that stopped
		// reading) is a client gone too.
		s.m.result("client_gone")
		log.Infof("stream stopped: client gone after %d bytes", bw.sent())
	case bw.mismatch():
		s.m.result("digest_mismatch")
		log.Errorf("stream aborted: %v", err)
	default:
		s.m.result("failed")
		log.Warnf("stream failed after %d bytes: %v (download: %v)", bw.sent(), err, out.Err)
	}
	if !bw.started() {
		http.Error(w, fmt.Sprintf("dfdaemon: download failed: %v", out.Err), http.StatusBadGateway)
		return
	}
	// The client must not take what it got for the whole answer: drop the
	// connection (net/http aborts it without logging).
	panic(http.ErrAbortHandler)
}

// taskURLHost names content-addressed tasks: a reserved name (never
// resolved; the CDN reads the registration's source URL), so the task URL
// of a blob is the same whichever registry, repository or signed URL
// served it, and the supernode makes it one task.
const taskURLHost = "blobs.dfdaemon.invalid"

// config is the dfget configuration of one stream download of src.
func (s *Swarm) config(r *http.Request, src Source, id Identity) (*dfgetcfg.Config, error) {
	cfg, err := s.opt.download(src, headerLines(s.sourceHeaders(r.Header)), id)
	if err != nil {
		return nil, err
	}
	// The sign is per process and millisecond: a dfdaemon starting two
	// downloads in one millisecond needs two.
	cfg.Sign += "-" + strconv.FormatUint(atomic.AddUint64(&s.seq, 1), 10)
	cfg.TaskFileName = "stream-" + cfg.Sign
	switch {
	case id.Digest != "" && !id.ByURL:
		cfg.TaskURL = "https://" + taskURLHost + "/" + strings.Replace(id.Digest, ":", "/", 1)
	case id.TaskURL != "":
		cfg.TaskURL = id.TaskURL
	}
	return cfg, nil
}

// download is the completed dfget configuration o gives a stream
// download of src with the source headers hdr.
func (o *Options) download(src Source, hdr []string, id Identity) (*dfgetcfg.Config, error) {
	cfg := dfgetcfg.New()
	cfg.URL, cfg.Stream, cfg.Dfdaemon, cfg.CallSystem = src.URL.String(), true, true, "dfdaemon"
	cfg.Nodes = append(nodes.List(nil), o.Nodes...)
	cfg.Home, cfg.IP, cfg.Verbose = o.Home, o.IP, o.Verbose
	cfg.LocalLimit, cfg.TotalLimit = o.RateLimit, o.RateLimit
	cfg.CACerts, cfg.Insecure = src.CACerts, src.Insecure
	cfg.ServerExecutable = o.ServerExecutable
	cfg.Headers = hdr
	if id.Digest != "" {
		cfg.Identifier, cfg.Digest = id.Digest, id.Digest
	}
	if err := cfg.CompleteWith(o.Properties); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Check builds the dfget configuration o gives every download, for a
// probe blob with no headers. An error there is o's (the IP, dfget's
// properties, the work home), not a request's: it would fail every
// download, so the caller makes it a startup error.
func (o Options) Check() error {
	probe := &url.URL{Scheme: "https", Host: taskURLHost, Path: "/check"}
	id := Identity{Digest: "sha256:" + strings.Repeat("0", 64)}
	if _, err := o.download(Source{URL: probe}, nil, id); err != nil {
		return fmt.Errorf("download configuration: %w", err)
	}
	return nil
}

// headerLines are h as dfget --header lines, a repeated header's values
// joined by commas.
func headerLines(h http.Header) []string {
	out := make([]string, 0, len(h))
	for k, vs := range h {
		if v := strings.Join(vs, ", "); v != "" {
			out = append(out, k+": "+v)
		}
	}
	return out
}

// lineLog logs dfget's console lines (one per write) at debug level.
type lineLog struct{ l *logrus.Entry }

func (l lineLog) Write(p []byte) (int, error) {
	l.l.Debug(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
