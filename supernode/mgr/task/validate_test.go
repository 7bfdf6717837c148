package task

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
)

func TestCheckRange(t *testing.T) {
	for v, ok := range map[string]bool{
		"bytes=0-9": true, "bytes=5-": true, "bytes=-100": true, "Bytes = 0-9": true,
		"bytes=0-9,20-29": false, "bytes=0-9, 20-29": false, "bytes=-": false, "bytes=x-1": false,
		"0-9": false, "items=0-9": false, "bytes=0-9,bytes=20-29": false,
		"bytes= 5-9": true, "bytes=9223372036854775807-": true, "": false, "bytes=+5-9": false, "bytes=5 - 9": false,
		"bytes=-0": false, "bytes=5-4": false, "bytes=99999999999999999999-": false, "bytes=0-9223372036854775808": false,
	} {
		if err := checkRange(map[string]string{"Range": v}, false); (err == nil) != ok {
			t.Errorf("%q: %v, want ok=%v", v, err, ok)
		}
	}
	// A preheat's header names are not canonical.
	if err := checkRange(map[string]string{"range": "bytes=0-1,3-4"}, false); CodeOf(err) != types.CodeParamError ||
		!strings.Contains(err.Error(), "names several ranges") {
		t.Errorf("lower-case multi-range: %v, want a 501 naming several ranges", err)
	}
	if checkRange(map[string]string{"X": "y"}, false) != nil {
		t.Error("no Range refused")
	}
}

