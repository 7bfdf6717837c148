package server

import (
	"fmt"
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

// The map-free query scan of the hot routes answers exactly as the
// url.ParseQuery path does, errors included.
func FuzzScanQueryMatchesParseQuery(f *testing.F) {
	f.Add("taskId=t&srcCid=c&status=701&result=501&range=0-9&dstCid=d")
	f.Add("taskId=t&taskId=u&srcCid=c+d&status=%37%30%30&&result=")
	f.Add("taskId=t;x&srcCid=c&status=700")
	f.Add("task%49d=t&srcCid=c&status=700&x=%zz")
	f.Add("taskId=t&cid=c&dstCid=d&pieceRange=0-4194303&cid=e")
	f.Add("taskId=t&cid=c&pieceRange=0-9&share=0&share=1")
	f.Fuzz(func(t *testing.T, q string) {
		p1, err1 := parsePullQuery(q)
		p2, err2 := parsePullValues(q)
		if p1 != p2 || fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("pull %q: scan %+v %v, ParseQuery %+v %v", q, p1, err1, p2, err2)
		}
		r1, err1 := parsePieceQuery(q)
		r2, err2 := parsePieceValues(q)
		if r1 != r2 || fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("piece %q: scan %+v %v, ParseQuery %+v %v", q, r1, err1, r2, err2)
		}
	})
}
