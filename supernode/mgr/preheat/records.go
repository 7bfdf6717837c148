package preheat

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// The methods below run with m.mu held.

func finished(status string) bool {
	return status == types.PreheatSuccess || status == types.PreheatFailed
}

// live reports a record that exists and has not expired; an expired one
// is already gone for callers even if the sweep has not removed it yet.
func (m *Manager) live(id string) bool {
	j := m.jobs[id]
	return j != nil && !m.expired(j, m.cfg.Now())
}

func (m *Manager) expired(j *job, now time.Time) bool {
	return finished(j.info.Status) && len(j.parents) == 0 && now.Sub(j.info.FinishTime) >= m.cfg.Expire
}

// room refuses records beyond MaxRecords (ids already held count nothing).
func (m *Manager) room(ids []string) error {
	n := 0
	for _, id := range ids {
		if m.jobs[id] == nil {
			n++
		}
	}
	if n > 0 && len(m.jobs)+n > m.cfg.MaxRecords {
		return fmt.Errorf("%w (%d, the limit is %d): retry once finished ones expire or are deleted", ErrFull, len(m.jobs), m.cfg.MaxRecords)
	}
	return nil
}

// put stores a new WAITING record for id, replacing a failed or expired
// one (whose layers are released; the images waiting on it are kept).
func (m *Manager) put(id string, req types.PreheatCreateRequest) *job {
	j := &job{req: req, info: types.PreheatInfo{ID: id, Status: types.PreheatWaiting, StartTime: m.cfg.Now().UTC()}}
	if old := m.jobs[id]; old != nil {
		if m.expired(old, m.cfg.Now()) {
			m.drop(id)
		} else {
			j.parents = old.parents
			m.unqueue(old)
			for _, c := range old.children {
				m.release(c, id)
			}
		}
	}
	m.jobs[id] = j
	return j
}

func (m *Manager) enqueue(j *job) {
	m.queue = append(m.queue, j)
	m.dispatch()
}

// dispatch starts waiting jobs, oldest first, while slots are free.
func (m *Manager) dispatch() {
	for m.running < m.cfg.Limit && len(m.queue) > 0 && m.ctx.Err() == nil {
		j := m.queue[0]
		m.queue[0] = nil
		m.queue = m.queue[1:]
		m.running++
		j.info.Status = types.PreheatRunning
		m.wg.Add(1)
		go m.run(j)
	}
}

func (m *Manager) unqueue(j *job) {
	m.queue = slices.DeleteFunc(m.queue, func(q *job) bool { return q == j })
}

// addLayers records an image's layers as its children, queueing those not
// already held, then settles the image if they are all done.
func (m *Manager) addLayers(img *job, urls []string) error {
	if m.jobs[img.info.ID] != img {
		return nil
	}
	reqs := make([]types.PreheatCreateRequest, len(urls))
	ids := make([]string, len(urls))
	for i, u := range urls {
		reqs[i] = types.PreheatCreateRequest{Type: types.PreheatTypeFile, URL: u, Headers: img.req.Headers}
		ids[i] = ID(u, "", "", img.req.Headers)
	}
	if err := m.room(ids); err != nil {
		return fmt.Errorf("%d layers: %w", len(ids), err)
	}
	for i, id := range ids {
		c := m.jobs[id]
		if c == nil || c.info.Status == types.PreheatFailed || m.expired(c, m.cfg.Now()) {
			c = m.put(id, reqs[i])
			m.queue = append(m.queue, c)
		}
		if !slices.Contains(c.parents, img.info.ID) {
			c.parents = append(c.parents, img.info.ID)
		}
	}
	img.children, img.listed = ids, true
	m.settle(img)
	return nil
}

// finish ends a job (unless its record was deleted or replaced meanwhile)
// and settles the images waiting on it.
func (m *Manager) finish(j *job, err error) {
	id := j.info.ID
	if m.jobs[id] != j || finished(j.info.Status) {
		return
	}
	j.info.Status, j.info.ErrorMsg = types.PreheatSuccess, ""
	if err != nil {
		// The message is shown by the open API: no URL credentials.
		j.info.Status, j.info.ErrorMsg = types.PreheatFailed, urlutil.Redact(err.Error())
		m.log.Warnf("preheat %s of %s failed: %s", id, urlutil.Redact(j.req.URL), j.info.ErrorMsg)
	}
	j.info.FinishTime = m.cfg.Now().UTC()
	for _, p := range j.parents {
		if pj := m.jobs[p]; pj != nil {
			m.settle(pj)
		}
	}
}

