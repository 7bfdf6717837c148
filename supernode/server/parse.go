package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/damselfly-p2p/damselfly/apis/types"
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

// queryInt reads an integer query parameter; missing is an error.
func queryInt(q url.Values, key string) (int, error) {
	s := q.Get(key)
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
	q, err := url.ParseQuery(raw)
	if err != nil {
		return pullQuery{}, fmt.Errorf("invalid query: %w", err)
	}
	var p pullQuery
	v, err := required(q, "taskId", "srcCid")
	if err != nil {
		return p, err
	}
	p.TaskID, p.SrcCID, p.DstCID, p.Range = v[0], v[1], q.Get("dstCid"), q.Get("range")
	if p.Status, err = queryInt(q, "status"); err != nil {
		return p, err
	}
	if q.Get("result") != "" {
		if p.Result, err = queryInt(q, "result"); err != nil {
			return p, err
		}
	}
	if p.Status == types.TaskStatusRunning && p.Range == "" {
		return p, errors.New("range is empty")
	}
	return p, nil
}

// pieceQuery is the query of /peer/piece/suc and /peer/piece/stream.
type pieceQuery struct {
	TaskID, CID, DstCID, Range string
}

func parsePieceQuery(raw string) (pieceQuery, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return pieceQuery{}, fmt.Errorf("invalid query: %w", err)
	}
	v, err := required(q, "taskId", "cid", "pieceRange")
	if err != nil {
		return pieceQuery{}, err
	}
	return pieceQuery{TaskID: v[0], CID: v[1], Range: v[2], DstCID: q.Get("dstCid")}, nil
}

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
	return types.PieceErrorRequest{
		TaskID: v[0], SrcCid: v[1], DstIP: q.Get("dstIp"), ErrorType: v[3], Range: q.Get("range"),
		RealMd5: q.Get("realMd5"), ExpectedMd5: q.Get("expectedMd5"), DstPid: v[2],
	}, nil
}
