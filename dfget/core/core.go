// Package core runs one dfget download: prepare (paths, local IP, peer
// server), register with a supernode, download (P2P into a file or a
// stream), and fall back to the source when P2P is impossible or fails.
// It prints the Dragonfly 1.x console lines and returns the exit status.
package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/dfget/core/downloader"
	"github.com/damselfly-p2p/damselfly/dfget/core/progressbar"
	"github.com/damselfly-p2p/damselfly/dfget/core/regist"
	"github.com/damselfly-p2p/damselfly/dfget/core/uploader"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/fsname"
	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
	"github.com/damselfly-p2p/damselfly/pkg/version"
)

// IO is where a download writes: Data receives the stream, Console the
// v1 status lines, Bar the progress bar (nil: none), Log the log (nil:
// <home>/logs/dfclient.log, opened for this download; a long-running
// caller running many downloads at once passes the one it shares).
type IO struct {
	Data    io.Writer
	Console io.Writer
	Bar     io.Writer
	Log     *logrus.Logger
	// DataChecksDigest says Data checks the stream against cfg.Digest
	// itself (and fails the write of a wrong last byte): a stream then
	// does not hash every byte a second time.
	DataChecksDigest bool
}

// Outcome is how a download ended, for a caller that runs downloads as a
// library: Code is the exit status Run returns, Reason the back-source
// reason (0: P2P delivered every byte), Length the bytes delivered, Err
// the failure (nil on success).
type Outcome struct {
	Code   int
	Reason int
	Length int64
	Err    error
}

// Download is the state of one dfget run.
type Download struct {
	cfg    *config.Config
	io     IO
	log    *logrus.Logger
	client *api.Client

	localIP   string
	cid       string
	peerPort  int
	reg       *regist.Result
	limiter   *xrate.Limiter
	bar       *progressbar.Bar
	headers   map[string]string
	length    int64
	fromPeers int
	// digest is the whole file's expected sha256 (--digest), zero if none.
	digest digest.Digest
	// sw is the stream a fallback to the source continues, after the
	// streamed bytes P2P wrote to it.
	sw       *downloader.StreamWriter
	streamed int64
	// streamLength is the length of the file P2P streamed from (-1:
	// unknown), which the source must have to go on after its bytes.
	streamLength int64
	nodes        []nodes.Node
	tried        map[string]bool
	regReq       regist.Request
	// reregs counts registrations made again after a supernode forgot
	// this client (bounded by maxReregister).
	reregs int
}

// Run performs the download described by cfg (already Completed) and
// returns the process exit status.
func Run(ctx context.Context, cfg *config.Config, out IO) int {
	return Execute(ctx, cfg, out).Code
}

// Execute is Run, telling how the download ended.
func Execute(ctx context.Context, cfg *config.Config, out IO) Outcome {
	d := &Download{cfg: cfg, io: out, client: api.New(), length: -1}
	defer d.client.HTTP.CloseIdleConnections()
	d.client.SetLocalOwner(os.Getpid(), checkEvery(cfg.AliveTime))
	var err error
	// Checked here too, for callers that use core as a library: a digest
	// that does not parse is never taken for "no check".
	if d.digest, err = cfg.ExpectedDigest(); err != nil {
		fmt.Fprintf(out.Console, "dfget: %v\n", err)
		return Outcome{Code: config.ExitUsage, Err: err}
	}
	if err := d.client.SecureNodes(cfg.NodeToken, cfg.NodeCACerts); err != nil {
		fmt.Fprintf(out.Console, "dfget: %v\n", err)
		return Outcome{Code: config.ExitUsage, Err: err}
	}
	d.log = out.Log
	if d.log == nil {
		log, closeLog, err := newLogger(cfg.LogDir(), "dfclient.log", cfg.LogConfig, cfg.Verbose, cfg.Console)
		if err != nil {
			fmt.Fprintf(out.Console, "dfget: %v\n", err)
			return Outcome{Code: config.ExitPrepare, Err: err}
		}
		defer closeLog()
		d.log = log
	}
	d.headers, _ = urlutil.ParseHeaders(cfg.Headers)
	d.limiter = cfg.LocalLimit.Limiter(burstFor(int64(cfg.LocalLimit)))
	if d.limiter == nil && cfg.TotalLimit > 0 {
		d.limiter = cfg.TotalLimit.Limiter(burstFor(int64(cfg.TotalLimit)))
	}
	fmt.Fprintf(out.Console, "--%s--  %s\n", cfg.StartTime.Format("2006-01-02 15:04:05"), cfg.URL)
	fmt.Fprintf(out.Console, "dfget version:%s\n", version.Version)
	fmt.Fprintf(out.Console, "workspace:%s\n", cfg.Home)
	fmt.Fprintf(out.Console, "sign:%s\n", cfg.Sign)

	if err := prepare(cfg); err != nil {
		fmt.Fprintf(out.Console, "download FAIL(%d) cost:0.000s length:0 reason:%d error:%v\n",
			config.CodePrepare, config.ReasonNone, err)
		return Outcome{Code: config.ExitPrepare, Err: err}
	}
	reason, err := d.run(ctx)
	cost := time.Since(cfg.StartTime)
	d.reportMetrics(err == nil, reason)
	if d.bar != nil {
		d.bar.Close()
	}
	return Outcome{Code: d.report(reason, err, cost), Reason: reason, Length: max(d.length, 0), Err: err}
}

