package cdn

// A member's fill whose cluster home answers that its own fill of the task
// waits for a fill slot (409 with types.CodeClusterFillWaits). Reading the
// origin then, as for any refusal, reads every file past the home's cap
// once per member: a fleet of Dragonfly 1.x dfgets, which pick a supernode
// at random, pulling an image with more new layers than the cap. Waiting
// for the home while holding a slot could deadlock: the fills ahead of the
// home's may be waiting on homes of their own, this supernode among them.
// So the fill gives its slot back, waits without one (its file stays
// "waiting": its clients get 602, a member asking for it is told the fill
// waits) and asks the home for the task's info about once a second. Once
// the home's fill runs, or succeeded, it takes a slot again at the front
// of its line (gate.Gate.Rejoin) and asks the home for the file as usual.
// No fill that holds a slot ever waits on one that does not, so every wait
// ends: a fill with a slot reads the origin, or a home whose fill runs.
//
// The wait is bounded in total (homeWaitBound); it ends early, for the
// origin, when the home's task fails or is gone, the home does not answer
// or is no longer the task's home (Source.HomeNow), and without reading
// anything when the task is dropped, the supernode closes, or nobody wants
// the file any more (Source.Wanted).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

const (
	// homeWaitBound bounds a fill's total wait for its home's fill. It is
	// longer than a home's line takes to move under a busy but working
	// origin (a slot frees whenever one of its fills ends: 16 fills of
	// layers of a few hundred MiB at tens of MiB/s each take seconds to
	// tens of seconds), and within what its clients wait: a dfget without
	// --timeout gets 5 minutes for a file of unknown length and
	// length/64 KiB/s + 10 s otherwise, 2 minutes from 7 MiB on (the
	// clients of a smaller file may give up first, as in any fill's
	// line). A home whose fill has not started after it has a line that
	// does not move (a stalled origin ahead, each fill of which may take
	// its stall bounds): reading the origin here is then the lesser cost.
	homeWaitBound = 2 * time.Minute
	// homePollEvery is how often a waiting fill asks its home for the
	// task's info: one small request a second per waiting fill.
	homePollEvery = time.Second
)

// reasonWaited labels a fallback to the origin after a wait for the home's
// fill: the bound passed, the home's task failed or is gone, or the home
// is no longer the task's home.
const reasonWaited = "waited"

// errHomeWaits is the home's answer that its own fill of the task waits
// for a fill slot.
var errHomeWaits = errors.New("the home's fill of the task waits for a fill slot")

// fillWaits reports whether a cluster fetch's 409 body says the home's
// fill waits (CodeClusterFillWaits): the other 409, and an older home's,
// mean "read the origin".
func fillWaits(body []byte) bool {
	var e types.ErrorResponse
	return json.Unmarshal(body, &e) == nil && e.Code == types.CodeClusterFillWaits
}

// startAfterHomeWaits is Start's way on when the home answered, to a fill
// that had a slot at once, that its own fill waits: Start gave the slot
// back; the registrations are answered with the home's length, as a
// waiting member fill's are (queuedLength), and the fill waits for the
// home's in the background.
func (m *Manager) startAfterHomeWaits(src Source, done func(Result)) (Started, error) {
	length, err := m.queuedLength(src)
	if err != nil {
		return Started{}, err
	}
	return m.enqueue(src, nil, length, done), nil
}

