// Command cdn compares, in one run, `curl -o` of a file from a local origin
// with the supernode bringing the same file into its CDN cache.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/damselfly-p2p/damselfly/test/bench/cdnbench"
)

func main() {
	size := flag.Int64("size", 1<<30, "file size in bytes")
	bin := flag.String("supernode", filepath.Join("bin", "supernode"), "supernode binary")
	flag.Parse()
	if err := run(*size, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "cdn bench:", err)
		os.Exit(1)
	}
}

func run(size int64, bin string) error {
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(data); i += 8 {
		v := r.Uint64()
		for k := range 8 {
			data[i+k] = byte(v >> (8 * k))
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mod := time.Now()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", mod, bytes.NewReader(data))
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/file"

	tmp, err := os.MkdirTemp("", "cdnbench-curl-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	if out, err := exec.Command("curl", "-sS", "-o", filepath.Join(tmp, "f"), url).CombinedOutput(); err != nil {
		return fmt.Errorf("curl: %v: %s", err, out)
	}
	curl := time.Since(start)
	os.Remove(filepath.Join(tmp, "f"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cdn, err := cdnbench.MeasureCDN(ctx, url, bin)
	if err != nil {
		return err
	}
	mb := float64(size) / (1 << 20)
	fmt.Printf("file %d bytes\ncurl -o:       %8.3fs  %7.1f MiB/s\nsupernode CDN: %8.3fs  %7.1f MiB/s\nratio cdn/curl: %.2f\n",
		size, curl.Seconds(), mb/curl.Seconds(), cdn.Seconds(), mb/cdn.Seconds(), cdn.Seconds()/curl.Seconds())
	return nil
}
