package swarm

// The cap on streams in flight (Options.MaxStreams). A stream holds its
// window, its fetch queue and its stream cache ring for as long as it
// runs, about (8 + 6 + 16) pieces, so a node pulling many layers at once
// would hold them all and be killed at its memory limit. A GET past the
// cap waits for a slot, first come first served, once its HEAD said it
// will stream: a GET that is forwarded (a 401, a Range, a HEAD, a
// manifest) never waits, and costs a copy buffer, not pieces. Two GETs of
// one blob are two streams (each its own registration, window and ring),
// so each takes a slot.

import (
	"context"
	"net/http"
	"time"
)

// slot waits for a stream slot for r and returns its release. ok is false
// when r was answered meanwhile: its client left (nothing to answer), or
// the wait reached its bound and r was forwarded to src, which every
// engine reads as it would the registry's own answer (containerd would try
// the registry itself after a 503 from its mirror, dockerd would retry
// after 5, 10, 15 and 20 s, skopeo would fail).
func (s *Swarm) slot(w http.ResponseWriter, r *http.Request, src Source) (release func(), ok bool) {
	if s.slots == nil {
		return func() {}, true
	}
	t := s.slots.Join()
	if t.Granted() {
		return s.slots.Release, true
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), s.opt.StreamWait)
	defer cancel()
	err := s.slots.Wait(ctx, t)
	switch {
	case err == nil:
		s.log.Debugf("GET %s: stream slot after %v", src.URL.Redacted(), time.Since(start).Round(time.Millisecond))
		return s.slots.Release, true
	case r.Context().Err() != nil:
		s.log.Infof("GET %s: client left after waiting %v for a stream slot", src.URL.Redacted(),
			time.Since(start).Round(time.Millisecond))
		return nil, false
	}
	s.m.WaitTimeouts.Inc()
	s.log.Warnf("GET %s: no stream slot in %v (%d streams in flight, the cap); forwarding the GET",
		src.URL.Redacted(), s.opt.StreamWait, s.opt.MaxStreams)
	s.Forward(w, r, src)
	return nil, false
}
