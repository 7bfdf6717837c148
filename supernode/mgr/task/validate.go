package task

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/taskid"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
)

// Input limits of a registration or a preheat. A task keeps its URLs and
// headers in memory until task GC and they are shown by the API, so a
// request near the 4 MiB body limit must not be able to park megabytes per
// call; the limits are far above what a real source URL needs.
const (
	MaxURLLen     = 16 << 10 // rawUrl, taskUrl, a preheat url
	MaxHeaders    = 64       // header lines
	MaxHeaderLen  = 8 << 10  // one "Key: Value" line
	MaxHeadersLen = 64 << 10 // all header lines together
	MaxFieldLen   = 1 << 10  // cid, path, md5, identifier and the other names
)

// EchoLimit bounds untrusted text echoed in replies and log lines.
const EchoLimit = 256

// CheckRequest refuses a registration whose fields exceed the limits. Its
// errors name the field and its size, never its content.
func CheckRequest(req types.RegisterRequest) error {
	if err := CheckURL("rawUrl", req.RawURL); err != nil {
		return err
	}
	if err := CheckURL("taskUrl", req.TaskURL); err != nil {
		return err
	}
	if err := CheckFields("cid", req.CID, "path", req.Path, "md5", req.Md5, "identifier", req.Identifier,
		"callSystem", req.CallSystem, "hostName", req.HostName, "version", req.Version, "ip", req.IP,
		"superNodeIp", req.SuperNodeIP, "pattern", req.Pattern, "taskId", req.TaskID,
		"pieceDigest", req.PieceDigest, "digest", req.Digest); err != nil {
		return err
	}
	return CheckHeaderLines(req.Headers)
}

// CheckFields refuses any of the (name, value) pairs whose value is longer
// than MaxFieldLen.
func CheckFields(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if n := len(pairs[i+1]); n > MaxFieldLen {
			return errorf(types.CodeParamError, "%s is %d bytes: the limit is %d", pairs[i], n, MaxFieldLen)
		}
	}
	return nil
}

// CheckURL refuses a URL longer than MaxURLLen.
func CheckURL(field, u string) error {
	if len(u) > MaxURLLen {
		return errorf(types.CodeParamError, "%s is %d bytes: the limit is %d", field, len(u), MaxURLLen)
	}
	return nil
}

// CheckHeaderLines refuses too many or too long "Key: Value" lines, and a
// line the CDN could not send to the source as one field: a name that is
// not a token, a value with CR, LF or NUL (urlutil.CheckHeaderLine). The
// fetch would fail, or the line would reach the origin as several fields.
func CheckHeaderLines(lines []string) error {
	if len(lines) > MaxHeaders {
		return errorf(types.CodeParamError, "%d headers: the limit is %d", len(lines), MaxHeaders)
	}
	total := 0
	for i, l := range lines {
		if len(l) > MaxHeaderLen {
			return errorf(types.CodeParamError, "header %d is %d bytes: the limit is %d", i, len(l), MaxHeaderLen)
		}
		total += len(l)
	}
	for i, l := range lines {
		if err := urlutil.CheckHeaderLine(l); err != nil {
			return errorf(types.CodeParamError, "header %d: %w", i, err)
		}
	}
	if total > MaxHeadersLen {
		return errorf(types.CodeParamError, "headers are %d bytes: the limit is %d", total, MaxHeadersLen)
	}
	return nil
}

// CheckPreheat refuses a preheat whose URL, filter, identifier or headers
// exceed the limits or whose Range header a registration of the same source
// would be refused for (checkRange; sourcePattern is the supernode's CDN
// pattern): the preheat would be accepted, then fail with that message.
func CheckPreheat(req types.PreheatCreateRequest, sourcePattern bool) error {
	if err := CheckURL("url", req.URL); err != nil {
		return err
	}
	if len(req.Filter) > MaxURLLen {
		return errorf(types.CodeParamError, "filter is %d bytes: the limit is %d", len(req.Filter), MaxURLLen)
	}
	if len(req.Identifier) > MaxFieldLen {
		return errorf(types.CodeParamError, "identifier is %d bytes: the limit is %d", len(req.Identifier), MaxFieldLen)
	}
	if err := CheckHeaderMap(req.Headers); err != nil {
		return err
	}
	return checkRange(req.Headers, sourcePattern)
}

