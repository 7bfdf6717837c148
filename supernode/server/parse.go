package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

// maxBodySize caps request bodies (root CAs make registrations the largest).
const maxBodySize = 4 << 20

// decodeRegister parses a registration body: JSON, or a form when the
// content type is exactly application/x-www-form-urlencoded (as v1).
func decodeRegister(contentType string, body []byte) (types.RegisterRequest, error) {
	var req types.RegisterRequest
	if contentType == "application/x-www-form-urlencoded" {
		return decodeRegisterForm(string(body))
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("invalid register body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, errors.New("invalid register body: trailing data after the JSON object")
	}
	return req, nil
}

func decodeRegisterForm(body string) (types.RegisterRequest, error) {
	var req types.RegisterRequest
	v, err := url.ParseQuery(body)
	if err != nil {
		return req, fmt.Errorf("invalid register form: %w", err)
	}
	get := func(k string) string {
		for key, vals := range v {
			if strings.EqualFold(key, k) && len(vals) > 0 {
				return vals[0]
			}
		}
		return ""
	}
	intOf := func(k string) (int, error) {
		s := get(k)
		if s == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("invalid register form: %s: %w", k, err)
		}
		return n, nil
	}
	boolOf := func(k string) bool { b, _ := strconv.ParseBool(get(k)); return b }
	req.SuperNodeIP, req.RawURL, req.TaskURL, req.CID = get("superNodeIp"), get("rawUrl"), get("taskUrl"), get("cid")
	req.IP, req.HostName, req.Path, req.Version = get("ip"), get("hostName"), get("path"), get("version")
	req.Md5, req.Identifier, req.CallSystem, req.Pattern = get("md5"), get("identifier"), get("callSystem"), get("pattern")
	req.Dfdaemon, req.Insecure, req.StreamMode = boolOf("dfdaemon"), boolOf("insecure"), boolOf("streamMode")
	req.PieceDigest, req.Digest = get("pieceDigest"), get("digest")
	for key, vals := range v {
		if strings.EqualFold(key, "headers") {
			req.Headers = append(req.Headers, vals...)
		}
	}
	if req.Port, err = intOf("port"); err != nil {
		return req, err
	}
	if req.WindowSize, err = intOf("windowSize"); err != nil {
		return req, err
	}
	return req, nil
}

// intValue reads an integer query parameter; missing is an error.
func intValue(key, s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("%s is empty", key)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q", key, s)
	}
	return n, nil
}

// required returns the named query parameters, failing on the first empty one.
func required(q url.Values, keys ...string) ([]string, error) {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = q.Get(k)
		if out[i] == "" {
			return nil, fmt.Errorf("%s is empty", k)
		}
	}
	return out, nil
}

// pullQuery is the parsed query of GET /peer/task.
type pullQuery struct {
	TaskID, SrcCID, DstCID, Range string
	Status, Result                int
}

// parsePullQuery reads /peer/task's query. result and range are only
// required for a running status, as dfget sends them.
func parsePullQuery(raw string) (pullQuery, error) {
	keys := [...]string{"taskId", "srcCid", "dstCid", "range", "status", "result"}
	var v [len(keys)]string
	if !scanQuery(raw, keys[:], v[:]) {
		return parsePullValues(raw)
	}
	return pullFrom(v[0], v[1], v[2], v[3], v[4], v[5])
}

// parsePullValues is parsePullQuery through url.ParseQuery: the reference
// scanQuery follows, and the path for queries it leaves to it (errors).
func parsePullValues(raw string) (pullQuery, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return pullQuery{}, fmt.Errorf("invalid query: %w", err)
	}
	return pullFrom(q.Get("taskId"), q.Get("srcCid"), q.Get("dstCid"), q.Get("range"), q.Get("status"), q.Get("result"))
}

