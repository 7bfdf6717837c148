package metrics

import (
	"strings"
	"testing"
)

func TestV1NamesOnOwnRegistry(t *testing.T) {
	m := New()
	m.PiecesScheduled.WithLabelValues("supernode").Inc()
	m.Tasks.WithLabelValues("SUCCESS").Set(1)
	m.Peers.WithLabelValues("1.2.3.4").Set(1)
	m.DfgetTasks.WithLabelValues("cs", "RUNNING").Set(1)
	m.DfgetTasksReg.WithLabelValues("cs").Inc()
	m.DfgetTasksFailed.WithLabelValues("cs").Inc()
	m.ScheduleDuration.WithLabelValues("1.2.3.4").Observe(1)
	m.HTTPRequests.WithLabelValues("200", "/x").Inc()
	m.HTTPDuration.WithLabelValues("/x").Observe(1)
	m.HTTPRequestSize.WithLabelValues("/x").Observe(1)
	m.HTTPResponseSize.WithLabelValues("/x").Observe(1)
	m.DfgetDuration.WithLabelValues("cs", "p").Observe(1)
	m.DfgetBytes.WithLabelValues("cs", "p").Add(1)
	m.DfgetTotal.WithLabelValues("cs", "p").Inc()
	m.DfgetFailed.WithLabelValues("cs", "p", "r").Inc()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range fams {
		got[f.GetName()] = true
	}
	for _, n := range strings.Fields(`
		dragonfly_supernode_http_requests_total dragonfly_supernode_http_request_duration_seconds
		dragonfly_supernode_http_request_size_bytes dragonfly_supernode_http_response_size_bytes
		dragonfly_supernode_pieces_downloaded_size_bytes_total dragonfly_supernode_build_info
		dragonfly_supernode_tasks dragonfly_supernode_tasks_registered_total dragonfly_supernode_cdn_trigger_total
		dragonfly_supernode_cdn_trigger_failed_total dragonfly_supernode_schedule_duration_milliseconds
		dragonfly_supernode_peers dragonfly_supernode_dfgettasks dragonfly_supernode_dfgettasks_registered_total
		dragonfly_supernode_dfgettasks_failed_total dragonfly_supernode_cdn_cache_hit_total
		dragonfly_supernode_cdn_download_total dragonfly_supernode_cdn_download_size_bytes_total
		dragonfly_supernode_cdn_download_failed_total dragonfly_supernode_gc_tasks_total
		dragonfly_supernode_gc_peers_total dragonfly_supernode_gc_disks_total
		dragonfly_supernode_last_gc_disks_timestamp_seconds dragonfly_dfget_download_duration_seconds
		dragonfly_dfget_download_size_bytes_total dragonfly_dfget_download_total dragonfly_dfget_download_failed_total
		dragonfly_supernode_piece_server_sent_bytes_total dragonfly_supernode_pieces_scheduled_total
		dragonfly_supernode_source_failures_total go_goroutines process_open_fds`) {
		if !got[n] {
			t.Errorf("metric %s not exposed", n)
		}
	}
	// Two daemons in one process do not collide: no global registry.
	if New().Registry == m.Registry {
		t.Fatal("registries shared")
	}
}
