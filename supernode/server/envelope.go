package server

import (
	"encoding/json"
	"net/http"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// writeJSON writes v as JSON with HTML escaping off, as v1 does.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away; nothing to do
}

// writeResult writes the legacy envelope with HTTP 200.
func writeResult(w http.ResponseWriter, code int, msg string, data any) {
	writeJSON(w, http.StatusOK, types.ResultInfo{Code: code, Msg: msg, Data: data})
}

// writeError writes the REST error body {"code","message"}.
func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, types.ErrorResponse{Code: code, Message: msg})
}