func pullFrom(taskID, srcCID, dstCID, rng, status, result string) (pullQuery, error) {
	p := pullQuery{TaskID: taskID, SrcCID: srcCID, DstCID: dstCID, Range: rng}
	var err error
	switch {
	case taskID == "":
		return p, errors.New("taskId is empty")
	case srcCID == "":
		return p, errors.New("srcCid is empty")
	}
	if p.Status, err = intValue("status", status); err != nil {
		return p, err
	}
	if result != "" {
		if p.Result, err = intValue("result", result); err != nil {
			return p, err
		}
	}
	if p.Status == types.TaskStatusRunning && p.Range == "" {
		return p, errors.New("range is empty")
	}
	return p, nil
}

// pieceQuery is the query of /peer/piece/suc and /peer/piece/stream.
// NoShare is share=0 on /peer/piece/suc (Damselfly): the client has the
// piece but serves it to no one (a stream told noShare).
type pieceQuery struct {
	TaskID, CID, DstCID, Range string
	NoShare                    bool
}

func parsePieceQuery(raw string) (pieceQuery, error) {
	keys := [...]string{"taskId", "cid", "pieceRange", "dstCid", "share"}
	var v [len(keys)]string
	if !scanQuery(raw, keys[:], v[:]) {
		return parsePieceValues(raw)
	}
	return pieceFrom(v[0], v[1], v[2], v[3], v[4])
}

// parsePieceValues is parsePieceQuery through url.ParseQuery (see
// parsePullValues).
func parsePieceValues(raw string) (pieceQuery, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return pieceQuery{}, fmt.Errorf("invalid query: %w", err)
	}
	return pieceFrom(q.Get("taskId"), q.Get("cid"), q.Get("pieceRange"), q.Get("dstCid"), q.Get("share"))
}

func pieceFrom(taskID, cid, rng, dstCID, share string) (pieceQuery, error) {
	for _, kv := range [...][2]string{{"taskId", taskID}, {"cid", cid}, {"pieceRange", rng}} {
		if kv[1] == "" {
			return pieceQuery{}, fmt.Errorf("%s is empty", kv[0])
		}
	}
	if share != "" && share != "0" && share != "1" {
		return pieceQuery{}, fmt.Errorf("share %q: want 0 or 1", share)
	}
	return pieceQuery{TaskID: taskID, CID: cid, Range: rng, DstCID: dstCID, NoShare: share == "0"}, nil
}

// scanQuery sets vals[i] to the first value of keys[i] in the raw query,
// as url.ParseQuery followed by Get would, without building the map (the
// hot routes run it thousands of times a second). It returns false, and
// the caller parses with url.ParseQuery instead, for anything it does not
// handle the same way: escaped keys, errors (bad escapes, semicolons) and
// very long queries.
func scanQuery(raw string, keys, vals []string) bool {
	if len(raw) > maxScanQuery {
		return false
	}
	var seen uint64
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		if strings.IndexByte(pair, ';') >= 0 {
			return false
		}
		k, v, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			return false
		}
		i := slices.Index(keys, k)
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return false
			}
			v = u
		}
		if i >= 0 && seen&(1<<i) == 0 {
			seen |= 1 << i
			vals[i] = v
		}
	}
	return true
}

// maxScanQuery keeps scanQuery far below url.ParseQuery's parameter
// limit, whose error it leaves to it.
const maxScanQuery = 8 << 10

// pieceErrorQuery reads GET /peer/piece/error.
func parsePieceErrorQuery(raw string) (types.PieceErrorRequest, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return types.PieceErrorRequest{}, fmt.Errorf("invalid query: %w", err)
	}
	v, err := required(q, "taskId", "srcCid", "dstCid", "errorType")
	if err != nil {
		return types.PieceErrorRequest{}, err
	}
	// Reports are queued: each field is bounded (a query may be 1 MiB).
	for _, k := range [...]string{"taskId", "srcCid", "dstCid", "errorType", "dstIp", "range", "realMd5", "expectedMd5"} {
		if err := task.CheckFields(k, q.Get(k)); err != nil {
			return types.PieceErrorRequest{}, err
		}
	}
	return types.PieceErrorRequest{
		TaskID: v[0], SrcCid: v[1], DstIP: q.Get("dstIp"), ErrorType: v[3], Range: q.Get("range"),
		RealMd5: q.Get("realMd5"), ExpectedMd5: q.Get("expectedMd5"), DstPid: v[2],
	}, nil
}
