package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/preheat"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/pull"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

// register: errors are HTTP 500 with {"code","message"} as in v1; the code
// says why (501 bad input, 607 source unreachable, 500 otherwise).
func (a *api) register(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, types.CodeParamError, err.Error())
		return
	}
	req, err := decodeRegister(trimContentType(r.Header.Get("Content-Type")), body)
	if err != nil {
		writeError(w, http.StatusInternalServerError, types.CodeParamError, err.Error())
		return
	}
	// Sizes first: nothing below may echo or keep an oversized field.
	if err := task.CheckRequest(req); err != nil {
		writeError(w, http.StatusInternalServerError, task.CodeOf(err), err.Error())
		return
	}
	if err := sourceAllowed(a.SourceAllow, req.RawURL); err != nil {
		writeError(w, http.StatusInternalServerError, types.CodeParamError, err.Error())
		return
	}
	resp, err := a.Tasks.Register(task.RegisterParams{Req: req, RemoteIP: hostOnly(r.RemoteAddr), LocalIP: localIP(r)})
	if err != nil {
		if !a.refused(r, err) {
			a.Log.Infof("register %s for %s failed: %s", urlutil.Clip(req.CID, task.EchoLimit),
				urlutil.Clip(urlutil.Redact(req.RawURL), task.EchoLimit), shown(err.Error()))
		}
		writeError(w, http.StatusInternalServerError, task.CodeOf(err), err.Error())
		return
	}
	writeResult(w, types.CodeSuccess, "success", resp)
}

func (a *api) pullTask(w http.ResponseWriter, r *http.Request) {
	q, err := parsePullQuery(r.URL.RawQuery)
	if err != nil {
		a.result(w, types.CodeParamError, err.Error(), nil)
		return
	}
	if q.Status == types.TaskStatusRunning && q.Result == types.ResultFail && a.Metrics != nil {
		holder := "peer"
		if strings.HasPrefix(q.DstCID, types.SuperNodeCIDPrefix) {
			holder = "supernode"
		}
		a.Metrics.PiecesFailed.WithLabelValues(holder).Inc()
	}
	res, err := a.Pulls.Pull(r.Context(), pull.Query{
		TaskID: q.TaskID, SrcCID: q.SrcCID, DstCID: q.DstCID, Range: q.Range, Status: q.Status, Result: q.Result,
		From: clientAddr(r),
	})
	if res.Held > 0 {
		// Long-poll time, so clients and benchmarks can tell waiting for a
		// piece from processing time.
		w.Header()["Server-Timing"] = []string{"hold;dur=" + strconv.FormatFloat(float64(res.Held)/float64(time.Millisecond), 'f', 1, 64)}
	}
	if err != nil {
		a.refused(r, err)
		a.result(w, task.CodeOf(err), err.Error(), nil)
		return
	}
	msg := ""
	switch res.Code {
	case types.CodePeerFinish:
		msg = "peer task end"
	case types.CodePeerContinue:
		msg = "peer task go on"
	case types.CodePeerWait:
		msg = "peer task wait"
	}
	a.result(w, res.Code, msg, res.Data())
}

// pieceSuccess: as v1, any failure (bad query, unknown task or client) is
// HTTP 500 {"code":500}: a v1 dfget takes an HTTP 200 with another code
// for an acknowledged report.
func (a *api) pieceSuccess(w http.ResponseWriter, r *http.Request) {
	q, err := parsePieceQuery(r.URL.RawQuery)
	if err == nil {
		err = a.Tasks.PieceSuccess(task.PieceReport{TaskID: q.TaskID, CID: q.CID, DstCID: q.DstCID, Range: q.Range,
			NoShare: q.NoShare, From: clientAddr(r)})
	}
	if err != nil {
		a.refused(r, err)
		writeError(w, http.StatusInternalServerError, types.CodeSystemError, err.Error())
		return
	}
	a.result(w, types.CodeGetPieceReport, "", nil)
}

func (a *api) streamPiece(add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := parsePieceQuery(r.URL.RawQuery)
		if err != nil {
			writeResult(w, types.CodeParamError, err.Error(), nil)
			return
		}
		if err := a.Tasks.StreamPiece(task.PieceReport{TaskID: q.TaskID, CID: q.CID, Range: q.Range, From: clientAddr(r)}, add); err != nil {
			a.refused(r, err)
			writeResult(w, task.CodeOf(err), err.Error(), nil)
			return
		}
		writeResult(w, types.CodeGetPieceReport, "", nil)
	}
}

