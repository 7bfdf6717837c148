package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// jsonWriter writes JSON answers whole, with a Content-Length (never
// chunked), from pooled buffers: the hot routes answer thousands of times
// a second. The zero value works.
type jsonWriter struct {
	bufs sync.Pool
}

// maxPooled keeps a rare huge answer's buffer (a long list) out of the pool.
const maxPooled = 64 << 10

// write writes v as JSON with HTML escaping off, as v1 does (the encoder's
// trailing newline included). A nil j allocates a buffer.
func (j *jsonWriter) write(w http.ResponseWriter, status int, v any) {
	var buf *bytes.Buffer
	if j != nil {
		buf, _ = j.bufs.Get().(*bytes.Buffer)
	}
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	h := w.Header()
	if err := enc.Encode(v); err != nil {
		// Only a handler bug gets here (an unencodable value); v1 would
		// have sent a truncated body.
		buf.Reset()
		status = http.StatusInternalServerError
		_ = json.NewEncoder(buf).Encode(types.ErrorResponse{Code: types.CodeSystemError, Message: "encoding the answer: " + err.Error()})
	}
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(buf.Len())}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes()) // the client went away; nothing to do
	if j != nil && buf.Cap() <= maxPooled {
		buf.Reset()
		j.bufs.Put(buf)
	}
}

// writeJSON writes v as JSON (routes off the hot path).
func writeJSON(w http.ResponseWriter, status int, v any) {
	(*jsonWriter)(nil).write(w, status, v)
}

// writeResult writes the legacy envelope with HTTP 200.
func writeResult(w http.ResponseWriter, code int, msg string, data any) {
	writeJSON(w, http.StatusOK, types.ResultInfo{Code: code, Msg: shown(msg), Data: data})
}

// result writes the legacy envelope with HTTP 200 from a pooled buffer.
func (a *api) result(w http.ResponseWriter, code int, msg string, data any) {
	a.json.write(w, http.StatusOK, types.ResultInfo{Code: code, Msg: shown(msg), Data: data})
}

// writeError writes the REST error body {"code","message"}.
func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, types.ErrorResponse{Code: code, Message: shown(msg)})
}

// maxShown bounds an error message or a client-given value in a reply, a
// log line or a metric label: messages quote client input (IDs, URLs,
// header values), and one request must not make a megabyte reply or line.
const maxShown = 1 << 10

// shown is text fit to show: URL credentials masked, length bounded.
func shown(s string) string {
	return urlutil.Clip(urlutil.Redact(s), maxShown)
}
