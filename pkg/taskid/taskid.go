// Package taskid derives a task's ID from what identifies a download, by the
// rule Dragonfly 1.x supernodes use. It lives apart from the supernode so a
// dfget can compute, before it registers, the ID its supernode will give the
// task, and so pick the task's home supernode in a cluster by that ID.
package taskid

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// salt keeps task IDs from being plain hashes of URLs.
const salt = "damselfly-supernode-task-id-salt"

// ID is the task ID rule of v1: sha256(salt + taskURL + sign + range + salt),
// sign being md5, else identifier; range only if a Range header is given.
// It is the ID of a task whose source is trusted by default.
func ID(taskURL, md5, identifier string, headers map[string]string) string {
	return Trust{}.ID(taskURL, md5, identifier, headers)
}

// ID is the task ID of a source trusted as t: v1's rule with t's key after
// the range. The fetch of a task is shared by all its clients, so a client
// that asks for verified TLS must never join a task fetched without
// verification, or with roots another client chose. The default trust
// adds nothing, so such tasks keep v1's IDs.
func (t Trust) ID(taskURL, md5, identifier string, headers map[string]string) string {
	sign := md5
	if sign == "" {
		sign = identifier
	}
	r := ""
	if v, ok := headers["Range"]; ok {
		r = v
	}
	sum := sha256.Sum256([]byte(salt + taskURL + sign + r + t.Key() + salt))
	return hex.EncodeToString(sum[:])
}

// Trust is how a registration asks the source's TLS certificate to be
// checked: not at all (Insecure), or also against RootCAs (PEM bytes).
type Trust struct {
	Insecure bool
	RootCAs  [][]byte
}

// Key names t in a task ID: "" for the default trust, else whether it is
// insecure and the sha256 of the CAs, each hashed, in sorted order, so
// the order a client lists its CA files in does not split a task.
func (t Trust) Key() string {
	if !t.Insecure && len(t.RootCAs) == 0 {
		return ""
	}
	sums := make([][]byte, len(t.RootCAs))
	for i, pem := range t.RootCAs {
		s := sha256.Sum256(pem)
		sums[i] = s[:]
	}
	slices.SortFunc(sums, bytes.Compare)
	all := sha256.Sum256(bytes.Join(sums, nil))
	key := "\x00tls:verify:"
	if t.Insecure {
		key = "\x00tls:insecure:"
	}
	return key + hex.EncodeToString(all[:])
}

// Registration is what a registration names that makes up its task's ID.
type Registration struct {
	RawURL, TaskURL, Md5, Identifier string
	Headers                          []string
	Trust                            Trust
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
	return r.Trust.ID(taskURL, md5, identifier, headers), nil
}
