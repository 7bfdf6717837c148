package procmem

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A child of a process that has touched a lot of memory: rusage reports
// the parent's size, VmHWM the child's own.
func TestWatchIgnoresParentMemory(t *testing.T) {
	ballast := make([]byte, 256<<20)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1
	}
	cmd := exec.Command("sleep", "0.3")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	stop := Watch(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	peak := stop()
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	t.Logf("sleep: VmHWM %d KiB, ru_maxrss %d KiB (parent touched %d MiB)", peak>>10, ru>>10, len(ballast)>>20)
	if peak <= 0 || peak > 64<<20 {
		t.Fatalf("VmHWM of sleep is %d bytes, want a small positive size", peak)
	}
	if ballast[4096] != 1 {
		t.Fatal("ballast lost")
	}
}

func TestPeakRSSOfSelfAndGone(t *testing.T) {
	if v, err := PeakRSS(os.Getpid()); err != nil || v <= 0 {
		t.Fatalf("own VmHWM: %d %v", v, err)
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("no true binary: %v", err)
	}
	if _, err := PeakRSS(cmd.Process.Pid); err == nil {
		t.Fatal("VmHWM of a reaped process")
	}
	stop := Watch(cmd.Process.Pid)
	time.Sleep(2 * SampleEvery)
	if v := stop(); v != 0 {
		t.Fatalf("Watch of a reaped process = %d, want 0", v)
	}
}

// CPU grows while this process spins, and is 0 for a process that is gone.
func TestCPUOfSelfAndGone(t *testing.T) {
	before := CPU(os.Getpid())
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	if after := CPU(os.Getpid()); after-before < 20*time.Millisecond {
		t.Fatalf("CPU went from %v to %v over 50 ms of spinning", before, after)
	}
	if c := CPU(1 << 30); c != 0 {
		t.Fatalf("CPU of a process that does not exist: %v", c)
	}
}

// Times splits the same figure: spinning is user time, and writing a file
// in many small writes is system time.
func TestTimesSplitsUserAndSystem(t *testing.T) {
	u0, s0 := Times(os.Getpid())
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
		if _, err := f.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
	}
	u1, s1 := Times(os.Getpid())
	if u1-u0 < 20*time.Millisecond || s1-s0 < 20*time.Millisecond {
		t.Fatalf("user %v -> %v, system %v -> %v over 50 ms of spinning and 100 ms of writes", u0, u1, s0, s1)
	}
	if u, s := Times(1 << 30); u != 0 || s != 0 {
		t.Fatalf("Times of a process that does not exist: %v %v", u, s)
	}
}
