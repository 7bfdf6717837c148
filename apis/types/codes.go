package types

// Result codes carried in ResultInfo.Code by the legacy dfget protocol.
const (
	CodeSuccess         = 200
	CodeSystemError     = 500
	CodeParamError      = 501
	CodeTargetNotFound  = 502
	CodePeerFinish      = 600
	CodePeerContinue    = 601
	CodePeerWait        = 602
	CodePeerLimited     = 603
	CodeSuperFail       = 604
	CodeUnknownError    = 605
	CodeTaskConflict    = 606
	CodeURLNotReachable = 607
	CodeNeedAuth        = 608
	CodeWaitAuth        = 609
	CodeSourceError     = 610
	CodeGetPieceReport  = 611
	CodeGetPeerDown     = 612
)

// Piece results sent by dfget in the `result` query parameter of /peer/task.
const (
	ResultFail    = 500
	ResultSuc     = 501
	ResultInvalid = 502
	ResultSemiSuc = 503
)

// Task statuses sent by dfget in the `status` query parameter of /peer/task.
const (
	TaskStatusStart   = 700
	TaskStatusRunning = 701
	TaskStatusFinish  = 702
)

// CDN statuses of a task (TaskInfo.CdnStatus).
const (
	CDNStatusWaiting     = "WAITING"
	CDNStatusRunning     = "RUNNING"
	CDNStatusFailed      = "FAILED"
	CDNStatusSuccess     = "SUCCESS"
	CDNStatusSourceError = "SOURCE_ERROR"
)

// Values of RegisterResponseData.CDNSource.
const (
	CDNSourceSupernode = "supernode"
	CDNSourceSource    = "source"
)

// Piece error types sent to /peer/piece/error.
const (
	PieceErrorFileNotExist    = "FILE_NOT_EXIST"
	PieceErrorFileMd5NotMatch = "FILE_MD5_NOT_MATCH"
)

// Preheat types and statuses.
const (
	PreheatTypeFile  = "file"
	PreheatTypeImage = "image"

	PreheatWaiting = "WAITING"
	PreheatRunning = "RUNNING"
	PreheatSuccess = "SUCCESS"
	PreheatFailed  = "FAILED"
)

// SuperNodeCIDPrefix prefixes the CID under which the supernode holds the
// pieces of a task: "cdnnode:<advertiseIP>~<taskID>".
const SuperNodeCIDPrefix = "cdnnode:"

// PeerFilePathPrefix is the URL path prefix under which a dfget peer server
// serves a task file: "/peer/file/<taskFileName>".
const PeerFilePathPrefix = "/peer/file/"
