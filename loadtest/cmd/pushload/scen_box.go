package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// minMemAvailable: the box stops connecting when the machine has less
// than this left, whatever -mem-limit-gib says (others share the box).
const minMemAvailable = 2 << 30

// pageSize of /proc/net/sockstat's "mem" (pages of socket buffers).
const pageSize = 4096

// box: as many rooms as -box-target connections need at -room-conns
// each, filled from as many generator processes as the fd limit needs;
// it stops early when rooms, generators and cluster together pass
// -mem-limit-gib or the machine runs short of memory. Reports aggregate
// bytes per connection (user space and the kernel's share), connect rate.
func (b *bench) box(i int, engine, flagVal string) error {
	r := b.newResult(engine)
	rooms := (b.f.boxTarget + b.f.roomConns - 1) / b.f.roomConns
	r.Rooms, r.Requested = rooms, b.f.boxTarget
	var infos []*roomInfo
	defer func() {
		for _, ri := range infos {
			b.cl.stopRoom(ri.Name)
		}
	}()
	bar := b.p.count(rooms, "proc", fmt.Sprintf("box %s: start %d rooms", engine, rooms))
	for j := 0; j < rooms; j++ {
		ri, err := b.cl.startRoom(i*maxProcs+j, flagVal)
		if err != nil {
			return err
		}
		infos = append(infos, ri)
		_ = bar.Add(1)
	}
	b.p.done(bar)
	probes := make([]*probe, len(infos))
	addrs := make([]string, len(infos))
	for j, ri := range infos {
		probes[j], addrs[j] = roomProbe(ri), ri.TCP
	}
	before, err := b.quietSampleAll(probes)
	if err != nil {
		return err
	}
	k0 := kernelMem()
	gcOffs := make([]int64, len(infos))
	for j, ri := range infos {
		gcOffs[j] = logOffset(ri.GCLog)
	}
	memLimit := int64(b.f.memLimitGiB * (1 << 30))
	guard := func(g *generators) string {
		total := rssOf(b.cl.PIDs())
		for _, pid := range g.PIDs() {
			total += procRSS(pid)
		}
		if total > memLimit {
			return fmt.Sprintf("bench processes use %d MiB RSS, over -mem-limit-gib %.1f", total>>20, b.f.memLimitGiB)
		}
		if avail := memAvailable(); avail > 0 && avail < minMemAvailable {
			return fmt.Sprintf("MemAvailable %d MiB, under %d MiB", avail>>20, int64(minMemAvailable)>>20)
		}
		return ""
	}
	spec := genSpec{addrs: addrs, secret: b.cl.Secret, prefix: engine + "-box-", n: b.f.boxTarget,
		conc: b.f.conc, connectTO: b.f.connectTO}
	g, series, stopped, err := b.connectPhase(spec, fmt.Sprintf("box %s: connect", engine), probes, guard)
	if err != nil {
		return err
	}
	r.GeneratorProcs, r.Series = len(g.children), series
	if stopped != "" {
		r.Notes = append(r.Notes, "connect phase stopped early: "+stopped)
	}
	var genRSS int64
	for _, pid := range g.PIDs() {
		genRSS += procRSS(pid)
	}
	b.p.wait(b.f.settle, fmt.Sprintf("box %s: settle", engine))
	held, err := b.quietSampleAll(probes)
	if err != nil {
		g.release()
		return err
	}
	k1 := kernelMem()
	gr, err := g.collect()
	if err != nil {
		return err
	}
	r.Conns = int(held.Connections - before.Connections)
	if r.Conns <= 0 {
		r.Conns = gr.LiveAtEnd
	}
	n := float64(r.Conns)
	r.RSSBeforeBytes, r.RSSHeldBytes = before.RSSBytes, held.RSSBytes
	r.RSSBytesPerConn = perConn(float64(held.RSSBytes), float64(before.RSSBytes), n)
	r.HeapBytesPerConn = perConn(held.HeapInuse, before.HeapInuse, n)
	r.KernelBytesPerConn = perConn(float64(k1), float64(k0), n)
	r.AcceptAuthPerS = gr.Rate()
	r.LatencyMS = gr.Latency.Summary()
	pauses := newHist()
	for j, ri := range infos {
		h, err := gcPauses(ri.GCLog, gcOffs[j])
		if err != nil {
			return err
		}
		pauses.Merge(h)
	}
	r.GCPauseMS = pauses.gcSummary()
	r.fillErrors(gr)
	r.Notes = append(r.Notes,
		fmt.Sprintf("generators held %d MiB RSS (%.0f B per connection)", genRSS>>20, float64(genRSS)/max(n, 1)),
		"gc_pause_ms covers every room's pauses during the connect phase",
		"kernel_bytes_per_conn is the growth of Slab plus TCP socket buffer pages (/proc/meminfo, /proc/net/sockstat) per connection; both ends of each loopback connection are on this machine, so it counts two sockets; it is machine-wide, so other work on the box moves it")
	b.keep(r)
	return nil
}

// quietSampleAll sums quiet samples of several rooms.
func (b *bench) quietSampleAll(probes []*probe) (Sample, error) {
	var sum Sample
	for _, pr := range probes {
		if _, err := pr.heapProfile(); err != nil {
			return sum, err
		}
	}
	b.p.sleep(baselineQuiet)
	for _, pr := range probes {
		s, err := pr.Sample()
		if err != nil {
			return sum, err
		}
		sum.RSSBytes += s.RSSBytes
		sum.HeapInuse += s.HeapInuse
		sum.Connections += s.Connections
		sum.CPUSeconds += s.CPUSeconds
		sum.AuthsOK += s.AuthsOK
	}
	return sum, nil
}

func rssOf(pids map[string]int) int64 {
	var n int64
	for _, pid := range pids {
		n += procRSS(pid)
	}
	return n
}

// procRSS is a process's VmRSS in bytes (0 when gone).
func procRSS(pid int) int64 {
	var s Sample
	if err := (&probe{pid: pid}).readProc(&s); err != nil {
		return 0
	}
	return s.RSSBytes
}

// memAvailable is /proc/meminfo's MemAvailable in bytes (0 if unknown).
func memAvailable() int64 { return meminfo()["MemAvailable"] }

// kernelMem is the kernel memory connections cost: slab plus socket
// buffer pages.
func kernelMem() int64 {
	total := meminfo()["Slab"]
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return total
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "TCP:") {
			continue
		}
		f := strings.Fields(line)
		for k := 1; k+1 < len(f); k += 2 {
			if f[k] == "mem" {
				pages, _ := strconv.ParseInt(f[k+1], 10, 64)
				total += pages * pageSize
			}
		}
	}
	return total
}

func meminfo() map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		out[k] = n << 10
	}
	return out
}
