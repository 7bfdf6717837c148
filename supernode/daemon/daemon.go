// Package daemon wires the supernode's managers, servers and loops together
// and runs them until asked to stop, then shuts down in order: API requests
// finish, piece transfers finish, CDN writes are flushed with their metadata
// so a restart reuses the cache.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/logfile"
	"github.com/damselfly-p2p/damselfly/pkg/netguard"
	"github.com/damselfly-p2p/damselfly/pkg/tlsconf"
	"github.com/damselfly-p2p/damselfly/supernode/config"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cluster"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/gc"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/peer"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/pieceerror"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/preheat"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/pull"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/scheduler"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
	"github.com/damselfly-p2p/damselfly/supernode/server"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// Daemon is a configured supernode.
type Daemon struct {
	cfg     config.Base
	log     *logrus.Logger
	logFile io.Closer
	metrics *metrics.Metrics
	cdn     *cdn.Manager
	gc      *gc.Manager
	pe      *pieceerror.Manager
	preheat *preheat.Manager
	tasks   *task.Manager
	prober  *peer.Prober
	cluster *cluster.Cluster // nil without --cluster
	// memberTLS reaches the other members (nil: plain HTTP).
	memberTLS *tls.Config
	api       *http.Server
	pieces    *http.Server
	apiLn     net.Listener
	pieceLn   net.Listener
	// closing is closed when shutdown begins: it ends the streams to
	// other members, which would hold the API server to its deadline.
	closing chan struct{}
	// shutdownWait is how long each server's in-flight requests get.
	shutdownWait time.Duration
}

