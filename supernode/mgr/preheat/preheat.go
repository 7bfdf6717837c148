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

// ErrNotFound reports an unknown (or expired) preheat ID.
var ErrNotFound = errors.New("preheat not found")

// ErrFull refuses a preheat when MaxRecords records are held.
var ErrFull = errors.New("too many preheat records held")

// Config bounds the manager. Zero values take the defaults below.
type Config struct {
	// Timeout bounds one running job (an image's own part ends once its
	// layers are listed; each layer has its own).
	Timeout time.Duration
	// Expire is how long a finished record is kept (v1 kept them forever).
	Expire time.Duration
	// Limit is how many jobs run at once; the rest wait, in order.
	Limit int
	// MaxRecords bounds the records held, layers of images included.
	MaxRecords int
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultTimeout    = 30 * time.Minute
	DefaultExpire     = 24 * time.Hour
	DefaultLimit      = 8
	DefaultMaxRecords = 10000
)

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Expire <= 0 {
		c.Expire = DefaultExpire
	}
	if c.Limit <= 0 {
		c.Limit = DefaultLimit
	}
	if c.MaxRecords <= 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

type job struct {
	req  types.PreheatCreateRequest // headers canonical
	info types.PreheatInfo
	// parents are the images waiting on this layer; a record with parents
	// leaves with its last parent, not on its own.
	parents []string
	// children are an image's layers; listed once they are known.
	children []string
	listed   bool
}

// Manager runs preheat jobs in memory.
type Manager struct {
	tasks Tasks
	http  *http.Client
	log   logrus.FieldLogger
	cfg   Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	jobs    map[string]*job
	queue   []*job // WAITING, oldest first
	running int
}

// New returns a manager and starts its expiry loop; Close stops it.
func New(t Tasks, client *http.Client, cfg Config, log logrus.FieldLogger) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{tasks: t, http: client, log: log, cfg: cfg.withDefaults(), ctx: ctx, cancel: cancel, jobs: map[string]*job{}}
	m.wg.Add(1)
	go m.expireLoop()
	return m
}

// Close stops running jobs and the expiry loop and waits for them.
func (m *Manager) Close() {
	// Under mu: dispatch (which holds mu) then sees the cancel and adds
	// nothing to wg once Wait may have started.
	m.mu.Lock()
	m.cancel()
	m.mu.Unlock()
	m.wg.Wait()
}

const idSalt = "damselfly-supernode-preheat-salt"

// ID is sha256(salt + filtered url + identifier + range + salt).
func ID(rawURL, filter, identifier string, headers map[string]string) string {
	sum := sha256.Sum256([]byte(idSalt + urlutil.FilterQuery(rawURL, filter) + identifier + headers["Range"] + idSalt))
	return hex.EncodeToString(sum[:])
}

var manifestURL = regexp.MustCompile(`^(.*)://(.*)/v2/(.*)/manifests/(.*)`)

// Create validates and queues a preheat. existed is true (and nothing is
// started) when a live job with the same ID exists; ErrFull when too many
// records are held.
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
	req.Headers = canonical(req.Headers)
	id := ID(req.URL, req.Filter, req.Identifier, req.Headers)
	m.mu.Lock()
	defer m.mu.Unlock()
	// A failed preheat may be asked for again; any other live one is
	// reported as existing (v1 started a second worker for unfinished ones).
	if m.live(id) && m.jobs[id].info.Status != types.PreheatFailed {
		return id, true, nil
	}
	if err := m.room([]string{id}); err != nil {
		return "", false, err
	}
	m.enqueue(m.put(id, req))
	return id, false, nil
}

func canonical(h map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[http.CanonicalHeaderKey(k)] = v
	}
	return out
}

func (m *Manager) run(j *job) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Timeout)
	defer cancel()
	var layers []string
	var err error
	if j.req.Type == types.PreheatTypeFile {
		err = m.file(ctx, j.req)
	} else {
		layers, err = m.image(ctx, j.req)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running--
	if err == nil && j.req.Type == types.PreheatTypeImage {
		// The image waits for its layers without holding a slot, so
		// images cannot starve their own layers of slots.
		err = m.addLayers(j, layers)
	}
	if err != nil || j.req.Type == types.PreheatTypeFile {
		m.finish(j, err)
	}
	m.dispatch()
}

func (m *Manager) file(ctx context.Context, req types.PreheatCreateRequest) error {
	taskID, err := m.tasks.Ensure(cdn.Source{
		RawURL: req.URL, TaskURL: urlutil.FilterQuery(req.URL, req.Filter), Headers: req.Headers, Identifier: req.Identifier,
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

// image lists the layer blob URLs of a manifest (recursing into lists).
func (m *Manager) image(ctx context.Context, req types.PreheatCreateRequest) ([]string, error) {
	parts := manifestURL.FindStringSubmatch(req.URL)
	base := parts[1] + "://" + parts[2] + "/v2/" + parts[3]
	digests, err := m.layers(ctx, req.URL, base, req.Headers, 0)
	if err != nil {
		return nil, err
	}
	urls := make([]string, len(digests))
	for i, d := range digests {
		urls[i] = base + "/blobs/" + d
	}
	return urls, nil
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
