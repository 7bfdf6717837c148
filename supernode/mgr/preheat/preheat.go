// Package preheat warms the supernode's cache without any client: a file
// preheat runs the CDN for a URL in-process; an image preheat reads a
// registry manifest and preheats each layer blob as a child.
package preheat

//go:generate go tool mockgen -source=preheat.go -destination=mock_deps_test.go -package=preheat

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/manifest"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
)

// Tasks is the task manager as preheat uses it.
type Tasks interface {
	Ensure(src cdn.Source) (string, error)
	Wait(ctx context.Context, id string) (string, error)
}

// ErrNotFound reports an unknown preheat ID.
var ErrNotFound = errors.New("preheat not found")

type job struct {
	info     types.PreheatInfo
	parent   string
	children []string
}

// Manager runs preheat jobs in memory.
type Manager struct {
	tasks   Tasks
	http    *http.Client
	log     logrus.FieldLogger
	timeout time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	jobs map[string]*job
}

// New returns a manager; each job gives up after timeout.
func New(t Tasks, client *http.Client, timeout time.Duration, log logrus.FieldLogger) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{tasks: t, http: client, log: log, timeout: timeout, ctx: ctx, cancel: cancel, jobs: map[string]*job{}}
}

// Close stops running jobs and waits for them.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

const idSalt = "damselfly-supernode-preheat-salt"

// ID is sha256(salt + filtered url + identifier + range + salt).
func ID(rawURL, filter, identifier string, headers map[string]string) string {
	sum := sha256.Sum256([]byte(idSalt + urlutil.FilterQuery(rawURL, filter) + identifier + headers["Range"] + idSalt))
	return hex.EncodeToString(sum[:])
}

var manifestURL = regexp.MustCompile(`^(.*)://(.*)/v2/(.*)/manifests/(.*)`)

// Create validates and starts a preheat. existed is true (and nothing is
// started) when a job with the same ID already exists.
func (m *Manager) Create(req types.PreheatCreateRequest) (string, bool, error) {
	if req.Type != types.PreheatTypeFile && req.Type != types.PreheatTypeImage {
		return "", false, fmt.Errorf("invalid type %q: want file or image", req.Type)
	}
	if _, err := urlutil.Validate(req.URL); err != nil {
		return "", false, err
	}
	if req.Type == types.PreheatTypeImage && !manifestURL.MatchString(req.URL) {
		return "", false, fmt.Errorf("invalid image url %q: want <scheme>://<host>/v2/<name>/manifests/<ref>", req.URL)
	}
	headers := canonical(req.Headers)
	id := ID(req.URL, req.Filter, req.Identifier, headers)
	if !m.add(id, "") {
		return id, true, nil
	}
	m.start(id, req, headers)
	return id, false, nil
}

func canonical(h map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[http.CanonicalHeaderKey(k)] = v
	}
	return out
}

func (m *Manager) add(id, parent string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	// A failed preheat may be asked for again; any other existing one is
	// reported as existing (v1 started a second worker for unfinished ones).
	if j, ok := m.jobs[id]; ok && j.info.Status != types.PreheatFailed {
		return false
	}
	m.jobs[id] = &job{info: types.PreheatInfo{ID: id, Status: types.PreheatWaiting, StartTime: time.Now().UTC()}, parent: parent}
	if p := m.jobs[parent]; p != nil {
		p.children = append(p.children, id)
	}
	return true
}

func (m *Manager) start(id string, req types.PreheatCreateRequest, headers map[string]string) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, m.timeout)
		defer cancel()
		m.set(id, types.PreheatRunning, "")
		var err error
		if req.Type == types.PreheatTypeFile {
			err = m.file(ctx, req, headers)
		} else {
			err = m.image(ctx, id, req, headers)
		}
		if err != nil {
			// The message is shown by the open API: no URL credentials.
			msg := urlutil.Redact(err.Error())
			m.log.Warnf("preheat %s of %s failed: %s", id, urlutil.Redact(req.URL), msg)
			m.set(id, types.PreheatFailed, msg)
			return
		}
		m.set(id, types.PreheatSuccess, "")
	}()
}

func (m *Manager) set(id, status, msg string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.jobs[id]
	if j == nil {
		return
	}
	j.info.Status, j.info.ErrorMsg = status, msg
	if status == types.PreheatSuccess || status == types.PreheatFailed {
		j.info.FinishTime = time.Now().UTC()
	}
}

func (m *Manager) file(ctx context.Context, req types.PreheatCreateRequest, headers map[string]string) error {
	taskID, err := m.tasks.Ensure(cdn.Source{
		RawURL: req.URL, TaskURL: urlutil.FilterQuery(req.URL, req.Filter), Headers: headers, Identifier: req.Identifier,
	})
	if err != nil {
		return err
	}
	st, err := m.tasks.Wait(ctx, taskID)
	if err != nil {
		return fmt.Errorf("wait for cdn of %s: %w", taskID, err)
	}
	if st != types.CDNStatusSuccess {
		return fmt.Errorf("cdn of %s ended %s", taskID, st)
	}
	return nil
}