// prepare readies the local paths a download needs, so an unusable one
// fails before any network work as Dragonfly 1.x's prepare does (code
// 1101, exit 77): <home>/meta and <home>/data, which only P2P uses (the
// peer server's host.meta and service files; --pattern source reads
// neither), and the output's directory.
func prepare(cfg *config.Config) error {
	if cfg.Pattern != config.PatternSource {
		for _, dir := range []string{cfg.MetaDir(), cfg.DataDir()} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("workspace directory %s: %w", dir, err)
			}
		}
	}
	return prepareOutput(cfg)
}

// prepareOutput creates the output's directory and proves it writable, so
// an unusable -o fails before any network work.
func prepareOutput(cfg *config.Config) error {
	if cfg.Stream {
		return nil
	}
	dir := filepath.Dir(cfg.Output)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".dfget-probe-*")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

func burstFor(r int64) int { return int(min(max(r/8, 16<<10), 1<<20)) }

// run downloads by P2P and, when P2P failed in a way the source may make
// good, from the source. It returns the back-source reason (afterP2P) and
// the error the download ended with.
func (d *Download) run(ctx context.Context) (int, error) {
	reason, err, toSource := afterP2P(d.tryP2P(ctx), d.cfg.NotBS)
	if toSource {
		err = d.backSource(ctx, reason)
	}
	return reason, err
}

// tryP2P registers with a supernode and downloads by P2P. A failure the
// source may make good is a fallBack with its reason.
func (d *Download) tryP2P(ctx context.Context) error {
	cfg := d.cfg
	if cfg.Pattern == config.PatternSource {
		return fallBack(config.ReasonUserSpecified, errNoP2P)
	}
	if err := d.register(ctx); err != nil {
		return err
	}
	d.startBar(d.reg.Data.FileLength)
	if cfg.Stream {
		return d.stream(ctx)
	}
	return d.file(ctx)
}

