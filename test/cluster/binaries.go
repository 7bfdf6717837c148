package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// BinEnv names the directory holding bin/supernode and bin/dfget; the
// Makefile sets it.
const BinEnv = "DAMSELFLY_BIN"

// RepoRoot finds the module root by walking up from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/damselfly-p2p/damselfly\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (go.mod of damselfly) not found above the working directory")
		}
		dir = parent
	}
}

// Binary returns the path of a project binary (supernode, dfget) from
// $DAMSELFLY_BIN or <repo>/bin. It never builds: a missing binary is an
// error telling to run make build.
func Binary(name string) (string, error) {
	dir := os.Getenv(BinEnv)
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", fmt.Errorf("%s unset and %w", BinEnv, err)
		}
		dir = filepath.Join(root, "bin")
	}
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%s not found (%v): run `make build` first", p, err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", p)
	}
	return p, nil
}

// BuildOrigin compiles test/cmd/origin into dir and returns its path. It is
// a test helper, not a product binary, so the harness builds it itself (the
// build cache makes this quick after the first time).
func BuildOrigin(ctx context.Context, dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "origin")
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-buildvcs=false", "-o", out, "./test/cmd/origin")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build origin: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return out, nil
}