// New validates cfg, prepares the home directory and logs, builds the
// managers and binds both ports (so a port in use fails here, clearly).
func New(cfg config.Config, stderr io.Writer) (*Daemon, error) {
	b := cfg.Base
	if err := b.Validate(); err != nil {
		return nil, err
	}
	lf, err := logfile.Open(filepath.Join(b.LogDir(), "app.log"), b.LogConfig)
	if err != nil {
		return nil, err
	}
	log := logrus.New()
	log.SetFormatter(logfile.Formatter())
	log.SetOutput(io.MultiWriter(stderr, lf))
	if b.Debug {
		log.SetLevel(logrus.DebugLevel)
	}
	d := &Daemon{cfg: b, log: log, logFile: lf, metrics: metrics.New(), closing: make(chan struct{}), shutdownWait: 15 * time.Second}
	if d.memberTLS, err = memberTLS(b); err != nil {
		lf.Close()
		return nil, err
	}
	if err := d.build(); err != nil {
		lf.Close()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) build() error {
	b, mx, log := d.cfg, d.metrics, d.log
	st, err := store.New(b.RepoDir())
	if err != nil {
		return err
	}
	peers := peer.New(mx.Peers, mx.Labels)
	host, _ := os.Hostname()
	superPID, err := peers.Register(types.PeerCreateRequest{IP: b.AdvertiseIP, HostName: host, Port: b.DownloadPort})
	if err != nil {
		return fmt.Errorf("register the supernode as a peer: %w", err)
	}
	prog := progress.New(superPID)
	dfgets := dfgettask.New(dfgettask.Config{SuperPID: superPID, AnyAddress: !b.BindClientAddress},
		dfgettask.Metrics{Gauge: mx.DfgetTasks, Registered: mx.DfgetTasksReg, Failed: mx.DfgetTasksFailed, Labels: mx.Labels})
	d.cdn = d.newCDN(st, prog)
	taskCfg := task.Config{
		AdvertiseIP: b.AdvertiseIP, FailAccessInterval: b.FailAccessInterval, SourcePattern: b.CDNPattern == config.CDNPatternSource,
	}
	var clusterView server.ClusterView
	if d.cluster = d.newCluster(); d.cluster != nil {
		taskCfg.Home, clusterView = d.cluster, d.cluster
	}
	sched := scheduler.New(prog, scheduler.Config{
		Limits:           progress.Limits{DownLimit: b.PeerDownLimit, UpLimit: b.PeerUpLimit, SuperLimit: b.SupernodeLoadLimit},
		EliminationLimit: b.EliminationLimit, FailureCountLimit: b.FailureCountLimit,
	})
	tasks := task.New(taskCfg, d.cdn, prog, peers, dfgets, task.Metrics{
		Tasks: mx.Tasks, Registered: mx.TasksRegistered, CDNTrigger: mx.CDNTrigger, CDNTriggerFailed: mx.CDNTriggerFailed,
		PiecesDownloaded: mx.PiecesDownloaded,
	}, log.WithField("mgr", "task"))
	d.prober = peer.NewProber(peers, prog, log.WithField("mgr", "peer"))
	pulls := pull.New(pull.Config{
		AdvertiseIP: b.AdvertiseIP, DownloadPort: b.DownloadPort, PieceWait: b.PieceWait,
		SourcePattern: b.CDNPattern == config.CDNPatternSource,
	}, pull.Deps{Tasks: tasks, Scheduler: sched, Progress: prog, Dfget: dfgets, Peers: peers, Digests: d.cdn, Prober: d.prober},
		pull.Metrics{ScheduleDuration: mx.ScheduleDuration, PiecesScheduled: mx.PiecesScheduled, Labels: mx.Labels})
	d.tasks = tasks
	d.gc = gc.New(gc.Config{
		InitialDelay: b.GCInitialDelay, MetaInterval: b.GCMetaInterval, DiskInterval: b.GCDiskInterval,
		TaskExpire: b.TaskExpireTime, PeerGCDelay: b.PeerGCDelay,
		YoungGCThreshold: int64(b.YoungGCThreshold), FullGCThreshold: int64(b.FullGCThreshold),
		YoungMinIdle: b.IntervalThreshold,
	}, tasks, dfgets, prog, peers, d.cdn, st, gc.Metrics{
		Tasks: mx.GCTasks, Peers: mx.GCPeers, Disks: mx.GCDisks, LastDisk: mx.LastGCDisks,
	}, log.WithField("mgr", "gc"))
	d.pe = d.newPieceErrors(superPID, dfgets, st)
	d.preheat = d.newPreheat(tasks)

	api := server.NewAPI(server.Deps{
		Tasks: tasks, Pulls: pulls, Peers: peers, GC: d.gc, PieceErrors: d.pe, Preheats: d.preheat, Metrics: mx,
		Cluster: clusterView, ClusterCDN: d.cdn,
		Log: log.WithField("srv", "api"), Profiler: b.Debug || b.EnableProfiler,
		AuthToken: b.AuthToken, SourceAllow: b.SourceAllow, SourcePattern: b.CDNPattern == config.CDNPatternSource,
		Closing: d.closing,
	})
	d.api = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: nil}
	d.pieces = &http.Server{Handler: server.NewPieceServer(st.Root(), d.cdn, mx.PieceServerBytes),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 10 * time.Minute, IdleTimeout: 2 * time.Minute}
	if b.TLSCert != "" {
		// Loaded here so a bad pair fails the start, not the first client.
		cert, err := tls.LoadX509KeyPair(b.TLSCert, b.TLSKey)
		if err != nil {
			return fmt.Errorf("load tls-cert/tls-key: %w", err)
		}
		d.api.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if d.apiLn, err = net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(b.ListenPort))); err != nil {
		return fmt.Errorf("listen on port %d: %w", b.ListenPort, err)
	}
	if d.pieceLn, err = net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(b.DownloadPort))); err != nil {
		d.apiLn.Close()
		return fmt.Errorf("listen on download port %d: %w", b.DownloadPort, err)
	}
	return nil
}

// newCDN is the CDN manager, reading sources and, in a cluster, members.
func (d *Daemon) newCDN(st *store.Store, prog *progress.Manager) *cdn.Manager {
	b, mx := d.cfg, d.metrics
	return cdn.New(cdn.Config{Limit: int64(b.CDNLimit()), SourceTimeout: b.SourceTimeout, SourceAllow: b.SourceAllow,
		Cluster: cdn.ClusterConfig{Self: b.ClusterSelf(), Token: b.AuthToken, TLS: d.memberTLS},
		Damage:  damageRelay{d}, MaxFills: b.CDNFillLimit,
	}, st, prog, cdn.Metrics{
		CacheHit: mx.CDNCacheHit, Download: mx.CDNDownload, DownloadBytes: mx.CDNDownloadBytes,
		DownloadFailed: mx.CDNDownloadFailed, SourceFailures: mx.SourceFailures,
		ClusterBytes: mx.CDNClusterBytes, ClusterFallbacks: mx.ClusterFallbacks, Md5OnDemand: mx.Md5OnDemand,
		Fills: mx.CDNFills, FillsWaiting: mx.CDNFillsWaiting, FillsWaitingHome: mx.CDNFillsWaitingHome,
	}, d.log.WithField("mgr", "cdn"))
}