// awaitHome waits, without a slot, until the home's fill of the task runs
// or succeeded, asking the home every homePoll, and returns the member to
// read the file from: src.Via, or "" for the origin (the home's task failed
// or is gone, the home does not answer or is no longer the home, or
// deadline passed; counted as a fallback). It fails when ctx ends or
// nobody wants the file any more.
func (m *Manager) awaitHome(ctx context.Context, src Source, deadline time.Time) (string, error) {
	m.metrics.FillsWaitingHome.Inc()
	defer m.metrics.FillsWaitingHome.Dec()
	// While it waits, the task counts as read from the member (MemberOf):
	// any member asking for it is told to read the origin, as it is once
	// the fill reads the member. The asker takes this supernode for the
	// home and this one takes another, so their lists disagree: waiting
	// on this one's wait would end in that same refusal, later, and the
	// member waited for asking it back would wait on each other.
	m.viaMember.Store(src.TaskID, src.Via)
	defer m.viaMember.CompareAndDelete(src.TaskID, src.Via)
	m.log.WithField("task", src.TaskID).WithField("member", src.Via).Info("the home's fill of the task waits for a slot: waiting for it without one")
	for {
		timer := time.NewTimer(max(min(m.homePoll, time.Until(deadline)), 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return "", ctx.Err()
		case <-timer.C:
		}
		if src.Wanted != nil && !src.Wanted() {
			return "", errUnwanted
		}
		if src.HomeNow != nil {
			if now := src.HomeNow(); now != src.Via {
				return m.waitEnded(src, reasonWaited, fmt.Errorf("%s is no longer the task's home (%q is)", src.Via, now))
			}
		}
		runs, reason, err := m.homeRuns(ctx, src)
		switch {
		case ctx.Err() != nil:
			return "", ctx.Err()
		case err != nil:
			return m.waitEnded(src, reason, err)
		case runs:
			return src.Via, nil
		case !time.Now().Before(deadline):
			return m.waitEnded(src, reasonWaited, fmt.Errorf("the home's fill did not start within %s", m.homeWait))
		}
	}
}

// waitEnded sends a fill that waited for its home to the origin.
func (m *Manager) waitEnded(src Source, reason string, err error) (string, error) {
	m.fallback(src, reason, fmt.Errorf("waiting for the home's fill: %w", err))
	return "", nil
}

// homeRuns reports whether the home's fill of the task runs or succeeded;
// an error, with its fallback reason, when the home cannot give the file:
// it does not answer, or its task failed or is gone.
func (m *Manager) homeRuns(ctx context.Context, src Source) (bool, string, error) {
	info, status, err := m.homeInfo(ctx, src)
	switch {
	case err != nil && status == 0:
		return false, reasonUnreachable, err
	case err != nil:
		return false, reasonWaited, err
	}
	switch info.CdnStatus {
	case types.CDNStatusSuccess:
		return true, "", nil
	case types.CDNStatusRunning:
		return !info.FillWaiting, "", nil
	case types.CDNStatusWaiting:
		// Made a moment ago, its fill about to start.
		return false, "", nil
	}
	return false, reasonWaited, fmt.Errorf("the home's task is %s", info.CdnStatus)
}

// homeInfo is the task's info as its home src.Via has it: GET
// TaskInfoPath + ID with the cluster's token, bounded as the length probe
// (which starts no fill there and sends no request to the origin). status
// is the answer's HTTP status, 0 when the home did not answer.
func (m *Manager) homeInfo(ctx context.Context, src Source) (types.TaskInfo, int, error) {
	ctx, cancel := context.WithTimeout(ctx, min(m.cfg.SourceTimeout, lengthProbeTimeout))
	defer cancel()
	var info types.TaskInfo
	req, err := m.memberRequest(ctx, http.MethodGet, src.Via, types.TaskInfoPath+url.PathEscape(src.TaskID), nil)
	if err != nil {
		return info, 0, err
	}
	resp, err := m.members.Do(req)
	if err != nil {
		return info, 0, fmt.Errorf("task info from %s: %w", src.Via, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return info, resp.StatusCode, fmt.Errorf("task info from %s: answered %d", src.Via, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&info); err != nil {
		return info, resp.StatusCode, fmt.Errorf("task info from %s: %w", src.Via, err)
	}
	if info.ID != src.TaskID {
		return info, resp.StatusCode, fmt.Errorf("task info from %s: task %q, want %s", src.Via, info.ID, src.TaskID)
	}
	return info, resp.StatusCode, nil
}
