package benchcmd

// Coordinator resources: CPU time and resident memory of each member,
// read from /proc for a process on this machine or from a member's
// Prometheus endpoint (the process collector's series) for any other.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ResourceSample is one reading of a process.
type ResourceSample struct {
	CPUSeconds float64 // user + system since the process started
	RSSBytes   int64
	// WaitSeconds is the time its live threads spent runnable but waiting
	// for a CPU (/proc/<pid>/task/*/schedstat; zero where unknown): on a
	// shared machine, how starved the process was.
	WaitSeconds float64
}

// Sampler reads one coordinator process's resources.
type Sampler interface {
	// Name identifies the process in the result (a pid, a URL).
	Name() string
	Sample(ctx context.Context) (ResourceSample, error)
}

// PIDSampler reads process pid's /proc/<pid>/stat and status.
func PIDSampler(pid int) Sampler {
	return procSampler{dir: fmt.Sprintf("/proc/%d", pid), name: fmt.Sprintf("pid %d", pid)}
}

// SelfSampler reads this process.
func SelfSampler() Sampler { return procSampler{dir: "/proc/self", name: "self"} }

type procSampler struct{ dir, name string }

func (p procSampler) Name() string { return p.name }

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

func (p procSampler) Sample(context.Context) (ResourceSample, error) {
	stat, err := os.ReadFile(p.dir + "/stat")
	if err != nil {
		return ResourceSample{}, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis start with field 3 (state).
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fs := strings.Fields(rest)
	if len(fs) < 13 {
		return ResourceSample{}, fmt.Errorf("%s/stat: %d fields after the command, want at least 13", p.dir, len(fs))
	}
	utime, err1 := strconv.ParseUint(fs[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(fs[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return ResourceSample{}, fmt.Errorf("%s/stat: unreadable utime %q or stime %q", p.dir, fs[11], fs[12])
	}
	s := ResourceSample{CPUSeconds: float64(utime+stime) / clockTicks}
	status, err := os.ReadFile(p.dir + "/status")
	if err != nil {
		return ResourceSample{}, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return ResourceSample{}, fmt.Errorf("%s/status: VmRSS %q: %w", p.dir, strings.TrimSpace(v), err)
			}
			s.RSSBytes = kb * 1024
		}
	}
	s.WaitSeconds = runQueueWait(p.dir)
	return s, nil
}

// runQueueWait sums the run-queue wait of the threads of the process at
// dir, in seconds (0 where schedstat is not available).
func runQueueWait(dir string) float64 {
	tasks, err := os.ReadDir(dir + "/task")
	if err != nil {
		return 0
	}
	var ns uint64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread ended
		}
		if fs := strings.Fields(string(b)); len(fs) >= 2 {
			v, _ := strconv.ParseUint(fs[1], 10, 64)
			ns += v
		}
	}
	return float64(ns) / 1e9
}

// MetricsSampler reads a coordinator's Prometheus endpoint (its
// --metrics-addr, e.g. https://127.0.0.1:7402/metrics):
// process_cpu_seconds_total and process_resident_memory_bytes. An https
// URL is read with cfg, the client certificate a secure node's metrics
// endpoint asks for (nil: the system's roots, no certificate).
func MetricsSampler(url string, cfg *tls.Config) Sampler {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg != nil {
		cfg = cfg.Clone()
		cfg.NextProtos = nil // this transport speaks HTTP/1.1 on it
		tr.TLSClientConfig = cfg
	}
	return metricsSampler{url: url, hc: &http.Client{Transport: tr}}
}

type metricsSampler struct {
	url string
	hc  *http.Client
}

func (m metricsSampler) Name() string { return m.url }

func (m metricsSampler) Sample(ctx context.Context) (ResourceSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return ResourceSample{}, err
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return ResourceSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ResourceSample{}, fmt.Errorf("%s: %s", m.url, resp.Status)
	}
	var s ResourceSample
	var cpu, rss bool
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 64<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "process_cpu_seconds_total":
			s.CPUSeconds, err = strconv.ParseFloat(strings.TrimSpace(val), 64)
			cpu = err == nil
		case "process_resident_memory_bytes":
			var f float64
			f, err = strconv.ParseFloat(strings.TrimSpace(val), 64)
			s.RSSBytes, rss = int64(f), err == nil
		}
	}
	if err := sc.Err(); err != nil {
		return ResourceSample{}, fmt.Errorf("%s: %w", m.url, err)
	}
	if !cpu || !rss {
		return ResourceSample{}, fmt.Errorf("%s: no process_cpu_seconds_total or process_resident_memory_bytes", m.url)
	}
	return s, nil
}

// sampled is one reading of every sampler; a failed reading has err set.
type sampled []struct {
	s   ResourceSample
	err error
}

func sampleAll(ctx context.Context, ss []Sampler) sampled {
	out := make(sampled, len(ss))
	for i, s := range ss {
		out[i].s, out[i].err = s.Sample(ctx)
	}
	return out
}

// ResourceRow is one coordinator process over the run.
type ResourceRow struct {
	Name string `json:"name"`
	// CPUCores is the CPU it used while the whole fleet ran steadily
	// (cores: CPU seconds per second).
	CPUCores float64 `json:"cpuCores"`
	// IdleCPUCores is the CPU it used before the fleet started.
	IdleCPUCores float64 `json:"idleCpuCores"`
	// WaitCores is how long its threads waited for a CPU while the fleet
	// ran steadily, per second (from /proc only): well above CPUCores,
	// the machine, not the coordinator, limited it.
	WaitCores float64 `json:"waitCores"`
	// RSSBeforeBytes is its resident memory before the fleet started,
	// RSSBytes with the whole fleet up.
	RSSBeforeBytes int64  `json:"rssBeforeBytes"`
	RSSBytes       int64  `json:"rssBytes"`
	Error          string `json:"error,omitempty"`
}

// resourceRows turns the readings before the fleet (base, then idle
// after idleMeasure), when it was up and after measuring for d into one
// row per sampler.
func resourceRows(ss []Sampler, base, idle, up, steady sampled, d time.Duration) []ResourceRow {
	rows := make([]ResourceRow, len(ss))
	for i, s := range ss {
		rows[i].Name = s.Name()
		for _, r := range []sampled{base, idle, up, steady} {
			if r[i].err != nil && rows[i].Error == "" {
				rows[i].Error = r[i].err.Error()
			}
		}
		if rows[i].Error != "" {
			continue
		}
		rows[i].IdleCPUCores = (idle[i].s.CPUSeconds - base[i].s.CPUSeconds) / idleMeasure.Seconds()
		rows[i].CPUCores = (steady[i].s.CPUSeconds - up[i].s.CPUSeconds) / d.Seconds()
		rows[i].WaitCores = max(steady[i].s.WaitSeconds-up[i].s.WaitSeconds, 0) / d.Seconds()
		rows[i].RSSBeforeBytes = base[i].s.RSSBytes
		rows[i].RSSBytes = steady[i].s.RSSBytes
	}
	return rows
}