// register finds the IP other peers reach this host on, starts (or
// reuses) the peer server for the p2p pattern and registers the task with
// the first supernode that takes it.
func (d *Download) register(ctx context.Context) error {
	cfg := d.cfg
	rootCAs, err := ReadCAs(cfg.CACerts)
	if err != nil {
		return err
	}
	nodes, warnings := regist.Order(ctx, cfg, rootCAs, net.DefaultResolver)
	for _, w := range warnings {
		d.log.Warnf("%v", w)
	}
	d.localIP = cfg.IP
	if d.localIP == "" {
		ip, err := regist.LocalIP(ctx, nodes)
		if err != nil {
			d.log.Warnf("%v", err)
			return fallBack(config.ReasonRegisterFail, err)
		}
		d.localIP = ip
	}
	d.cid = d.localIP + "-" + cfg.Sign
	if cfg.Pattern == config.PatternP2P {
		port, err := d.startPeerServer(ctx)
		if err != nil {
			d.log.Warnf("peer server unavailable, using the cdn pattern: %v", err)
		}
		d.peerPort = port
	}
	d.nodes, d.tried = nodes, map[string]bool{}
	d.regReq = regist.Request{CID: d.cid, IP: d.localIP, Port: d.peerPort, RootCAs: rootCAs}
	reg, err := regist.Register(ctx, d.client, cfg, nodes, d.regReq)
	if err != nil {
		d.log.Warnf("%v", err)
		return fallBack(config.ReasonRegisterFail, err)
	}
	d.reg = reg
	d.length = reg.Data.FileLength
	fmt.Fprintf(d.io.Console, "client:%s connected to node:%s\n", d.localIP, reg.Node)
	fmt.Fprintln(d.io.Console, "start download by dragonfly...")
	d.log.Infof("registered at %s: task %s length %d piece size %d cdn source %s", reg.Node, reg.Data.TaskID,
		reg.Data.FileLength, reg.Data.PieceSize, reg.Data.CDNSource)
	return nil
}

func (d *Download) startBar(total int64) {
	if d.cfg.ShowBar && d.io.Bar != nil {
		d.bar = progressbar.New(d.io.Bar, total)
	} else {
		d.bar = progressbar.New(nil, total)
	}
}

func (d *Download) startPeerServer(ctx context.Context) (int, error) {
	cfg := d.cfg
	return uploader.StartOrReuse(ctx, d.client, uploader.SpawnOptions{
		IP: d.localIP, Port: cfg.Port, Home: cfg.Home, MetaPath: cfg.MetaPath(), DataDir: cfg.DataDir(),
		LogPath: filepath.Join(cfg.LogDir(), "dfserver.log"), ExpireTime: cfg.ExpireTime, AliveTime: cfg.AliveTime,
		Verbose: cfg.Verbose, TaskFileName: cfg.TaskFileName, TotalLimit: int64(cfg.TotalLimit), Executable: cfg.ServerExecutable,
		NodeToken: cfg.NodeToken, NodeCACerts: cfg.NodeCACerts,
	})
}

// ReadCAs reads PEM CA files (--cacerts) for a registration's rootCAs.
func ReadCAs(files []string) ([][]byte, error) {
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read --cacerts %s: %w", f, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// newP2P builds the P2P attempt for the registered task.
func (d *Download) newP2P(w downloader.Writer) *downloader.P2P {
	wrapped := d.reg.Data.CDNSource != types.CDNSourceSource
	var hdr map[string]string
	var srcURL string
	if !wrapped {
		hdr, srcURL = d.headers, d.cfg.URL
	}
	return &downloader.P2P{
		Client:  d.client,
		Task:    downloader.Task{Node: d.reg.Node, TaskID: d.reg.Data.TaskID, CID: d.cid, PieceSize: d.reg.Data.PieceSize},
		Wrapped: wrapped, Headers: hdr, SourceURL: srcURL, Writer: w, Limiter: d.limiter, Log: d.log, OnPiece: d.bar.Add,
		MaxFetch: d.cfg.ClientQueue,
	}
}

// contentPerPiece is how many file bytes one piece carries.
func (d *Download) contentPerPiece() int64 {
	if d.reg.Data.CDNSource == types.CDNSourceSource {
		return int64(d.reg.Data.PieceSize)
	}
	return piece.ContentSize(d.reg.Data.PieceSize)
}

// pieceCount is the number of pieces of the file: from its length when
// registration or the supernode's finish gave one, else the number the
// supernode had us download.
func (d *Download) pieceCount(res *downloader.Result) int {
	n := d.expectedLength(res)
	if n < 0 {
		return res.Pieces
	}
	if n == 0 {
		return 1
	}
	c := d.contentPerPiece()
	return int((n + c - 1) / c)
}

// expectedLength is the file length known at registration or, for a
// source of unknown length (chunked), the one the supernode's finish
// reports; -1 if neither. Counting pieces from the length, not from the
// pieces this run happened to see finish, is what keeps a piece whose
// completion raced the finish from being left out.
func (d *Download) expectedLength(res *downloader.Result) int64 {
	if d.length >= 0 {
		return d.length
	}
	// The finish carries the CDN's wrapped length (v1); there is none to
	// go by in source-CDN mode.
	if res.Finish.FileLength > 0 && d.reg.Data.CDNSource != types.CDNSourceSource {
		return piece.UnwrappedLength(res.Finish.FileLength, d.reg.Data.PieceSize)
	}
	return -1
}

// file downloads into the service file (p2p) or a temp file beside the
// output (cdn), checks it and publishes the output. When the supernode
// fails mid-download it migrates to the next node and goes on with the
// pieces already written (the next node is told it has them, not asked
// for them again); when P2P fails otherwise the failure is a fileFailure.
func (d *Download) file(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, d.cfg.DownloadTimeout(d.length))
	defer cancel()
	var st *partialFile
	for {
		var err error
		st, err = d.fileAttempt(pctx, st)
		if err == nil {
			return nil
		}
		var se *downloader.SupernodeError
		if errors.As(err, &se) && pctx.Err() == nil && d.migrate(pctx) {
			continue
		}
		// The attempt discarded its file: the task is registered afresh
		// and downloaded from the start, since the pieces written belong
		// to a task whose bytes may have changed with its re-fetch.
		if errors.Is(err, downloader.ErrTaskGone) && pctx.Err() == nil && d.reregister(pctx) {
			continue
		}
		st.discard()
		// P2P is over (Run waited for every fetch): tell the supernode
		// we serve nothing.
		d.serviceDown()
		d.log.Warnf("p2p download failed: %v", err)
		return fileFailure(err)
	}
}

