// Package metrics defines the supernode's Prometheus collectors under the
// Dragonfly 1.x names (namespace "dragonfly"), registered on a registry the
// daemon owns, plus Damselfly's additions.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/damselfly-p2p/damselfly/pkg/version"
)

const ns = "dragonfly"

// Metrics holds every collector of the supernode.
type Metrics struct {
	Registry *prometheus.Registry
	// Labels bound the label values taken from clients: callsystem, peer
	// and reason go through them before any WithLabelValues.
	Labels *Labels

	HTTPRequests     *prometheus.CounterVec
	HTTPDuration     *prometheus.HistogramVec
	HTTPRequestSize  *prometheus.HistogramVec
	HTTPResponseSize *prometheus.HistogramVec
	PiecesDownloaded prometheus.Counter

	Tasks             *prometheus.GaugeVec
	TasksRegistered   prometheus.Counter
	CDNTrigger        prometheus.Counter
	CDNTriggerFailed  prometheus.Counter
	ScheduleDuration  *prometheus.HistogramVec
	Peers             *prometheus.GaugeVec
	DfgetTasks        *prometheus.GaugeVec
	DfgetTasksReg     *prometheus.CounterVec
	DfgetTasksFailed  *prometheus.CounterVec
	CDNCacheHit       prometheus.Counter
	CDNDownload       prometheus.Counter
	CDNDownloadBytes  prometheus.Counter
	CDNDownloadFailed prometheus.Counter
	GCTasks           prometheus.Counter
	GCPeers           prometheus.Counter
	GCDisks           prometheus.Counter
	LastGCDisks       prometheus.Gauge

	DfgetDuration *prometheus.HistogramVec
	DfgetBytes    *prometheus.CounterVec
	DfgetTotal    *prometheus.CounterVec
	DfgetFailed   *prometheus.CounterVec

	// Damselfly additions.
	PieceServerBytes prometheus.Counter
	PiecesScheduled  *prometheus.CounterVec
	PiecesFailed     *prometheus.CounterVec
	SourceFailures   prometheus.Counter
	// Md5OnDemand counts md5s computed for clients that check md5 (a
	// Dragonfly 1.x dfget): the fill computes BLAKE3 only.
	Md5OnDemand prometheus.Counter
	// CDNFills and CDNFillsWaiting are the CDN fills running and those
	// waiting for their turn under --cdn-fill-limit; CDNFillsWaitingHome
	// those that gave their slot back to wait for their cluster home's
	// fill, itself waiting for a slot there.
	CDNFills, CDNFillsWaiting, CDNFillsWaitingHome prometheus.Gauge
	// ClientAddressRefused counts calls as a client (and registrations
	// of its CID) refused for coming from another address than the
	// client registered from.
	ClientAddressRefused prometheus.Counter

	// Cluster: members' liveness as this supernode probes them, and the
	// CDN's bytes from other members (CDNDownloadBytes are the origin's).
	ClusterMemberUp  *prometheus.GaugeVec
	CDNClusterBytes  prometheus.Counter
	ClusterFallbacks *prometheus.CounterVec
}

