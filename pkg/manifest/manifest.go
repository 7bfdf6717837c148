// Package manifest reads what a container image manifest names: its
// layers (OCI and Docker schema 2 `layers`, Docker schema 1 `fsLayers`),
// its config, and, for an index or manifest list, its child manifests. The
// supernode's image preheat and dfdaemon's layer warming both walk images
// by these digests.
package manifest

import (
	"encoding/json"
	"fmt"
)

// Manifest is one manifest, image or index, as the registry serves it.
type Manifest struct {
	Config *struct {
		Digest string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		Digest string `json:"digest"`
	} `json:"layers"`
	FSLayers []struct {
		BlobSum string `json:"blobSum"`
	} `json:"fsLayers"`
	Manifests []struct {
		Digest string `json:"digest"`
	} `json:"manifests"`
}

// Parse reads a manifest's JSON.
func Parse(b []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("parse manifest: %w", err)
	}
	return m, nil
}

// LayerDigests are the layers' digests in the manifest's order, each once
// (a schema 1 manifest repeats the empty layer).
func (m Manifest) LayerDigests() []string {
	var out []string
	seen := map[string]bool{}
	add := func(d string) {
		if d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, l := range m.Layers {
		add(l.Digest)
	}
	for _, l := range m.FSLayers {
		add(l.BlobSum)
	}
	return out
}

// ConfigDigest is the config blob's digest, "" if the manifest has none
// (schema 1, an index).
func (m Manifest) ConfigDigest() string {
	if m.Config == nil {
		return ""
	}
	return m.Config.Digest
}

// ChildDigests are the digests of an index's manifests.
func (m Manifest) ChildDigests() []string {
	out := make([]string, 0, len(m.Manifests))
	for _, c := range m.Manifests {
		out = append(out, c.Digest)
	}
	return out
}