// maxReregister bounds how often one download registers again with a
// supernode that forgot it, so a supernode that keeps dropping the task
// ends the P2P attempt instead of looping.
const maxReregister = 3

// reregister registers again with the current supernode after it answered
// that it does not know this client (ErrTaskGone): it dropped the task, for
// example on finding its cache file damaged, and re-fetches the file for
// the new registration.
func (d *Download) reregister(ctx context.Context) bool {
	if d.reregs >= maxReregister {
		d.log.Warnf("supernode %s forgot this client %d times: giving up on it", d.reg.Node, d.reregs)
		return false
	}
	d.reregs++
	var node []nodes.Node
	for _, n := range d.nodes {
		if n.Addr() == d.reg.Node {
			node = append(node, n)
		}
	}
	reg, err := d.registerAgain(ctx, node)
	if err != nil {
		d.log.Warnf("register again: %v", err)
		return false
	}
	d.log.Infof("supernode %s dropped the task; registered again (%d of %d): task %s length %d", reg.Node, d.reregs,
		maxReregister, reg.Data.TaskID, reg.Data.FileLength)
	d.reg, d.length = reg, reg.Data.FileLength
	return true
}

// registerAgain registers with node, trying a few times: a supernode still
// dropping the task (its GC deletes the task's state in steps) can refuse
// a registration that lands in between, and one a moment later succeeds.
func (d *Download) registerAgain(ctx context.Context, node []nodes.Node) (*regist.Result, error) {
	var err error
	for wait := 100 * time.Millisecond; ; wait *= 2 {
		var reg *regist.Result
		if reg, err = regist.Register(ctx, d.client, d.cfg, node, d.regReq); err == nil {
			return reg, nil
		}
		if wait > 400*time.Millisecond {
			return nil, err
		}
		d.log.Debugf("register again: %v; trying again in %v", err, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// migrate registers with the next supernode not tried yet.
func (d *Download) migrate(ctx context.Context) bool {
	d.serviceDown()
	d.tried[d.reg.Node] = true
	var rest []nodes.Node
	for _, n := range d.nodes {
		if !d.tried[n.Addr()] {
			rest = append(rest, n)
		}
	}
	if len(rest) == 0 {
		return false
	}
	reg, err := regist.Register(ctx, d.client, d.cfg, rest, d.regReq)
	if err != nil {
		d.log.Warnf("migration: %v", err)
		return false
	}
	d.reg, d.length = reg, reg.Data.FileLength
	fmt.Fprintf(d.io.Console, "migrated to node:%s\n", reg.Node)
	d.log.Infof("migrated to %s: task %s", reg.Node, reg.Data.TaskID)
	return true
}

// partialFile is the file a P2P download writes before it is published,
// kept across a migration to another supernode when the piece layout and
// the file's length stay the same (each piece kept is then checked against
// the new supernode's digest before it is confirmed to it: P2P.verifyHeld).
type partialFile struct {
	w         *downloader.FileWriter
	path      string
	pieceSize int32
	cdnSource string
	// length is the file's length at the registration that created the
	// file (-1: unknown).
	length int64
}

// discard drops the file; a nil state is fine.
func (st *partialFile) discard() {
	if st != nil {
		st.w.Abort()
		os.Remove(st.path)
	}
}

// fileAttempt is one P2P download against the registered supernode, into
// prev's file when it has this registration's piece layout. The output is
// published only if everything checks. When the supernode failed, the file
// is returned for the next node; on any other failure it is gone.
func (d *Download) fileAttempt(ctx context.Context, prev *partialFile) (*partialFile, error) {
	st, err := d.reusePartialFile(prev)
	if err != nil {
		return nil, err
	}
	w, path := st.w, st.path
	stopRate := d.fairRate(ctx)
	stopAlive := d.keepAlive(ctx)
	res, err := d.newP2P(w).Run(ctx)
	stopAlive()
	var se *downloader.SupernodeError
	if errors.As(err, &se) {
		stopRate()
		return st, err
	}
	var sum string
	var length int64
	if err == nil {
		t0 := time.Now()
		length, sum, err = w.Finish(ctx, d.pieceCount(res))
		d.log.Debugf("p2p done; whole-file hash finished %v later", time.Since(t0))
	} else {
		w.Abort()
	}
	stopRate()
	if err == nil {
		err = d.checkFile(res, length, sum, w.HashRequired())
	}
	if err == nil {
		err = d.checkDigest(w.Sha256())
	}
	if err == nil {
		err = d.publish(path)
	}
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	d.length, d.fromPeers = length, res.FromPeers
	d.finishPeerServer(ctx)
	return nil, nil
}

// reusePartialFile is prev when it has this registration's piece layout
// and file length, else (prev discarded) a new partial file. Another
// length is another version of the file: no piece of it is kept.
func (d *Download) reusePartialFile(prev *partialFile) (*partialFile, error) {
	if prev != nil && (prev.pieceSize != d.reg.Data.PieceSize || prev.cdnSource != d.reg.Data.CDNSource ||
		prev.length != d.length) {
		d.log.Infof("piece layout changed (size %d to %d, length %d to %d): starting over", prev.pieceSize,
			d.reg.Data.PieceSize, prev.length, d.length)
		prev.discard()
		prev = nil
	}
	if prev == nil {
		return d.newPartialFile()
	}
	d.log.Infof("going on with the %d pieces already written", prev.w.Written())
	return prev, nil
}

// publish makes the checked file at path the output: a link to the
// service file the peer server goes on sharing, or the temp file itself,
// renamed (the cdn pattern).
func (d *Download) publish(path string) error {
	out := d.cfg.Output
	if d.peerPort > 0 {
		return downloader.Publish(path, out)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		return err
	}
	if err := os.Rename(path, out); err != nil {
		return &downloader.LocalWriteError{Err: fmt.Errorf("move to %s: %w", out, err)}
	}
	return nil
}

// newPartialFile creates the file a download writes: the service file the
// peer server shares, or a temp file beside the output without one.
func (d *Download) newPartialFile() (*partialFile, error) {
	cfg := d.cfg
	var path string
	if d.peerPort > 0 {
		path = filepath.Join(cfg.DataDir(), cfg.TaskFileName+uploader.ServiceSuffix)
	} else {
		f, err := os.CreateTemp(filepath.Dir(cfg.Output), fsname.TempPattern(cfg.Output, "dfget"))
		if err != nil {
			return nil, &downloader.LocalWriteError{Err: fmt.Errorf("create temp file: %w", err)}
		}
		path = f.Name()
		f.Close()
	}
	w, err := downloader.NewFileWriter(path, d.contentPerPiece())
	if err != nil {
		return nil, err
	}
	st := &partialFile{w: w, path: path, pieceSize: d.reg.Data.PieceSize, cdnSource: d.reg.Data.CDNSource, length: d.length}
	if err := w.Preallocate(d.length); err != nil {
		st.discard()
		return nil, err
	}
	// Every piece is checked on arrival against the md5 the supernode
	// computed from the same bytes as the file's md5, so a file of checked
	// pieces has that md5 by construction, and a second md5 pass over
	// every byte would cost as much CPU as the piece checks to prove
	// nothing more. The whole file is hashed, as its contiguous prefix
	// grows, when the user gave --md5 (an independent claim) or when a
	// piece arrives without an md5 to check (the downloader then enables
	// hashing itself).
	if cfg.Md5 != "" {
		w.EnableHash()
	}
	if !d.digest.IsZero() {
		w.EnableSha256()
	}
	return st, nil
}

// checkFile checks the finished file: its length, and its md5 (sum, ""
// when not hashed) against --md5 or else the supernode's finish. required
// says some piece came without a digest, so the md5 is all that vouches
// for it: with no md5 to compare, the file is not taken.
func (d *Download) checkFile(res *downloader.Result, length int64, sum string, required bool) error {
	if want := d.expectedLength(res); want >= 0 && length != want {
		return fallBack(config.ReasonDownloadError, fmt.Errorf("downloaded %d bytes, want %d", length, want))
	}
	want := d.cfg.Md5
	if want == "" {
		want = res.Finish.Md5
	}
	if required && (want == "" || sum == "") {
		return fallBack(config.ReasonMd5NotMatch,
			errors.New("pieces came without a digest and there is no whole-file md5 (--md5 or the supernode's) to check them"))
	}
	if sum != "" && want != "" && !downloader.EqualMd5(sum, want) {
		return fallBack(config.ReasonMd5NotMatch, fmt.Errorf("md5 of downloaded file is %s, want %s", sum, want))
	}
	return nil
}

// checkDigest compares the whole file's sha256 with --digest, if given.
// A mismatch is a failure of the file, like an md5 one: the source is
// tried next, and its file is checked the same way.
func (d *Download) checkDigest(got digest.Digest) error {
	if d.digest.IsZero() {
		return nil
	}
	if err := d.digest.Check(got); err != nil {
		return fallBack(config.ReasonMd5NotMatch, fmt.Errorf("downloaded file: %w", err))
	}
	return nil
}

// finishPeerServer hands the completed file to the peer server, which
// serves it until it expires and then reports service-down.
func (d *Download) finishPeerServer(ctx context.Context) {
	if d.peerPort <= 0 {
		d.serviceDown()
		return
	}
	if err := d.client.FinishTask(ctx, d.localIP, d.peerPort, d.cfg.TaskFileName, d.reg.Data.TaskID, d.cid, d.reg.Node, d.nodeCreds()); err != nil {
		d.log.Warnf("tell peer server the task finished: %v", err)
		d.serviceDown()
	}
}

// nodeCreds are this dfget's supernode credentials, for the peer server's
// reports about its task.
func (d *Download) nodeCreds() api.NodeCreds {
	return api.NodeCreds{Token: d.cfg.NodeToken, CACerts: d.cfg.NodeCACerts}
}

// serviceDown tells the supernode this client serves nothing for the task.
func (d *Download) serviceDown() {
	if d.reg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.client.ReportServiceDown(ctx, d.reg.Node, d.reg.Data.TaskID, d.cid); err != nil {
		d.log.Debugf("service down: %v", err)
	}
}

// fairRate keeps the download limiter at this download's share of
// --totallimit, asking the peer server every 3 s. It returns a stop func.
func (d *Download) fairRate(ctx context.Context) func() {
	if d.cfg.TotalLimit <= 0 || d.peerPort <= 0 || d.limiter == nil {
		return func() {}
	}
	want := int64(d.cfg.LocalLimit)
	if want <= 0 {
		want = int64(d.cfg.TotalLimit)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for {
			if r, err := d.client.FairRate(ctx, d.localIP, d.peerPort, d.cfg.TaskFileName, want); err == nil && r > 0 {
				d.limiter.SetLimit(xrate.Limit(r))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// checkEvery is how often a dfget repeats /check while it downloads: a
// third of the alive time it gives a server it starts, 1 s to 30 s (30 s
// for a server that never idles out). A server of another dfget may idle
// sooner; it learns this interval and the dfget's process at /check
// (api.Client.SetLocalOwner) and keeps the task while either says the
// download goes on.
func checkEvery(alive time.Duration) time.Duration {
	if alive <= 0 {
		return 30 * time.Second
	}
	return min(max(alive/3, time.Second), 30*time.Second)
}

// keepAlive re-registers the task with the peer server while the download
// runs: a download that nobody fetches from would otherwise look idle to
// a server that cannot watch this process, which could exit and delete
// the file being written.
func (d *Download) keepAlive(ctx context.Context) func() {
	if d.peerPort <= 0 {
		return func() {}
	}
	every := checkEvery(d.cfg.AliveTime)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_, err := d.client.CheckServer(ctx, d.localIP, d.peerPort, d.cfg.TaskFileName, d.cfg.DataDir(),
					int64(d.cfg.TotalLimit))
				if err != nil && ctx.Err() == nil {
					if errors.Is(err, api.ErrServerUnproven) {
						// The server died and something else holds
						// its port: no control call goes there now.
						d.client.SetLocalToken("")
					}
					d.log.Warnf("peer server keepalive: %v", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// backSource downloads from the source, for the back-source reason given;
// a stream continues where P2P left it (d.sw).
func (d *Download) backSource(ctx context.Context, reason int) error {
	cfg := d.cfg
	hc, err := downloader.SourceClient(cfg.CACerts, cfg.Insecure, !cfg.Dfdaemon, downloader.SourceIdle)
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	src := &downloader.BackSource{HTTP: hc, URL: cfg.URL, Headers: d.headers, Limiter: d.limiter, Digest: d.digest}
	if cfg.Pattern != config.PatternSource {
		fmt.Fprintf(d.io.Console, "start download %s from the source station\n", filepath.Base(cfg.Output))
	}
	d.log.Infof("back-source download, reason %d", reason)
	if d.bar == nil {
		d.startBar(-1)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.DownloadTimeout(d.sourceLength()))
	defer cancel()
	// Both read the file from byte 0 again, after the bar counted what
	// P2P brought: a stream's head out and the pieces it held that Stop
	// dropped, or a file's pieces, discarded with its temp file.
	onBytes := afterFirst(d.bar.Done(), d.bar.Add)
	if cfg.Stream {
		return d.streamBackSource(ctx, src, onBytes)
	}
	n, err := src.DownloadFile(ctx, cfg.Output, cfg.Md5, onBytes)
	if err != nil {
		return err
	}
	d.length = n
	return nil
}

// sourceLength is the length of the file a back-source reads, which its
// default timeout is made for. After a stream P2P wrote into, d.length is
// the bytes out, not the file's, and the fallback reads the whole file
// again from byte 0 (streamBackSource).
func (d *Download) sourceLength() int64 {
	if d.sw != nil {
		return d.streamLength
	}
	return d.length
}

func (d *Download) reportMetrics(success bool, reason int) {
	if d.reg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m := &types.TaskMetricsRequest{
		IP: d.localIP, Port: d.peerPort, TaskID: d.reg.Data.TaskID, CID: d.cid, CallSystem: d.cfg.CallSystem,
		Duration: time.Since(d.cfg.StartTime).Seconds(), Success: success, FileLength: max(d.length, 0),
		BacksourceReason: fmt.Sprint(reason),
	}
	if err := d.client.ReportMetrics(ctx, d.reg.Node, m); err != nil {
		d.log.Debugf("report metrics: %v", err)
	}
}