// Errors name the field and its size, never the oversized content.
func TestLimitErrorsDoNotEcho(t *testing.T) {
	huge := "http://o/?" + strings.Repeat("q", 2<<20)
	for _, err := range []error{
		CheckRequest(types.RegisterRequest{RawURL: huge}),
		CheckRequest(types.RegisterRequest{RawURL: "http://o/", Identifier: huge}),
		CheckRequest(types.RegisterRequest{RawURL: "http://o/", Headers: []string{"X: " + huge}}),
		CheckPreheat(types.PreheatCreateRequest{URL: huge}, false),
		CheckPreheat(types.PreheatCreateRequest{URL: "http://o/", Headers: map[string]string{"X": huge}}, false),
		CheckPreheat(types.PreheatCreateRequest{URL: "http://o/", Headers: map[string]string{"Range": "bytes=0-1," + huge}}, false),
	} {
		if err == nil || CodeOf(err) != types.CodeParamError || len(err.Error()) > 512 {
			t.Errorf("want a short 501 error, got code %d, %d bytes: %.200v", CodeOf(err), len(errString(err)), err)
		}
	}
	if err := CheckRequest(types.RegisterRequest{RawURL: "http://o/" + strings.Repeat("a", MaxURLLen-9)}); err != nil {
		t.Errorf("a URL at the limit refused: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestInfoMasksCredentials(t *testing.T) {
	d := newDeps(t)
	d.m.tasks["x"] = &Task{id: "x", rawURL: "http://user:s3cret@o/f?a=1", taskURL: "http://user:s3cret@o/f",
		headers: map[string]string{"Authorization": "Basic czNjcmV0"}, httpLen: -1, changed: make(chan struct{})}
	info, err := d.m.Info("x")
	if err != nil || info.RawURL != "http://user:xxxxx@o/f?a=1" || info.TaskURL != "http://user:xxxxx@o/f" ||
		info.Headers["Authorization"] != "xxxxx" {
		t.Fatalf("info %+v %v", info, err)
	}
	if d.m.tasks["x"].rawURL != "http://user:s3cret@o/f?a=1" {
		t.Fatal("the real URL must stay in memory for the CDN")
	}
	h := maskedHeaders(map[string]string{"Authorization": "Bearer x", "X-Auth-Token": "t", "Cookie": "c", "Accept": "a"})
	if h["Authorization"] != "xxxxx" || h["X-Auth-Token"] != "xxxxx" || h["Cookie"] != "xxxxx" || h["Accept"] != "a" {
		t.Fatalf("masked headers %v", h)
	}
}

// In the source CDN pattern a suffix Range is refused with the other Range
// refusals (501, before any task or CDN exists), not by the CDN once the
// task is made (a 500 "start cdn" to the client). The mocked CDN answers
// as the real one does, so without the check the refusal is the late one.
func TestSourcePatternRefusesSuffixRangeAtValidation(t *testing.T) {
	d := newDeps(t)
	d.m.cfg.SourcePattern = true
	d.prog.EXPECT().InitTask(gomock.Any()).AnyTimes()
	d.cdn.EXPECT().StartSource(gomock.Any(), gomock.Any()).DoAndReturn(func(src cdn.Source, _ func(cdn.Result)) (cdn.Started, error) {
		if strings.HasPrefix(src.Headers["Range"], "bytes=-") {
			return cdn.Started{}, errors.New("the source pattern cannot serve a suffix range")
		}
		return cdn.Started{HTTPFileLength: 100, PieceSize: piece.ComputeSize(100)}, nil
	}).AnyTimes()
	r := validReq()
	r.Headers = []string{"Range: bytes=-100"}
	_, err := d.m.Register(RegisterParams{Req: r})
	if CodeOf(err) != types.CodeParamError || !strings.Contains(errString(err), "suffix range") {
		t.Errorf("register: %v (code %d), want 501 naming the suffix range", err, CodeOf(err))
	}
	_, err = d.m.Ensure(cdn.Source{RawURL: "http://o/f", Headers: map[string]string{"Range": "bytes=-100"}})
	if CodeOf(err) != types.CodeParamError || !strings.Contains(errString(err), "suffix range") {
		t.Errorf("preheat: %v (code %d), want 501 naming the suffix range", err, CodeOf(err))
	}
	if n := len(d.m.tasks); n != 0 {
		t.Errorf("%d tasks made for refused requests", n)
	}
	// A range with a start is the source pattern's to serve.
	if _, err := d.m.Ensure(cdn.Source{RawURL: "http://o/f", Headers: map[string]string{"Range": "bytes=100-"}}); err != nil {
		t.Errorf("bytes=100- refused: %v", err)
	}
}

// The local pattern caches what the source answers to a suffix Range: it
// is accepted there.
func TestLocalPatternTakesSuffixRange(t *testing.T) {
	d := newDeps(t)
	d.prog.EXPECT().InitTask(gomock.Any())
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).Return(cdn.Started{HTTPFileLength: 100, PieceSize: piece.ComputeSize(100)}, nil)
	if _, err := d.m.Ensure(cdn.Source{RawURL: "http://o/f", Headers: map[string]string{"Range": "bytes=-100"}}); err != nil {
		t.Errorf("bytes=-100 refused: %v", err)
	}
}

// A registration's header lines go to the origin with the CDN's request: a
// name that is not a token or a value with CR, LF or NUL is refused with
// 501 when the registration is checked, before any task or CDN (the mocks
// expect no call), not when the CDN builds its request. So are a
// preheat's header map entries.
func TestHeaderFieldsRefused(t *testing.T) {
	d := newDeps(t)
	for _, h := range []string{"Bad Name:x", ":x", "X:\r\ny", "X: a\nb", "X: a\x00", "nocolon", "X(A): b", "X\xc3\xa9: b", "a b: c"} {
		r := validReq()
		r.Headers = []string{"X-Good: 1", h}
		if err := CheckRequest(r); CodeOf(err) != types.CodeParamError {
			t.Errorf("CheckRequest, header %q: %v (code %d), want 501", h, err, CodeOf(err))
		}
		if _, err := d.m.Register(RegisterParams{Req: r}); CodeOf(err) != types.CodeParamError {
			t.Errorf("Register, header %q: %v (code %d), want 501", h, err, CodeOf(err))
		}
	}
	for _, h := range []string{"X-A: b", " X-A :  b c\t", "Authorization: Bearer a=b:c", "X-Empty:", "X-Utf8: caf\xc3\xa9", "!#$%&'*+-.^_`|~09az: v"} {
		r := validReq()
		r.Headers = []string{h}
		if err := CheckRequest(r); err != nil {
			t.Errorf("header %q refused: %v", h, err)
		}
	}
	for k, v := range map[string]string{"Bad Name": "x", "a:b": "v", "": "v", "X": "a\r\nb", "Y": "a\x00"} {
		err := CheckPreheat(types.PreheatCreateRequest{URL: "http://o/f", Headers: map[string]string{"X-Good": "1", k: v}}, false)
		if CodeOf(err) != types.CodeParamError {
			t.Errorf("preheat header %q: %q: %v, want refused", k, v, err)
		}
	}
	if err := CheckPreheat(types.PreheatCreateRequest{URL: "http://o/f", Headers: map[string]string{"x-a": " b\t", "Range": "bytes=0-9"}}, false); err != nil {
		t.Errorf("good preheat headers refused: %v", err)
	}
}
