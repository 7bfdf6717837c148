package types

import "time"

// ResultInfo is the envelope of the legacy dfget protocol. HTTP status is 200
// and the outcome is in Code.
type ResultInfo struct {
	Code int    `json:"code,omitempty"`
	Msg  string `json:"msg,omitempty"`
	Data any    `json:"data,omitempty"`
}

// ErrorResponse is the body of a non-200 reply (REST routes and register
// failures): {"code":500,"message":"..."}.
type ErrorResponse struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// RegisterRequest is the body of POST /peer/registry, with the keys a
// Dragonfly 1.x dfget sends. StreamMode, WindowSize and StartPiece are
// Damselfly's stream-mode extension; a 1.x supernode ignores them.
// StartPiece was where a stream resumed when it moved to another
// supernode. Our supernode ignores it and our dfget no longer sends it: a
// resumed stream is offered the pieces it wrote, whose digests prove the
// new supernode's copy the version it wrote.
// PieceDigest is Damselfly's digest negotiation: the algorithm ("blake3")
// the client wants each piece's digest in, besides pieceMd5. A supernode
// that knows it answers with PieceInfo.PieceDigest; a 1.x one ignores it.
// Digest is the expected digest of the whole file ("sha256:<64 hex>"), as
// --md5 is for md5: a supernode that knows it fails the task when the source's
// bytes differ, so a wrong file is never cached as good.
type RegisterRequest struct {
	SuperNodeIP string   `json:"superNodeIp,omitempty"`
	RawURL      string   `json:"rawUrl,omitempty"`
	TaskURL     string   `json:"taskUrl,omitempty"`
	CID         string   `json:"cid,omitempty"`
	IP          string   `json:"ip,omitempty"`
	HostName    string   `json:"hostName,omitempty"`
	Port        int      `json:"port"`
	Path        string   `json:"path,omitempty"`
	Version     string   `json:"version,omitempty"`
	Md5         string   `json:"md5,omitempty"`
	Identifier  string   `json:"identifier,omitempty"`
	Digest      string   `json:"digest,omitempty"`
	CallSystem  string   `json:"callSystem,omitempty"`
	Headers     []string `json:"headers,omitempty"`
	Dfdaemon    bool     `json:"dfdaemon,omitempty"`
	Insecure    bool     `json:"insecure,omitempty"`
	RootCAs     [][]byte `json:"rootCAs,omitempty"`
	TaskID      string   `json:"taskId,omitempty"`
	FileLength  int64    `json:"fileLength,omitempty"`
	AsSeed      bool     `json:"asSeed,omitempty"`
	Pattern     string   `json:"pattern,omitempty"`
	StreamMode  bool     `json:"streamMode,omitempty"`
	WindowSize  int      `json:"windowSize,omitempty"`
	StartPiece  int      `json:"startPiece,omitempty"`
	PieceDigest string   `json:"pieceDigest,omitempty"`
}

// RegisterResponseData is ResultInfo.Data of a successful register.
// FileLength is the source length (-1 if unknown); PieceSize includes the
// 5-byte piece wrapper.
type RegisterResponseData struct {
	TaskID     string `json:"taskId"`
	FileLength int64  `json:"fileLength"`
	PieceSize  int32  `json:"pieceSize"`
	CDNSource  string `json:"cdnSource"`
	AsSeed     bool   `json:"asSeed"`
	SeedTaskID string `json:"seedTaskID"`
}

// PieceInfo is one element of ResultInfo.Data of a 601 /peer/task reply: a
// piece to fetch and the holder to fetch it from. PieceMd5 is
// "<md5 hex>:<length>" and PieceDigest (only for a client that asked for
// it at registration) "<algorithm>:<hex>", e.g. "blake3:<64 hex digits>".
// Both cover the same bytes: the piece exactly as a holder serves it for
// Range, i.e. the wrapped piece (header, content, tail) in the cdn
// pattern and the plain source range in the source pattern.
type PieceInfo struct {
	Range     string `json:"range"`
	PieceNum  int    `json:"pieceNum"`
	PieceSize int32  `json:"pieceSize"`
	PieceMd5  string `json:"pieceMd5"`
	CID       string `json:"cid"`
	PeerIP    string `json:"peerIp"`
	PeerPort  int    `json:"peerPort"`
	Path      string `json:"path"`
	DownLink  int    `json:"downLink"`
	// PieceDigest is Damselfly's negotiated digest; see above.
	PieceDigest string `json:"pieceDigest,omitempty"`
	// NoShare (Damselfly, only to a streaming client that negotiated
	// PieceDigest) says that no other client of the task lacks pieces, so
	// none would fetch this one from the client's stream cache: the client
	// keeps it out of the cache and reports it with /peer/piece/suc?share=0,
	// which records it without making the client a holder.
	NoShare bool `json:"noShare,omitempty"`
}

// FinishData is ResultInfo.Data of a 600 /peer/task reply. FileLength is the
// wrapped (CDN) length, not the source length.
type FinishData struct {
	Md5        string `json:"md5"`
	FileLength int64  `json:"fileLength"`
}

