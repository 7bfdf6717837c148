// Package types holds every value that crosses the wire between dfget, the
// dfget peer server and the supernode. It is the single definition of the
// Dragonfly 1.x protocol (plus Damselfly's stream-mode extension): JSON field
// names, result codes and status codes. Both programs import it; neither
// defines wire structs of its own.
package types
