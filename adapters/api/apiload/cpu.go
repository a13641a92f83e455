package apiload

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPU groups of CPUSample.
const (
	CPUHub       = "hub"
	CPUPostgres  = "postgres (the run's database)"
	CPUGenerator = "load generator"
	CPUOther     = "other processes"
)

// CPUSample is the CPU time used so far (user + system, Linux
// /proc/<pid>/stat) by the hub, the PostgreSQL backends of the run's
// database, this process and every other process (approximately: a
// process that ends between two samples takes its time with it). Two
// samples give what each used in between: on a shared machine the others'
// share explains figures the hub alone would not.
type CPUSample struct {
	At   time.Time
	Used map[string]time.Duration
}

// SampleCPU reads /proc; processes that end meanwhile are skipped.
func SampleCPU(hubPID int, dbName string) CPUSample {
	s := CPUSample{At: time.Now(), Used: map[string]time.Duration{}}
	dirs, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		st := string(b)
		open, end := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if open < 0 || end < 0 || end+2 > len(st) {
			continue
		}
		f := strings.Fields(st[end+2:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		sy, _ := strconv.ParseInt(f[12], 10, 64)
		used := time.Duration(ut+sy) * time.Second / 100 // USER_HZ
		group := CPUOther
		switch {
		case pid == hubPID:
			group = CPUHub
		case pid == self:
			group = CPUGenerator
		case strings.HasPrefix(st[open+1:end], "postgres") && dbName != "":
			if cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline")); err == nil && strings.Contains(string(cmd), " "+dbName+" ") {
				group = CPUPostgres
			}
		}
		s.Used[group] += used
	}
	return s
}

// Since returns the CPU each group used from before to s, and the wall
// time in between.
func (s CPUSample) Since(before CPUSample) (map[string]time.Duration, time.Duration) {
	out := map[string]time.Duration{}
	for k, v := range s.Used {
		out[k] = max(0, v-before.Used[k])
	}
	return out, s.At.Sub(before.At)
}