// TaskMetricsRequest is the body of POST /task/metrics.
type TaskMetricsRequest struct {
	IP               string  `json:"IP,omitempty"`
	Port             int     `json:"port,omitempty"`
	TaskID           string  `json:"taskId,omitempty"`
	CID              string  `json:"cID,omitempty"`
	CallSystem       string  `json:"callSystem,omitempty"`
	Duration         float64 `json:"duration,omitempty"`
	Success          bool    `json:"success"`
	BacksourceReason string  `json:"backsourceReason,omitempty"`
	FileLength       int64   `json:"fileLength,omitempty"`
}

// TaskInfo is the reply of GET /api/v1/tasks/{id}. FileLength is the wrapped
// CDN length, HTTPFileLength the source length.
type TaskInfo struct {
	ID             string            `json:"ID"`
	FileLength     int64             `json:"fileLength"`
	HTTPFileLength int64             `json:"httpFileLength"`
	PieceSize      int32             `json:"pieceSize"`
	PieceTotal     int32             `json:"pieceTotal"`
	CdnStatus      string            `json:"cdnStatus"`
	RawURL         string            `json:"rawURL"`
	TaskURL        string            `json:"taskURL"`
	Md5            string            `json:"md5,omitempty"`
	RealMd5        string            `json:"realMd5,omitempty"`
	Identifier     string            `json:"identifier,omitempty"`
	Headers        map[string]string `json:"headers,omitempty"`
	AsSeed         bool              `json:"asSeed"`
	// FillWaiting (Damselfly) marks a RUNNING task whose CDN fill has not
	// started: it waits for a fill slot (--cdn-fill-limit) or, on a
	// cluster member, for its home's fill. A member waiting for this
	// supernode's fill asks for the file once it is false.
	FillWaiting bool `json:"fillWaiting,omitempty"`
}

// PeerCreateRequest is the body of POST /api/v1/peers.
type PeerCreateRequest struct {
	IP       string `json:"IP"`
	HostName string `json:"hostName"`
	Port     int    `json:"port"`
	Version  string `json:"version,omitempty"`
}

// PeerCreateResponse is the 201 reply of POST /api/v1/peers.
type PeerCreateResponse struct {
	ID string `json:"ID"`
}

// PeerInfo is one peer as listed by /api/v1/peers.
type PeerInfo struct {
	ID       string    `json:"ID"`
	IP       string    `json:"IP"`
	HostName string    `json:"hostName"`
	Port     int       `json:"port"`
	Version  string    `json:"version,omitempty"`
	Created  time.Time `json:"created"`
}

// PieceErrorRequest is the JSON body of the /api/v1 piece-error route.
type PieceErrorRequest struct {
	DstIP       string `json:"dstIP,omitempty"`
	DstPid      string `json:"dstPid"`
	ErrorType   string `json:"errorType,omitempty"`
	ExpectedMd5 string `json:"expectedMd5,omitempty"`
	Range       string `json:"range,omitempty"`
	RealMd5     string `json:"realMd5,omitempty"`
	SrcCid      string `json:"srcCid,omitempty"`
	TaskID      string `json:"taskId,omitempty"`
}

// PreheatCreateRequest is the body of POST /preheats.
type PreheatCreateRequest struct {
	Type       string            `json:"type"`
	URL        string            `json:"url"`
	Filter     string            `json:"filter,omitempty"`
	Identifier string            `json:"identifier,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
}

// PreheatCreateResponse is the 201 reply of POST /preheats.
type PreheatCreateResponse struct {
	ID string `json:"ID"`
}

// PreheatInfo is the reply of GET /preheats/{id}.
type PreheatInfo struct {
	ID         string    `json:"ID"`
	Status     string    `json:"status"`
	StartTime  time.Time `json:"startTime"`
	FinishTime time.Time `json:"finishTime"`
	ErrorMsg   string    `json:"errorMsg,omitempty"`
}

// PreheatTask is one element of GET /preheats: v1 encoded its internal
// struct, so the keys are the Go field names and the times are Unix
// milliseconds (0 while unfinished). Header values that may hold
// credentials and URL credentials are masked.
type PreheatTask struct {
	ID         string
	URL        string
	Type       string
	Filter     string
	Identifier string
	Headers    map[string]string
	ParentID   string
	Children   []string
	Status     string
	StartTime  int64
	FinishTime int64
	ErrorMsg   string
}

// VersionInfo is the reply of GET /version.
type VersionInfo struct {
	Version   string `json:"Version"`
	Revision  string `json:"Revision,omitempty"`
	BuildDate string `json:"BuildDate"`
	GoVersion string `json:"GoVersion"`
	OS        string `json:"OS"`
	Arch      string `json:"Arch"`
}

// HostMeta is the JSON in <home>/meta/host.meta naming the port of the
// host's dfget peer server and the secret its local-only endpoints want
// (the file is mode 0600, so only the user's own dfgets can read it).
type HostMeta struct {
	ServicePort int    `json:"servicePort"`
	Token       string `json:"token,omitempty"`
}