// settle ends a listed image once a layer failed or is gone, or all
// succeeded.
func (m *Manager) settle(img *job) {
	if !img.listed || finished(img.info.Status) {
		return
	}
	for _, c := range img.children {
		cj := m.jobs[c]
		switch {
		case cj == nil:
			m.finish(img, fmt.Errorf("layer preheat %s was deleted", c))
			return
		case cj.info.Status == types.PreheatFailed:
			m.finish(img, fmt.Errorf("layer preheat %s failed: %s", c, cj.info.ErrorMsg))
			return
		case cj.info.Status != types.PreheatSuccess:
			return
		}
	}
	m.finish(img, nil)
}

// drop removes a record, its layers no other image waits on, and fails the
// images that waited on it.
func (m *Manager) drop(id string) bool {
	j := m.jobs[id]
	if j == nil {
		return false
	}
	delete(m.jobs, id)
	m.unqueue(j)
	for _, c := range j.children {
		m.release(c, id)
	}
	for _, p := range j.parents {
		if pj := m.jobs[p]; pj != nil {
			m.settle(pj)
		}
	}
	return true
}

func (m *Manager) release(child, parent string) {
	c := m.jobs[child]
	if c == nil {
		return
	}
	c.parents = slices.DeleteFunc(c.parents, func(p string) bool { return p == parent })
	if len(c.parents) == 0 {
		m.drop(child)
	}
}

// sweepEvery is how often expired records are removed: often enough that
// memory follows Expire closely, at most once a minute.
func sweepEvery(expire time.Duration) time.Duration {
	return min(max(expire/10, 10*time.Millisecond), time.Minute)
}

func (m *Manager) expireLoop() {
	defer m.wg.Done()
	t := time.NewTicker(sweepEvery(m.cfg.Expire))
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			m.mu.Lock()
			m.expire(m.cfg.Now())
			m.mu.Unlock()
		}
	}
}

// expire removes the records finished Expire ago, with their layers.
func (m *Manager) expire(now time.Time) {
	for id, j := range m.jobs {
		if m.expired(j, now) {
			m.drop(id)
		}
	}
}

// Get returns a job; an expired one is not found.
func (m *Manager) Get(id string) (types.PreheatInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.live(id) {
		return types.PreheatInfo{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return m.jobs[id].info, nil
}

// List returns all live jobs in v1's list shape, oldest first.
func (m *Manager) List() []types.PreheatTask {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]types.PreheatTask, 0, len(m.jobs))
	for id, j := range m.jobs {
		if m.live(id) {
			out = append(out, j.task())
		}
	}
	sort.Slice(out, func(i, k int) bool {
		if out[i].StartTime != out[k].StartTime {
			return out[i].StartTime < out[k].StartTime
		}
		return out[i].ID < out[k].ID
	})
	return out
}

func (j *job) task() types.PreheatTask {
	t := types.PreheatTask{
		ID: j.info.ID, URL: urlutil.Redact(j.req.URL), Type: j.req.Type, Filter: j.req.Filter, Identifier: j.req.Identifier,
		Headers: redactHeaders(j.req.Headers), Children: slices.Clone(j.children), Status: j.info.Status,
		StartTime: j.info.StartTime.UnixMilli(), ErrorMsg: j.info.ErrorMsg,
	}
	if len(j.parents) > 0 {
		t.ParentID = j.parents[0]
	}
	if !j.info.FinishTime.IsZero() {
		t.FinishTime = j.info.FinishTime.UnixMilli()
	}
	return t
}

// secretHeader reports headers whose values may be credentials: the list
// is served by an API that is open by default, and v1 showed them whole.
func secretHeader(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"auth", "cookie", "token", "secret", "key", "password", "credential", "session", "signature"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

func redactHeaders(h map[string]string) map[string]string {
	if len(h) == 0 {
		return nil // v1 showed null for a preheat without headers
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		if secretHeader(k) {
			v = urlutil.Masked
		}
		out[k] = v
	}
	return out
}

// Delete forgets a job and its layers no other image waits on.
func (m *Manager) Delete(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.drop(id)
}