// newPieceErrors builds the manager of clients' reports of bad pieces
// from the supernode (after the CDN and GC it uses).
func (d *Daemon) newPieceErrors(superPID string, dfgets *dfgettask.Manager, st *store.Store) *pieceerror.Manager {
	cfg := pieceerror.Config{SuperPID: superPID, SourcePattern: d.cfg.CDNPattern == config.CDNPatternSource}
	return pieceerror.New(cfg, dfgets, d.cdn, d.gc, st.DataPath, d.log.WithField("mgr", "pieceerror"))
}

// newPreheat builds the preheat manager over the task manager.
func (d *Daemon) newPreheat(tasks preheat.Tasks) *preheat.Manager {
	b := d.cfg
	// Preheat fetches registry manifests and tokens: the same source guard
	// as the CDN keeps them off the supernode's local services.
	client := netguard.New(b.SourceAllow).NewClient(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	client.Timeout = time.Minute
	return preheat.New(tasks, client, preheat.Config{
		Timeout: 30 * time.Minute, Expire: b.PreheatExpireTime, Limit: b.PreheatLimit, MaxRecords: b.PreheatMaxRecords,
	}, d.log.WithField("mgr", "preheat"))
}

// damageRelay hands the CDN's damage findings to the piece error manager,
// which is built after the CDN (it asks the CDN for piece digests).
type damageRelay struct{ d *Daemon }

func (r damageRelay) CacheDamaged(taskID, wrappedRange string) {
	if r.d.pe != nil {
		r.d.pe.CacheDamaged(taskID, wrappedRange)
	}
}

// memberTLS is how this supernode reaches the other members of its
// cluster: nil (plain HTTP) unless its own API serves TLS, when theirs do
// too; they are trusted by the cluster CAs, the system's and the
// certificates of its own tlsCert (members sharing one certificate, or
// whose file holds their CA, need nothing more).
func memberTLS(b config.Base) (*tls.Config, error) {
	if b.TLSCert == "" || len(b.Cluster.List) == 0 {
		return nil, nil
	}
	c, err := tlsconf.Trust{CAFiles: append([]string{b.TLSCert}, b.ClusterCACerts...)}.Config()
	if err != nil {
		return nil, fmt.Errorf("cluster TLS: %w", err)
	}
	return c, nil
}

// newCluster is the view of the --cluster list, nil without one.
func (d *Daemon) newCluster() *cluster.Cluster {
	b := d.cfg
	if len(b.Cluster.List) == 0 {
		return nil
	}
	return cluster.New(cluster.Config{Nodes: b.Cluster.List, Self: b.ClusterSelf(), Interval: b.ClusterProbeInterval, TLS: d.memberTLS},
		net.DefaultResolver, d.metrics.ClusterMemberUp, d.log.WithField("mgr", "cluster"))
}

// Run serves until ctx ends, then shuts down gracefully.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.logFile.Close()
	d.log.Infof("supernode %s listening: api %s, pieces %s, home %s, advertise %s",
		"up", d.apiLn.Addr(), d.pieceLn.Addr(), d.cfg.HomeDir, d.cfg.AdvertiseIP)
	loopCtx, stopLoops := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	d.gc.WarnCapped()
	loops.Add(2)
	go func() { defer loops.Done(); d.gc.Run(loopCtx) }()
	go func() { defer loops.Done(); d.pe.Run(loopCtx) }()
	if d.cluster != nil {
		d.cluster.Start(loopCtx)
	}

	errc := make(chan error, 2)
	go func() { errc <- serve(d.api, d.apiLn) }()
	go func() { errc <- serve(d.pieces, d.pieceLn) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		d.log.WithError(err).Error("server stopped")
	}
	d.log.Info("shutting down")
	d.shutdownServers()
	stopLoops()
	loops.Wait()
	if d.cluster != nil {
		d.cluster.Wait()
	}
	d.prober.Wait()
	d.preheat.Close()
	d.cdn.Close()
	d.log.Info("stopped")
	return err
}

// shutdownServers stops both servers at once, each with shutdownWait for
// its in-flight requests: one after the other, a slow API request used the
// piece server's time, and the piece port kept taking transfers meanwhile
// that were then cut at exit. Member streams end first (closing): the
// asking members read the origin instead.
func (d *Daemon) shutdownServers() {
	close(d.closing)
	var wg sync.WaitGroup
	for name, s := range map[string]*http.Server{"api": d.api, "piece server": d.pieces} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), d.shutdownWait)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				d.log.WithError(err).Warnf("%s shutdown", name)
			}
		}()
	}
	wg.Wait()
}

// serve serves HTTPS when s has a TLS config (certificates loaded), else HTTP.
func serve(s *http.Server, ln net.Listener) error {
	var err error
	if s.TLSConfig != nil {
		err = s.ServeTLS(ln, "", "")
	} else {
		err = s.Serve(ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
