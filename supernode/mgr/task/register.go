package task

import (
	"errors"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
)

// RegisterParams is a registration as the API received it.
type RegisterParams struct {
	Req types.RegisterRequest
	// RemoteIP is the client's address: the one its record is bound to
	// (dfgettask.Caller), and its peer's when req.IP is empty.
	RemoteIP string
	LocalIP  string // the address the client reached us on
}

// Register handles POST /peer/registry: it validates the request, makes
// sure the task and its CDN exist, and records the peer and its client.
func (m *Manager) Register(p RegisterParams) (types.RegisterResponseData, error) {
	reg, err := checkRegistration(p, m.cfg.SourcePattern)
	if err != nil {
		return types.RegisterResponseData{}, err
	}
	req, src := p.Req, reg.src
	addr := dfgettask.ParseAddr(p.RemoteIP)
	// A registration replaces the client's record: one from another
	// address than the record's would take the client over.
	var foreign *dfgettask.ForeignError
	if _, err := m.dfget.Caller(req.CID, src.TaskID, addr); errors.As(err, &foreign) {
		return types.RegisterResponseData{}, &Error{Code: types.CodeSystemError, Err: foreign}
	}
	t, err := m.ensure(src, true, true)
	if err != nil {
		return types.RegisterResponseData{}, err
	}
	// Until its client entry is added, the registration wants the fill.
	defer t.registering.Add(-1)
	peerID, err := m.peers.Register(types.PeerCreateRequest{IP: reg.ip, HostName: req.HostName, Port: req.Port, Version: req.Version})
	if err != nil {
		return types.RegisterResponseData{}, errorf(types.CodeSystemError, "register peer: %w", err)
	}
	t.mu.Lock()
	pieceSize, httpLen := t.pieceSize, t.httpLen
	t.mu.Unlock()
	old, _ := m.dfget.Get(req.CID, src.TaskID) // an earlier registration this one replaces
	if err := m.dfget.Add(dfgettask.Task{
		CID: req.CID, TaskID: src.TaskID, PeerID: peerID, Path: req.Path, CallSystem: req.CallSystem,
		SupernodeIP: reg.superIP, PieceSize: pieceSize, Dfdaemon: req.Dfdaemon, Stream: req.StreamMode,
		Blake3: reg.blake3, Addr: addr,
	}); err != nil {
		return types.RegisterResponseData{}, errorf(types.CodeSystemError, "add dfget task: %w", err)
	}
	cdnPattern := req.Port == 0 || req.Pattern == "cdn"
	if err := m.progress.InitClient(src.TaskID, req.CID, peerID, cdnPattern, req.StreamMode, req.WindowSize); err != nil {
		// GC dropped the task since ensure: the client registers again.
		m.rollback(req.CID, src.TaskID, peerID)
		return types.RegisterResponseData{}, errorf(types.CodeSystemError, "task dropped while registering: %w", err)
	}
	if t.isGone() {
		// GC is dropping the task and may have swept its clients before
		// the Add above. Not gone here, its sweep (after Detach) sees the
		// entry.
		m.rollback(req.CID, src.TaskID, peerID)
		return types.RegisterResponseData{}, errorf(types.CodeSystemError, "task %s is being deleted: register again", src.TaskID)
	}
	m.dropReplaced(old, peerID)
	m.metrics.Registered.Inc()
	source := types.CDNSourceSupernode
	if m.cfg.SourcePattern {
		source = types.CDNSourceSource
	}
	return types.RegisterResponseData{TaskID: src.TaskID, FileLength: httpLen, PieceSize: pieceSize, CDNSource: source}, nil
}

// rollback undoes a failed registration's client entry and puts its new
// peer down (the peer GC then collects it), as GC's sweep of a task's
// clients would have. Left, the entry of a task GC dropped stayed until
// the peer GC, naming a client of no task. An entry a later registration
// of the client made is left alone.
func (m *Manager) rollback(cid, taskID, peerID string) {
	if dt, err := m.dfget.Get(cid, taskID); err == nil && dt.PeerID == peerID {
		m.dfget.Delete(cid, taskID)
	}
	m.progress.PeerDown(peerID)
}

func (t *Task) isGone() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gone
}

// Ensure creates the task of src if needed and makes sure its CDN runs or
// ran (used by preheat, without any client). It returns the task ID. In a
// cluster the CDN reads from the task's home like a registration's, so a
// preheat reaches the home (and the origin only there) when it is alive.
func (m *Manager) Ensure(src cdn.Source) (string, error) { return m.ensureSource(src, true) }

// EnsureLocal is Ensure for a cluster fetch another member asked for: the
// CDN reads the origin whatever the home, so a fetch takes one hop.
func (m *Manager) EnsureLocal(src cdn.Source) (string, error) { return m.ensureSource(src, false) }

func (m *Manager) ensureSource(src cdn.Source, route bool) (string, error) {
	for _, err := range []error{CheckURL("url", src.RawURL), CheckURL("taskUrl", src.TaskURL),
		CheckHeaderMap(src.Headers), checkRange(src.Headers, m.cfg.SourcePattern)} {
		if err != nil {
			return "", err
		}
	}
	if _, err := urlutil.Validate(src.RawURL); err != nil {
		return "", errorf(types.CodeParamError, "url: %w", err)
	}
	if src.TaskURL == "" {
		src.TaskURL = src.RawURL
	}
	md5, err := normalizeMd5(src.Md5)
	if err != nil {
		return "", err
	}
	src.Md5 = md5
	src.TaskID = trustOf(src).ID(src.TaskURL, src.Md5, src.Identifier, src.Headers)
	if _, err := m.ensure(src, route, false); err != nil {
		return "", err
	}
	return src.TaskID, nil
}