// New builds the collectors and registers them (with Go and process
// collectors and build info) on a new registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	sizeBuckets := prometheus.ExponentialBuckets(100, 10, 8)
	m := &Metrics{
		Registry: r,
		Labels:   NewLabels(),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "http_requests_total", Help: "Counter of HTTP requests."}, []string{"code", "handler"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: "supernode",
			Name: "http_request_duration_seconds", Help: "Histogram of latencies for HTTP requests.",
			Buckets: []float64{.01, .02, .04, .1, .2, .4, 1, 2, 4, 8, 20, 60, 120}}, []string{"handler"}),
		HTTPRequestSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: "supernode",
			Name: "http_request_size_bytes", Help: "Histogram of request size for HTTP requests.",
			Buckets: sizeBuckets}, []string{"handler"}),
		HTTPResponseSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: "supernode",
			Name: "http_response_size_bytes", Help: "Histogram of response size for HTTP requests.",
			Buckets: sizeBuckets}, []string{"handler"}),
		PiecesDownloaded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "pieces_downloaded_size_bytes_total", Help: "Total bytes of pieces clients reported downloading from the supernode."}),
		Tasks: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: "supernode",
			Name: "tasks", Help: "Current tasks by cdn status."}, []string{"cdnstatus"}),
		TasksRegistered: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "tasks_registered_total", Help: "Total task registrations."}),
		CDNTrigger: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "cdn_trigger_total", Help: "Total CDN triggers."}),
		CDNTriggerFailed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "cdn_trigger_failed_total", Help: "Total failed CDN triggers."}),
		ScheduleDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: "supernode",
			Name: "schedule_duration_milliseconds", Help: "Duration of scheduling one /peer/task call.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 7)}, []string{"peer"}),
		Peers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: "supernode",
			Name: "peers", Help: "Current peers."}, []string{"peer"}),
		DfgetTasks: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: "supernode",
			Name: "dfgettasks", Help: "Current dfget tasks."}, []string{"callsystem", "status"}),
		DfgetTasksReg: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "dfgettasks_registered_total", Help: "Total dfget tasks registered."}, []string{"callsystem"}),
		DfgetTasksFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "dfgettasks_failed_total", Help: "Total failed dfget tasks."}, []string{"callsystem"}),
		CDNCacheHit: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "cdn_cache_hit_total", Help: "Total CDN full cache hits."}),
		CDNDownload: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "cdn_download_total", Help: "Total CDN downloads from the source."}),
		CDNDownloadBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "cdn_download_size_bytes_total", Help: "Total bytes the CDN read from sources."}),
		CDNDownloadFailed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "cdn_download_failed_total", Help: "Total failed CDN downloads."}),
		GCTasks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "gc_tasks_total", Help: "Total tasks garbage collected."}),
		GCPeers: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "gc_peers_total", Help: "Total peers garbage collected."}),
		GCDisks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "gc_disks_total", Help: "Total cache files removed by disk GC."}),
		LastGCDisks: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: "supernode",
			Name: "last_gc_disks_timestamp_seconds", Help: "Time of the last disk GC."}),
		DfgetDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: "dfget",
			Name: "download_duration_seconds", Help: "Duration of dfget downloads.",
			Buckets: []float64{1, 2, 5, 10, 30, 60, 120, 300, 600}}, []string{"callsystem", "peer"}),
		DfgetBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "dfget",
			Name: "download_size_bytes_total", Help: "Total bytes downloaded by dfget."}, []string{"callsystem", "peer"}),
		DfgetTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "dfget",
			Name: "download_total", Help: "Total dfget downloads."}, []string{"callsystem", "peer"}),
		DfgetFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "dfget",
			Name: "download_failed_total", Help: "Total failed dfget downloads."}, []string{"callsystem", "peer", "reason"}),
	}
	addDamselfly(m)
	m.ClusterMemberUp, m.CDNClusterBytes, m.ClusterFallbacks = clusterCollectors()
	buildInfo := newBuildInfo()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo,
		m.HTTPRequests, m.HTTPDuration, m.HTTPRequestSize, m.HTTPResponseSize, m.PiecesDownloaded,
		m.Tasks, m.TasksRegistered, m.CDNTrigger, m.CDNTriggerFailed, m.ScheduleDuration, m.Peers,
		m.DfgetTasks, m.DfgetTasksReg, m.DfgetTasksFailed, m.CDNCacheHit, m.CDNDownload, m.CDNDownloadBytes,
		m.CDNDownloadFailed, m.GCTasks, m.GCPeers, m.GCDisks, m.LastGCDisks,
		m.DfgetDuration, m.DfgetBytes, m.DfgetTotal, m.DfgetFailed,
		m.PieceServerBytes, m.PiecesScheduled, m.PiecesFailed, m.SourceFailures,
		m.ClusterMemberUp, m.CDNClusterBytes, m.ClusterFallbacks, m.Md5OnDemand, m.CDNFills, m.CDNFillsWaiting, m.CDNFillsWaitingHome,
		m.ClientAddressRefused)
	return m
}

// addDamselfly builds the collectors Dragonfly 1.x does not have.
func addDamselfly(m *Metrics) {
	m.PieceServerBytes = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
		Name: "piece_server_sent_bytes_total", Help: "Bytes sent by the supernode's piece server."})
	m.PiecesScheduled = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
		Name: "pieces_scheduled_total", Help: "Pieces handed out by /peer/task, by holder kind."}, []string{"holder"})
	m.PiecesFailed = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
		Name: "pieces_failed_total", Help: "Pieces clients reported failed (/peer/task result 501), by holder kind."}, []string{"holder"})
	m.SourceFailures = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
		Name: "source_failures_total", Help: "Failed requests to sources (status, timeout, transport)."})
	m.Md5OnDemand = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
		Name: "md5_on_demand_total", Help: "md5s (of a piece or a whole file) computed for clients that check md5."})
	m.CDNFills = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: "supernode",
		Name: "cdn_fills_running", Help: "CDN fills running (at most --cdn-fill-limit)."})
	m.CDNFillsWaiting = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: "supernode",
		Name: "cdn_fills_waiting", Help: "CDN fills waiting for their turn under --cdn-fill-limit."})
	m.CDNFillsWaitingHome = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: "supernode",
		Name: "cdn_fills_waiting_home", Help: "CDN fills without a slot waiting for their cluster home's fill to start."})
	m.ClientAddressRefused = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
		Name: "client_address_refused_total", Help: "Calls as a client refused for coming from another address than its registration."})
}

func newBuildInfo() *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: "supernode",
		Name: "build_info", Help: "Build information."}, []string{"version", "revision", "os", "arch", "goversion"})
	vi := version.Info()
	g.WithLabelValues(vi.Version, vi.Revision, vi.OS, vi.Arch, vi.GoVersion).Set(1)
	return g
}

func clusterCollectors() (*prometheus.GaugeVec, prometheus.Counter, *prometheus.CounterVec) {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: "supernode",
			Name: "cluster_member_up", Help: "1 when a member of the cluster answered its last probe (this supernode is always 1)."}, []string{"member"}),
		prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "cdn_cluster_bytes_total", Help: "Total bytes the CDN read from other members of the cluster (verified)."}),
		prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "supernode",
			Name: "cluster_fetch_fallbacks_total", Help: "CDN reads from a member that went to the origin instead, by reason."}, []string{"reason"})
}