// CheckHeaderMap is CheckHeaderLines for a header map (a preheat's).
func CheckHeaderMap(h map[string]string) error {
	if len(h) > MaxHeaders {
		return errorf(types.CodeParamError, "%d headers: the limit is %d", len(h), MaxHeaders)
	}
	lines := make([]string, 0, len(h))
	for k, v := range h {
		lines = append(lines, k+": "+v)
	}
	if err := CheckHeaderLines(lines); err != nil {
		return err
	}
	// The names on their own too: "a:b" passes as the line "a:b: v".
	for k, v := range h {
		if err := urlutil.CheckHeaderField(k, v); err != nil {
			return errorf(types.CodeParamError, "header %q: %w", urlutil.Clip(k, EchoLimit), err)
		}
	}
	return nil
}

// checkRange accepts a source Range header only if it names one range
// ("bytes=s-e", "bytes=s-" or "bytes=-n"): the answer to several ranges is
// a multipart/byteranges body, which would be stored as the file. A range
// no origin serves as asked (e before s, bytes=-0, a bound past int64) is
// refused too: an origin ignores an invalid range and answers the whole
// file, which would be stored as the range, or answers 416.
//
// With sourcePattern (a supernode in the source CDN pattern) a suffix
// range is refused too. Clients re-base a piece's range onto the Range's
// start, which for bytes=-n depends on the source's length; the CDN would
// refuse it only after the task was made, a system error to the client
// instead of this parameter error.
func checkRange(headers map[string]string, sourcePattern bool) error {
	for k, v := range headers {
		if !strings.EqualFold(k, "Range") {
			continue
		}
		br, err := urlutil.ParseByteRange(v)
		switch {
		case errors.Is(err, urlutil.ErrSeveralRanges):
			return errorf(types.CodeParamError, "Range header %q names several ranges: only a single range (bytes=start-end) is supported",
				urlutil.Clip(v, EchoLimit))
		case err != nil:
			return errorf(types.CodeParamError, "Range header %q: want bytes=start-end", urlutil.Clip(v, EchoLimit))
		case sourcePattern && br.Suffix > 0:
			return errorf(types.CodeParamError, "Range header %q is a suffix range, which the source CDN pattern cannot serve "+
				"(clients re-base pieces onto the range's start, unknown before the source's length is): give bytes=start-end or bytes=start-",
				urlutil.Clip(v, EchoLimit))
		}
	}
	return nil
}

// normalizeMd5 checks an expected whole-file md5 and returns it in lower
// case: hex digits compare case-insensitively, so "451D..." and "451d..."
// are one task and one cache, and a value that is not an md5 is refused
// rather than taken for "no check".
func normalizeMd5(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	d, err := digest.ParseHex(digest.MD5, v)
	if err != nil {
		return "", errorf(types.CodeParamError, "md5: %w", err)
	}
	return d.Hex(), nil
}

// registration is a registration request checked and turned into what the
// manager acts on.
type registration struct {
	src     cdn.Source
	ip      string // the client's peer address
	superIP string // the supernode address the client reached
	blake3  bool   // the client asked for BLAKE3 piece digests
}

