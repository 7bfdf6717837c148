// Package taskid derives a task's ID from what identifies a download, by the
// rule Dragonfly 1.x supernodes use. It lives apart from the supernode so a
// dfget can compute, before it registers, the ID its supernode will give the
// task, and so pick the task's home supernode in a cluster by that ID.
package taskid

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// salt keeps task IDs from being plain hashes of URLs.
const salt = "damselfly-supernode-task-id-salt"

// ID is the task ID rule of v1: sha256(salt + taskURL + sign + range + salt),
// sign being md5, else identifier; range only if a Range header is given.
func ID(taskURL, md5, identifier string, headers map[string]string) string {
	sign := md5
	if sign == "" {
		sign = identifier
	}
	r := ""
	if v, ok := headers["Range"]; ok {
		r = v
	}
	sum := sha256.Sum256([]byte(salt + taskURL + sign + r + salt))
	return hex.EncodeToString(sum[:])
}

// Registration is what a registration names that makes up its task's ID.
type Registration struct {
	RawURL, TaskURL, Md5, Identifier string
	Headers                          []string
}

// ID is the ID a supernode gives the task of r: the task URL defaults to the
// raw URL, an md5 counts in lower case and replaces the identifier, and the
// header lines are read as the supernode reads them.
func (r Registration) ID() (string, error) {
	headers, err := urlutil.ParseHeaders(r.Headers)
	if err != nil {
		return "", fmt.Errorf("task id: %w", err)
	}
	taskURL := r.TaskURL
	if taskURL == "" {
		taskURL = r.RawURL
	}
	md5, identifier := "", r.Identifier
	if r.Md5 != "" {
		d, err := digest.ParseHex(digest.MD5, strings.TrimSpace(r.Md5))
		if err != nil {
			return "", fmt.Errorf("task id: md5: %w", err)
		}
		md5, identifier = d.Hex(), ""
	}
	return ID(taskURL, md5, identifier, headers), nil
}
