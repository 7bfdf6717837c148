package server

import (
	"strings"
	"testing"
)

func FuzzDecodeRegister(f *testing.F) {
	f.Add("application/json", []byte(`{"rawUrl":"http://o/f","cid":"c","port":15001,"path":"/p","headers":["a: b"],"streamMode":true,"windowSize":3}`))
	f.Add("application/x-www-form-urlencoded", []byte("rawUrl=http%3A%2F%2Fo&cid=c&port=1&headers=a%3Ab&windowSize=x"))
	f.Add("", []byte(`{"rootCAs":["AAAA"]}`))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req, err := decodeRegister(ct, body)
		if err == nil && ct != "application/x-www-form-urlencoded" && strings.TrimSpace(string(body)) == "" {
			t.Fatalf("empty body decoded: %+v", req)
		}
	})
}

func FuzzParsePullQuery(f *testing.F) {
	f.Add("taskId=t&srcCid=c&status=701&result=501&range=0-9&dstCid=d")
	f.Add("taskId=t&srcCid=c&status=700&result=502")
	f.Add("taskId=%zz&status=")
	f.Fuzz(func(t *testing.T, q string) {
		p, err := parsePullQuery(q)
		if err == nil && (p.TaskID == "" || p.SrcCID == "" || (p.Status == 701 && p.Range == "")) {
			t.Fatalf("accepted incomplete query %q: %+v", q, p)
		}
	})
}

func FuzzParsePieceQuery(f *testing.F) {
	f.Add("taskId=t&cid=c&dstCid=d&pieceRange=0-4194303")
	f.Add("taskId=t&cid=c")
	f.Fuzz(func(t *testing.T, q string) {
		p, err := parsePieceQuery(q)
		if err == nil && (p.TaskID == "" || p.CID == "" || p.Range == "") {
			t.Fatalf("accepted incomplete query %q: %+v", q, p)
		}
		if r, err := parsePieceErrorQuery(q); err == nil && (r.ErrorType == "" || r.TaskID == "" || r.SrcCid == "" || r.DstPid == "") {
			t.Fatalf("incomplete piece error query accepted: %q -> %+v", q, r)
		}
	})
}

func FuzzSingleRange(f *testing.F) {
	f.Add("bytes=0-9")
	f.Add("bytes=5-")
	f.Add("bytes=0-1,4-5")
	f.Add("bytes=-9223372036854775808-1")
	f.Fuzz(func(t *testing.T, h string) {
		s, e, ok := singleRange(h)
		if ok && (s < 0 || e < s) {
			t.Fatalf("%q -> %d-%d", h, s, e)
		}
	})
}
