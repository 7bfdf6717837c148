// Package imagetest holds what tests that push and pull container images
// share: an OCI image layout of given layers, the configuration of a
// Distribution registry (Debian docker-registry) with filesystem storage,
// and a registries.conf that sends a registry's pulls to one mirror.
package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NeedTool returns the path of an external program a test runs
// (docker-registry, skopeo). Without it the test is skipped, except in CI
// (CI set), where .ci/run installs it and its absence is a failure.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	Unavailable(t, "%s not installed (Debian package %s; .ci/run installs it): %v", name, name, err)
	return ""
}

// Unavailable skips the test for a missing prerequisite (a tool, root,
// network namespaces, a tmpfs mount), except in CI (CI set): .ci/run runs as
// root and installs every prerequisite, so there a skip would hide a broken
// test run and it fails instead.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Image is an image written by WriteOCI: every blob by digest, and the
// layer digests in order.
type Image struct {
	Blobs  map[string][]byte // "sha256:<hex>" -> content
	Layers []string
}

// Digest is the "sha256:<hex>" digest of b.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int    `json:"size"`
}

// WriteOCI writes an OCI image layout into dir with one layer per element
// of layers. A layer is stored as a gzip stream of its bytes made without
// compression: skopeo keeps a compressed layer as it is when pushing,
// where it would compress a plain one and change its digest.
func WriteOCI(dir string, layers [][]byte) (*Image, error) {
	img := &Image{Blobs: map[string][]byte{}}
	var firstErr error
	put := func(b []byte) string {
		d := Digest(b)
		img.Blobs[d] = b
		p := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil && firstErr == nil {
			firstErr = err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil && firstErr == nil {
			firstErr = err
		}
		return d
	}
	var descs []descriptor
	var diffIDs []string
	for _, raw := range layers {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
		_, _ = zw.Write(raw)
		_ = zw.Close()
		d := put(buf.Bytes())
		img.Layers = append(img.Layers, d)
		diffIDs = append(diffIDs, Digest(raw))
		descs = append(descs, descriptor{"application/vnd.oci.image.layer.v1.tar+gzip", d, buf.Len()})
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	cfgDesc := descriptor{"application/vnd.oci.image.config.v1+json", put(cfg), len(cfg)}
	man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": cfgDesc, "layers": descs})
	manDesc := descriptor{"application/vnd.oci.image.manifest.v1+json", put(man), len(man)}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{manDesc}})
	for name, b := range map[string][]byte{"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`), "index.json": index} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, fmt.Errorf("write OCI layout: %w", firstErr)
	}
	return img, nil
}

// TarLayer is a layer an engine can unpack (dockerd does, where skopeo and
// ctr content fetch take any bytes): a tar archive holding one regular
// file, name, with content.
func TarLayer(name string, content []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg, Format: tar.FormatPAX})
	_, _ = tw.Write(content)
	_ = tw.Close()
	return buf.Bytes()
}

// RegistryConfig is a docker-registry configuration serving plain HTTP on
// addr with filesystem storage under root.
func RegistryConfig(root, addr string) []byte {
	return fmt.Appendf(nil, "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\n"+
		"  delete:\n    enabled: true\nhttp:\n  addr: %s\n", root, addr)
}

// MirrorConf is a registries.conf sending pulls of location to mirror
// only (both plain HTTP): when location does not resolve, a pull that
// works came through the mirror.
func MirrorConf(location, mirror string) []byte {
	return fmt.Appendf(nil, "[[registry]]\nlocation = %q\ninsecure = true\n\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n",
		location, mirror)
}

// CheckDir compares the blobs skopeo wrote to a dir: transport directory
// (one file per blob, named by hex digest) with img: every layer must be
// there, and every blob there must be img's.
func CheckDir(dir string, img *Image) error {
	for d, want := range img.Blobs {
		got, err := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(d, "sha256:")))
		if os.IsNotExist(err) {
			continue // the manifest: skopeo stores it as manifest.json
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("blob %s: %d bytes pulled differ from the %d pushed", d, len(got), len(want))
		}
	}
	for _, d := range img.Layers {
		if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(d, "sha256:"))); err != nil {
			return fmt.Errorf("layer %s not pulled: %w", d, err)
		}
	}
	return nil
}