// serviceDown: failures are HTTP 500 {"code":500}, as v1 (see pieceSuccess).
func (a *api) serviceDown(w http.ResponseWriter, r *http.Request) {
	v, err := required(r.URL.Query(), "taskId", "cid")
	if err == nil {
		err = a.Tasks.ServiceDown(v[0], v[1], clientAddr(r))
	}
	if err != nil {
		a.refused(r, err)
		writeError(w, http.StatusInternalServerError, types.CodeSystemError, err.Error())
		return
	}
	writeResult(w, types.CodeGetPeerDown, "", nil)
}

// pieceError: v1 answers 200 with an empty body whatever happens.
func (a *api) pieceError(w http.ResponseWriter, r *http.Request) {
	req, err := parsePieceErrorQuery(r.URL.RawQuery)
	if err != nil {
		writeResult(w, types.CodeParamError, err.Error(), nil)
		return
	}
	if pid := a.Tasks.DstPeer(req.TaskID, req.DstPid); pid != "" {
		req.DstPid = pid
		if err := a.PieceErrors.Report(req, clientAddr(r)); err != nil && !a.refused(r, err) {
			a.Log.WithError(err).Warn("piece error dropped")
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (a *api) v1PieceError(w http.ResponseWriter, r *http.Request) {
	var req types.PieceErrorRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, types.CodeParamError, fmt.Sprintf("invalid body: %v", err))
		return
	}
	if req.DstPid == "" {
		writeError(w, http.StatusBadRequest, types.CodeParamError, "dstPid is empty")
		return
	}
	vars := mux.Vars(r)
	req.TaskID, req.Range = vars["id"], vars["pieceRange"]
	if err := a.PieceErrors.Report(req, clientAddr(r)); err != nil {
		a.refused(r, err)
		writeError(w, http.StatusInternalServerError, types.CodeSystemError, err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (a *api) taskMetrics(w http.ResponseWriter, r *http.Request) {
	var req types.TaskMetricsRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, types.CodeParamError, fmt.Sprintf("invalid body: %v", err))
		return
	}
	m := a.Metrics
	// The route is unauthenticated: labels take bounded values, the log
	// line clipped text.
	callSystem, ip, reason := m.Labels.CallSystem.Value(req.CallSystem), m.Labels.Peer.Value(req.IP),
		m.Labels.Reason.Value(req.BacksourceReason)
	m.DfgetTotal.WithLabelValues(callSystem, ip).Inc()
	if req.Success {
		m.DfgetDuration.WithLabelValues(callSystem, ip).Observe(req.Duration)
		if req.FileLength > 0 {
			m.DfgetBytes.WithLabelValues(callSystem, ip).Add(float64(req.FileLength))
		}
	} else {
		m.DfgetFailed.WithLabelValues(callSystem, ip, reason).Inc()
	}
	clip := func(s string) string { return urlutil.Clip(s, task.EchoLimit) }
	a.Log.WithField("dfget", true).Infof("task metrics: task=%s cid=%s ip=%s success=%t duration=%.3fs length=%d reason=%s",
		clip(req.TaskID), clip(req.CID), clip(req.IP), req.Success, req.Duration, req.FileLength, clip(req.BacksourceReason))
	writeJSON(w, http.StatusOK, nil)
}

// clientAddr is the address a call came from, as a client's record is
// bound to it (dfgettask.Caller).
func clientAddr(r *http.Request) netip.Addr { return dfgettask.ParseAddr(r.RemoteAddr) }

// refused logs and counts err if it refused a call (or a registration) as
// a client for coming from another address than the client registered
// from, and reports whether it did. Such a call is answered as for an
// unknown client: this line, with both addresses, is all that tells the
// two apart.
func (a *api) refused(r *http.Request, err error) bool {
	var fe *dfgettask.ForeignError
	if !errors.As(err, &fe) {
		return false
	}
	a.Metrics.ClientAddressRefused.Inc()
	clip := func(s string) string { return urlutil.Clip(s, task.EchoLimit) }
	a.Log.Warnf("%s %s as client %s of task %s from %s refused: it registered from %s",
		r.Method, clip(r.URL.Path), clip(fe.CID), clip(fe.TaskID), fe.From, fe.Bound)
	return true
}

// REST errors: v1 answers HTTP 500 {"code":500} for unknown IDs.
func (a *api) restError(w http.ResponseWriter, err error) {
	writeError(w, http.StatusInternalServerError, types.CodeSystemError, err.Error())
}

func (a *api) createPeer(w http.ResponseWriter, r *http.Request) {
	var req types.PeerCreateRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, types.CodeParamError, fmt.Sprintf("invalid body: %v", err))
		return
	}
	// Peers are kept until peer GC: no megabyte host names.
	if err := task.CheckFields("IP", req.IP, "hostName", req.HostName, "version", req.Version); err != nil {
		writeError(w, http.StatusBadRequest, types.CodeParamError, err.Error())
		return
	}
	id, err := a.Peers.Register(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, types.CodeParamError, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, types.PeerCreateResponse{ID: id})
}

