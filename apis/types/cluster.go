package types

import "time"

// ClusterFetchPath is the route a supernode asks another member of its
// cluster (the task's home) for a task's file on.
const ClusterFetchPath = "/api/v1/cluster/fetch"

// TaskInfoPath is the route of a task's info (GET, the task's ID
// appended, path-escaped): a member asks the task's home for the length
// the home gave it.
const TaskInfoPath = "/api/v1/tasks/"

// CodeClusterFillWaits is the code in the JSON error body of a cluster
// fetch's 409 from a home whose own fill of the task waits for a fill slot
// (--cdn-fill-limit): the asker gives its own slot back, waits for the
// home's fill to start (TaskInfo.FillWaiting turns false) and asks again.
// Any other 409 (code 409: the home reads the task from a member) means
// "read the origin", as every 409 from a home older than this code does.
const CodeClusterFillWaits = 4091

// ClusterFetchRequest is the body of POST /api/v1/cluster/fetch: what
// identifies the task and how to read its source, as a registration gives
// it. The answer is the file as a stream of pieces with their digests (see
// supernode/mgr/cdn), which the asker checks before it caches a byte.
type ClusterFetchRequest struct {
	TaskID     string            `json:"taskId"`
	RawURL     string            `json:"rawUrl"`
	TaskURL    string            `json:"taskUrl,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Md5        string            `json:"md5,omitempty"`
	Identifier string            `json:"identifier,omitempty"`
	// Digest is the expected sha256 of the whole file, as a registration's
	// digest: the home's fill checks it too.
	Digest   string   `json:"digest,omitempty"`
	Insecure bool     `json:"insecure,omitempty"`
	RootCAs  [][]byte `json:"rootCAs,omitempty"`
	// From is the asking member's ID, for the home's logs.
	From string `json:"from,omitempty"`
	// KeepAliveMillis, when set, asks the home for a keep-alive frame
	// whenever it has sent nothing for that long (it waits for its origin
	// to deliver the next piece): the asker drops a home that stays silent
	// for its stall bound. A home that predates the field ignores it and
	// sends none, and an asker that does not set it never gets one, so
	// members of two versions still understand each other's frames.
	KeepAliveMillis int64 `json:"keepAliveMs,omitempty"`
}

// Response headers of a cluster fetch: the task as the home has it.
const (
	ClusterHeaderTaskID     = "X-Damselfly-Task-Id"
	ClusterHeaderFileLength = "X-Damselfly-File-Length" // the source's length, -1 when unknown
	ClusterHeaderPieceSize  = "X-Damselfly-Piece-Size"
	// ClusterHeaderLastModifiedStrong is "1" when the Last-Modified sent
	// with the file is a strong validator (the origin's Date was at least
	// a second later); the asker, which never sees that Date, resumes from
	// the origin with the date only then. A home sends no weak date.
	ClusterHeaderLastModifiedStrong = "X-Damselfly-Last-Modified-Strong"
)

// ClusterInfo is the reply of GET /api/v1/cluster: the members as this
// supernode sees them.
type ClusterInfo struct {
	Self    string          `json:"self"`
	Members []ClusterMember `json:"members"`
}

// ClusterMember is one member of a supernode cluster. ID is "ip:port" of
// its API, the key rendezvous hashing orders members by.
type ClusterMember struct {
	ID       string    `json:"id"`
	Host     string    `json:"host"` // the name or address it was listed as
	Weight   int       `json:"weight"`
	Self     bool      `json:"self"`
	Alive    bool      `json:"alive"`
	LastSeen time.Time `json:"lastSeen,omitzero"`
	LastErr  string    `json:"lastError,omitempty"`
}
