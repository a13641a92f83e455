package apiload

import (
	"fmt"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Stats summarize calls.
type Stats struct {
	Count, Errors int
	P50, P99, Max time.Duration
	// PerSecond is the calls per second over the run's elapsed time.
	PerSecond float64
}

// stats summarizes latencies and errors over elapsed.
func stats(lat []time.Duration, errs int, elapsed time.Duration) Stats {
	s := Stats{Count: len(lat), Errors: errs}
	if len(lat) == 0 {
		return s
	}
	sorted := slices.Sorted(slices.Values(lat))
	s.P50, s.P99, s.Max = percentile(sorted, 0.50), percentile(sorted, 0.99), sorted[len(sorted)-1]
	if elapsed > 0 {
		s.PerSecond = float64(len(lat)) / elapsed.Seconds()
	}
	return s
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Op returns the stats of one operation.
func (r *Result) Op(name string) Stats {
	o := r.Ops[name]
	if o == nil {
		return Stats{}
	}
	return stats(o.Latencies, sum(o.Errors), r.Elapsed)
}

// Total returns the stats of every call.
func (r *Result) Total() Stats {
	var lat []time.Duration
	errs := 0
	for _, o := range r.Ops {
		lat = append(lat, o.Latencies...)
		errs += sum(o.Errors)
	}
	return stats(lat, errs, r.Elapsed)
}

// Errors returns the failed calls by "op: cause".
func (r *Result) Errors() map[string]int {
	out := map[string]int{}
	for name, o := range r.Ops {
		for cause, n := range o.Errors {
			out[name+": "+cause] += n
		}
	}
	return out
}

// Targets are the figures a run must meet (issue 4: p99 < 100 ms, no
// error, peak RSS < 200 MiB).
type Targets struct {
	P99       time.Duration
	Errors    int
	PeakBytes int64
}

// DefaultTargets are issue 4's.
var DefaultTargets = Targets{P99: 100 * time.Millisecond, Errors: 0, PeakBytes: 200 << 20}

// Report is a load run with its baseline.
type Report struct {
	Title    string
	Baseline *Result // GET /me alone, same users
	Load     *Result
	// Saturation is the mix again with no think time (optional): the
	// calls per second the hub gives at most, and the latency then.
	Saturation *Result
	Memory     Memory // the hub's, read at the end of the load
	// CPU is what each group used during the load (CPUSample.Since),
	// over CPUWall.
	CPU     map[string]time.Duration
	CPUWall time.Duration
	Targets Targets
}

// Check is one target with its outcome.
type Check struct {
	Name, Want, Got string
	OK              bool
}

// Checks compares the load's totals and the hub's peak RSS with the
// targets.
func (r *Report) Checks() []Check {
	t := r.Load.Total()
	return []Check{
		{"p99", "< " + ms(r.Targets.P99), ms(t.P99), t.P99 < r.Targets.P99},
		{"errors", fmt.Sprintf("<= %d", r.Targets.Errors), fmt.Sprint(t.Errors), t.Errors <= r.Targets.Errors},
		{"hub peak RSS (VmHWM)", "< " + mib(r.Targets.PeakBytes), mib(r.Memory.Peak), r.Memory.Peak < r.Targets.PeakBytes},
	}
}

// OK reports whether every target is met.
func (r *Report) OK() bool {
	for _, c := range r.Checks() {
		if !c.OK {
			return false
		}
	}
	return true
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func mib(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// Print writes the report: per operation and in total the count, errors,
// p50, p99, max and calls per second, for the baseline and the load; the
// ratios load/baseline; the hub's memory; the targets with PASS or FAIL;
// the errors by cause.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\n%s\n", r.Title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\top\tcalls\terrors\tp50\tp99\tmax\tcalls/s\t")
	row := func(phase, op string, s Stats) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%.1f\t\n", phase, op, s.Count, s.Errors, ms(s.P50), ms(s.P99), ms(s.Max), s.PerSecond)
	}
	if r.Baseline != nil {
		row("baseline", "me", r.Baseline.Total())
	}
	for _, name := range r.Load.Order {
		row("load", name, r.Load.Op(name))
	}
	row("load", "TOTAL", r.Load.Total())
	if r.Saturation != nil {
		row("saturation", "TOTAL", r.Saturation.Total())
	}
	tw.Flush()
	if r.Baseline != nil {
		b, l := r.Baseline.Total(), r.Load.Total()
		fmt.Fprintf(w, "load/baseline: p50 %s, p99 %s, calls/s %s\n",
			ratio(float64(l.P50), float64(b.P50)), ratio(float64(l.P99), float64(b.P99)), ratio(l.PerSecond, b.PerSecond))
	}
	fmt.Fprintf(w, "hub memory: peak RSS (VmHWM) %s, RSS at the end %s\n", mib(r.Memory.Peak), mib(r.Memory.Current))
	if r.CPUWall > 0 {
		fmt.Fprintf(w, "CPU during the load (%d cores, %s):", runtime.NumCPU(), r.CPUWall.Round(time.Millisecond))
		for i, g := range []string{CPUHub, CPUPostgres, CPUGenerator, CPUOther} {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(w, "%s %s %.1fs (%.2f cores)", sep, g, r.CPU[g].Seconds(), r.CPU[g].Seconds()/r.CPUWall.Seconds())
		}
		fmt.Fprintln(w)
	}
	for _, c := range r.Checks() {
		verdict := "PASS"
		if !c.OK {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "target %-22s %-10s got %-10s %s\n", c.Name, c.Want, c.Got, verdict)
	}
	errs := r.Load.Errors()
	if r.Baseline != nil {
		for k, v := range r.Baseline.Errors() {
			errs["baseline "+k] += v
		}
	}
	if r.Saturation != nil {
		for k, v := range r.Saturation.Errors() {
			errs["saturation "+k] += v
		}
	}
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		fmt.Fprintf(w, "error %s: %d\n", strings.TrimSpace(k), errs[k])
	}
}