// checkRegistration validates a registration: sizes, URLs, names, port,
// stream start, address, headers and md5; sourcePattern is the supernode's
// CDN pattern, which limits the Range header (checkRange). Its errors carry
// CodeParamError.
func checkRegistration(p RegisterParams, sourcePattern bool) (registration, error) {
	req := p.Req
	if err := CheckRequest(req); err != nil {
		return registration{}, err
	}
	if _, err := urlutil.Validate(req.RawURL); err != nil {
		return registration{}, errorf(types.CodeParamError, "rawUrl: %w", err)
	}
	switch {
	case req.CID == "":
		return registration{}, errorf(types.CodeParamError, "cid is empty")
	case strings.HasPrefix(req.CID, types.SuperNodeCIDPrefix):
		// The supernode's own CIDs are never a client's: a client
		// registered as one would be taken for the supernode.
		return registration{}, errorf(types.CodeParamError, "cid: the %s prefix is the supernode's", types.SuperNodeCIDPrefix)
	case req.Path == "":
		return registration{}, errorf(types.CodeParamError, "path is empty")
	case req.Port < 0 || req.Port > 65535:
		return registration{}, errorf(types.CodeParamError, "invalid port %d", req.Port)
	}
	ip := req.IP
	if ip == "" {
		ip = p.RemoteIP
	}
	if v := net.ParseIP(ip); v == nil || v.To4() == nil {
		return registration{}, errorf(types.CodeParamError, "invalid ip %q: want IPv4", ip)
	}
	blake3, err := wantsBlake3(req.PieceDigest)
	if err != nil {
		return registration{}, err
	}
	src, err := registrationSource(req, sourcePattern)
	if err != nil {
		return registration{}, err
	}
	return registration{src: src, ip: ip, superIP: superIP(req.SuperNodeIP, p.LocalIP), blake3: blake3}, nil
}

// wantsBlake3 reads the piece digest a client asks for: "" (a Dragonfly
// 1.x dfget) and "md5" ask for nothing beyond pieceMd5, which everyone
// gets; "blake3" (in any case) asks for pieceDigest. Any other name is
// refused, so a client never downloads believing it is checked by an
// algorithm the supernode does not give it.
func wantsBlake3(name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	alg, err := digest.ParseAlgorithm(name)
	if err == nil && alg != digest.MD5 && alg != digest.BLAKE3 {
		err = fmt.Errorf("%s is not a piece digest", alg)
	}
	if err != nil {
		return false, errorf(types.CodeParamError, "pieceDigest: %w: this supernode gives md5 or blake3", err)
	}
	return alg == digest.BLAKE3, nil
}

// FileDigest parses the expected whole-file digest of a registration: ""
// (none) or "sha256:<64 hex>". Anything else is refused, so a malformed
// digest is never taken for "no check".
func FileDigest(v string) (digest.Digest, error) {
	if v == "" {
		return digest.Digest{}, nil
	}
	d, err := digest.Parse(v)
	if err == nil && d.Algorithm() != digest.SHA256 {
		err = fmt.Errorf("%s: only sha256 is checked for a whole file", d.Algorithm())
	}
	if err != nil {
		return digest.Digest{}, errorf(types.CodeParamError, "digest: %w", err)
	}
	return d, nil
}

// registrationSource is the source a registration names, with its task ID.
func registrationSource(req types.RegisterRequest, sourcePattern bool) (cdn.Source, error) {
	headers, err := urlutil.ParseHeaders(req.Headers)
	if err != nil {
		return cdn.Source{}, errorf(types.CodeParamError, "headers: %w", err)
	}
	if err := checkRange(headers, sourcePattern); err != nil {
		return cdn.Source{}, err
	}
	taskURL := req.TaskURL
	if taskURL == "" {
		taskURL = req.RawURL
	}
	if _, err := urlutil.Validate(taskURL); err != nil {
		return cdn.Source{}, errorf(types.CodeParamError, "taskUrl: %w", err)
	}
	md5, err := normalizeMd5(req.Md5)
	if err != nil {
		return cdn.Source{}, err
	}
	want, err := FileDigest(req.Digest)
	if err != nil {
		return cdn.Source{}, err
	}
	src := cdn.Source{
		RawURL: req.RawURL, TaskURL: taskURL, Headers: headers, Md5: md5, Identifier: req.Identifier,
		Insecure: req.Insecure, RootCAs: req.RootCAs, Digest: want,
	}
	if req.Md5 != "" {
		src.Identifier = ""
	}
	src.TaskID = trustOf(src).ID(taskURL, src.Md5, src.Identifier, headers)
	return src, nil
}

// trustOf is how src's TLS is checked, which is part of its task's identity.
func trustOf(src cdn.Source) taskid.Trust {
	return taskid.Trust{Insecure: src.Insecure, RootCAs: src.RootCAs}
}

// superIP is the supernode address a client reached: the one it names, or
// the local address of its connection, without a port.
func superIP(named, local string) string {
	ip := named
	if ip == "" {
		ip = local
	}
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	return ip
}