func (a *api) listPeers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	num, size := 0, 0
	var err error
	if s := q.Get("pageNum"); s != "" {
		if num, err = strconv.Atoi(s); err != nil || num < 0 {
			writeError(w, http.StatusBadRequest, types.CodeParamError, "invalid pageNum")
			return
		}
	}
	if s := q.Get("pageSize"); s != "" {
		if size, err = strconv.Atoi(s); err != nil || size < 0 {
			writeError(w, http.StatusBadRequest, types.CodeParamError, "invalid pageSize")
			return
		}
	}
	desc := false
	switch strings.ToUpper(q.Get("sortDirect")) {
	case "", "ASC":
	case "DESC":
		desc = true
	default:
		writeError(w, http.StatusBadRequest, types.CodeParamError, "invalid sortDirect: want ASC or DESC")
		return
	}
	writeJSON(w, http.StatusOK, a.Peers.List(num, size, desc))
}

func (a *api) getPeer(w http.ResponseWriter, r *http.Request) {
	p, err := a.Peers.Get(mux.Vars(r)["id"])
	if err != nil {
		a.restError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// deletePeer goes through the GC: the peer's clients and progress go with
// its record, or it would stay a holder no one can be pointed at.
func (a *api) deletePeer(w http.ResponseWriter, r *http.Request) {
	if err := a.GC.DeletePeer(mux.Vars(r)["id"]); err != nil {
		a.restError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (a *api) getTask(w http.ResponseWriter, r *http.Request) {
	info, err := a.Tasks.Info(mux.Vars(r)["id"])
	if err != nil {
		a.restError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (a *api) deleteTask(w http.ResponseWriter, r *http.Request) {
	full := false
	if s := r.URL.Query().Get("full"); s != "" {
		var err error
		if full, err = strconv.ParseBool(s); err != nil {
			writeError(w, http.StatusBadRequest, types.CodeParamError, "invalid full: want true or false")
			return
		}
	}
	a.GC.GCTask(mux.Vars(r)["id"], full)
	w.WriteHeader(http.StatusOK)
}

func (a *api) createPreheat(w http.ResponseWriter, r *http.Request) {
	var req types.PreheatCreateRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, http.StatusBadRequest, fmt.Sprintf("invalid body: %v", err))
		return
	}
	if err := task.CheckPreheat(req, a.SourcePattern); err != nil {
		writeError(w, http.StatusBadRequest, http.StatusBadRequest, err.Error())
		return
	}
	if err := sourceAllowed(a.SourceAllow, req.URL); err != nil {
		writeError(w, http.StatusBadRequest, http.StatusBadRequest, err.Error())
		return
	}
	id, existed, err := a.Preheats.Create(req)
	if errors.Is(err, preheat.ErrFull) {
		// Capacity, not the request: v1's error body with code = status,
		// and a status that tells clients to retry later.
		writeError(w, http.StatusServiceUnavailable, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, http.StatusBadRequest, err.Error())
		return
	}
	if existed {
		// v1's message carries the ID; clients (Harbor) parse it from "id:".
		writeError(w, http.StatusAlreadyReported, http.StatusAlreadyReported, "preheat task already exists, id:"+id)
		return
	}
	writeJSON(w, http.StatusCreated, types.PreheatCreateResponse{ID: id})
}

func (a *api) listPreheats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.Preheats.List())
}

func (a *api) getPreheat(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	info, err := a.Preheats.Get(id)
	if err != nil {
		writeError(w, http.StatusNotFound, http.StatusNotFound, id+" doesn't exists")
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// deletePreheat answers true whether or not the preheat existed, as v1.
func (a *api) deletePreheat(w http.ResponseWriter, r *http.Request) {
	a.Preheats.Delete(mux.Vars(r)["id"])
	writeJSON(w, http.StatusOK, true)
}

// decodeJSON reads a size-limited JSON body into v.
func decodeJSON(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}