// image preheats every layer of a manifest (recursing into lists).
func (m *Manager) image(ctx context.Context, id string, req types.PreheatCreateRequest, headers map[string]string) error {
	parts := manifestURL.FindStringSubmatch(req.URL)
	base := parts[1] + "://" + parts[2] + "/v2/" + parts[3]
	layers, err := m.layers(ctx, req.URL, base, headers, 0)
	if err != nil {
		return err
	}
	var children []string
	for _, d := range layers {
		child := types.PreheatCreateRequest{Type: types.PreheatTypeFile, URL: base + "/blobs/" + d, Headers: headers}
		cid := ID(child.URL, "", "", headers)
		if m.add(cid, id) {
			m.start(cid, child, headers)
		}
		children = append(children, cid)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		done, failed := 0, ""
		for _, c := range children {
			info, err := m.Get(c)
			if err != nil {
				failed = c
				break
			}
			switch info.Status {
			case types.PreheatSuccess:
				done++
			case types.PreheatFailed:
				failed = c
			}
		}
		if failed != "" {
			return fmt.Errorf("layer preheat %s failed", failed)
		}
		if done == len(children) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (m *Manager) layers(ctx context.Context, u, base string, headers map[string]string, depth int) ([]string, error) {
	if depth > 2 {
		return nil, errors.New("manifest lists nested too deep")
	}
	body, err := m.fetchManifest(ctx, u, headers)
	if err != nil {
		return nil, err
	}
	mf, err := manifest.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	seen := map[string]bool{}
	var out []string
	add := func(d string) {
		if d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, d := range mf.LayerDigests() {
		add(d)
	}
	for _, sub := range mf.ChildDigests() {
		ls, err := m.layers(ctx, base+"/manifests/"+sub, base, headers, depth+1)
		if err != nil {
			return nil, err
		}
		for _, d := range ls {
			add(d)
		}
	}
	sort.Strings(out)
	return out, nil
}

const maxManifest = 4 << 20

func (m *Manager) fetchManifest(ctx context.Context, u string, headers map[string]string) ([]byte, error) {
	do := func(auth string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		req.Header.Set("Accept", strings.Join([]string{
			"application/vnd.docker.distribution.manifest.v2+json",
			"application/vnd.docker.distribution.manifest.list.v2+json",
			"application/vnd.oci.image.manifest.v1+json",
			"application/vnd.oci.image.index.v1+json",
			"application/vnd.docker.distribution.manifest.v1+prettyjws",
		}, ", "))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return m.http.Do(req)
	}
	resp, err := do("")
	if err != nil {
		return nil, fmt.Errorf("fetch manifest %s: %w", u, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		challenge := resp.Header.Get("WWW-Authenticate")
		resp.Body.Close()
		tok, err := m.token(ctx, challenge, headers)
		if err != nil {
			return nil, err
		}
		if resp, err = do("Bearer " + tok); err != nil {
			return nil, fmt.Errorf("fetch manifest %s: %w", u, err)
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("fetch manifest %s: status %d", u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", u, err)
	}
	return b, nil
}

// token answers a Bearer challenge: realm, service and scope.
func (m *Manager) token(ctx context.Context, challenge string, headers map[string]string) (string, error) {
	// The scheme is case-insensitive (RFC 9110 section 11.1).
	scheme, rest, ok := strings.Cut(challenge, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("unsupported auth challenge %q", challenge)
	}
	params := map[string]string{}
	for _, kv := range regexp.MustCompile(`(\w+)="([^"]*)"`).FindAllStringSubmatch(rest, -1) {
		params[kv[1]] = kv[2]
	}
	if params["realm"] == "" {
		return "", errors.New("auth challenge without realm")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, params["realm"], nil)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	q := req.URL.Query()
	for _, k := range []string{"service", "scope"} {
		if params[k] != "" {
			q.Set(k, params[k])
		}
	}
	req.URL.RawQuery = q.Encode()
	if a := headers["Authorization"]; a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil || resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("token request: status %d", resp.StatusCode)
	}
	if tr.Token == "" {
		tr.Token = tr.AccessToken
	}
	return tr.Token, nil
}

// Get returns a job.
func (m *Manager) Get(id string) (types.PreheatInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.jobs[id]
	if j == nil {
		return types.PreheatInfo{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return j.info, nil
}

// List returns all jobs, oldest first.
func (m *Manager) List() []types.PreheatInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]types.PreheatInfo, 0, len(m.jobs))
	for _, j := range m.jobs {
		out = append(out, j.info)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].StartTime.Before(out[k].StartTime) })
	return out
}

// Delete forgets a job and its children.
func (m *Manager) Delete(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.jobs[id]
	if j == nil {
		return false
	}
	for _, c := range j.children {
		delete(m.jobs, c)
	}
	delete(m.jobs, id)
	return true
}
