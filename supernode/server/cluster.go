package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

// clusterInfo answers GET /api/v1/cluster: the members as this supernode
// sees them (no members when it has no cluster).
func (a *api) clusterInfo(w http.ResponseWriter, _ *http.Request) {
	info := types.ClusterInfo{Members: []types.ClusterMember{}}
	if a.Cluster != nil {
		info = a.Cluster.Info()
	}
	writeJSON(w, http.StatusOK, info)
}

// clusterFetch answers POST /api/v1/cluster/fetch, another member asking
// this one, the task's home, for its file: the task is made to exist here
// with a CDN reading the origin (never another member), then its pieces
// are streamed as they are written. A task whose fill waits here for its
// turn (--cdn-fill-limit) is refused with types.CodeClusterFillWaits: the
// asker waits for the fill to start, without a slot. A task this
// supernode reads from a member, or whose fill waits for a member's, is
// refused with code 409: read the origin.
func (a *api) clusterFetch(w http.ResponseWriter, r *http.Request) {
	var req types.ClusterFetchRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, http.StatusBadRequest, fmt.Sprintf("invalid body: %v", err))
		return
	}
	if err := sourceAllowed(a.SourceAllow, req.RawURL); err != nil {
		writeError(w, http.StatusBadRequest, http.StatusBadRequest, err.Error())
		return
	}
	if a.ClusterCDN == nil {
		writeError(w, http.StatusNotFound, http.StatusNotFound, "no cluster cdn")
		return
	}
	if via := a.ClusterCDN.MemberOf(req.TaskID); via != "" {
		// Reading from it or waiting for its fill: the asker's list and
		// this one's disagree, and a wait here could meet the asker's own.
		writeError(w, http.StatusConflict, http.StatusConflict, "this supernode reads the task from "+via+": read the origin")
		return
	}
	want, err := task.FileDigest(req.Digest)
	if err != nil {
		writeError(w, http.StatusBadRequest, task.CodeOf(err), err.Error())
		return
	}
	id, err := a.Tasks.EnsureLocal(cdn.Source{RawURL: req.RawURL, TaskURL: req.TaskURL, Headers: req.Headers, Md5: req.Md5,
		Identifier: req.Identifier, Insecure: req.Insecure, RootCAs: req.RootCAs, Digest: want})
	if err != nil {
		status := http.StatusBadGateway
		if task.CodeOf(err) == types.CodeParamError {
			status = http.StatusBadRequest
		}
		writeError(w, status, task.CodeOf(err), err.Error())
		return
	}
	info, err := a.Tasks.Info(id)
	if err != nil || id != req.TaskID {
		writeError(w, http.StatusBadRequest, http.StatusBadRequest, fmt.Sprintf("task %s is %s here", req.TaskID, id))
		return
	}
	if a.ClusterCDN.Waiting(id) {
		// The asker's fill holds one of its slots: waiting on this line
		// with it, whose fills may be waiting on the asker's, could never
		// end. It gives the slot back and waits for this fill to start.
		writeError(w, http.StatusConflict, types.CodeClusterFillWaits, "this supernode's fill of the task waits for a slot: wait for it")
		return
	}
	a.streamTask(w, r, info, req)
}

// streamTask writes the task's frames, with keep-alive frames only for an
// asker that asked for them (an older one would take one for a broken
// stream). The API server's timeouts are for requests, not for a file that
// comes as fast as its origin: each write gets its own deadline instead.
func (a *api) streamTask(w http.ResponseWriter, r *http.Request, info types.TaskInfo, req types.ClusterFetchRequest) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	for k, v := range a.ClusterCDN.Validators(info.ID) {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(types.ClusterHeaderTaskID, info.ID)
	w.Header().Set(types.ClusterHeaderFileLength, strconv.FormatInt(info.HTTPFileLength, 10))
	w.Header().Set(types.ClusterHeaderPieceSize, strconv.Itoa(int(info.PieceSize)))
	w.WriteHeader(http.StatusOK)
	dw := &deadlineWriter{w: w, rc: rc}
	if err := rc.Flush(); err != nil {
		return
	}
	keepAlive := time.Duration(min(max(req.KeepAliveMillis, 0), time.Hour.Milliseconds())) * time.Millisecond
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if a.Closing != nil {
		go func() {
			select {
			case <-a.Closing:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	if err := a.ClusterCDN.ServeMember(ctx, info.ID, dw, rc.Flush, keepAlive); err != nil {
		a.Log.WithField("task", info.ID).WithField("member", shown(req.From)).WithError(err).Warn("cluster fetch ended")
	}
}

// deadlineWriter gives each write a minute.
type deadlineWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(time.Minute))
	return d.w.Write(p)
}
