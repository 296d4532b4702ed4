#!/usr/bin/env python3
"""Where a keystroke's echo waits under load: splits each echo of the
benchmark's probe (scenario 4) into its steps, from a system-wide trace.

Reads `perf script -F comm,pid,tid,cpu,time,event,trace` of a recording made
by `scripts/echo-trace` (sched_switch, sched_wakeup, and the syscalls named
below) and prints, for the server traced:

- each step's p50/p90/p99 over all echoes:
  probe → server  the probe's `sendto` of the key to the server's `recvfrom`
  server → PTY    that `recvfrom` to the server's `write` of the key
  PTY → server    that `write` to the server's `read` of the echo
                  (the kernel's tty layer: two flushes by a kworker)
  server → socket that `read` to the server's `sendto`/`writev` of the frame
  socket → probe  that send to the probe's `recvfrom` of it
- for the slowest 2 % of echoes: each step's share of their time, and the
  time the thread that ends a step spent runnable but not running
  (`sched_wakeup` to `sched_switch`), with what the CPUs ran meanwhile.

One recording may hold several servers' phases (termstream's, then a
peer's): each probe, a thread named `echo-probe` that sent at least 200
keys, is followed through the process whose `recvfrom` most often follows
its sends. Standard library only.
"""

import bisect
import collections
import re
import sys

LINE = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")
STEPS = [
    ("probe → server", "t0", "t1"),
    ("server → PTY", "t1", "t2"),
    ("PTY → server", "t2", "t4"),
    ("server → socket", "t4", "t5"),
    ("socket → probe", "t5", "t6"),
]
# The thread that ends a step: the server's receiving thread, its reader of
# the echo, the probe.
WAKER = {"probe → server": "w1", "PTY → server": "w4", "socket → probe": None}
SEND = ("syscalls:sys_enter_sendto", "syscalls:sys_enter_writev")


def load(path):
    events = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if m:
                comm, pid, tid, cpu, t, name, rest = m.groups()
                events.append((float(t), comm.strip(), int(pid), int(tid), int(cpu), name, rest))
    return events


def signed(hexstr):
    v = int(hexstr.strip(), 16)
    return v - (1 << 64) if v >= 1 << 63 else v


def field(rest, key):
    m = re.search(key + r": (0x[0-9a-f]+)", rest)
    return int(m.group(1), 16) if m else None


def find_ids(events):
    """Each probe (an `echo-probe` thread that sent at least 200 keys) and
    the server it typed into: the process whose `recvfrom` most often
    follows the probe's send."""
    sends = collections.Counter(e[3] for e in events if e[1] == "echo-probe" and e[5] == SEND[0])
    probes = [tid for tid, n in sends.items() if n >= 200]
    if not probes:
        sys.exit("no echo-probe thread sent enough keys: was the trace taken during scenario 4?")
    pid_of = {e[3]: e[2] for e in events}
    found = []
    for probe in sorted(probes):
        follows, armed = collections.Counter(), False
        for t, comm, pid, tid, cpu, name, rest in events:
            if tid == probe and name == SEND[0]:
                armed = True
            elif armed and pid != pid_of[probe] and name == "syscalls:sys_exit_recvfrom" and signed(rest) > 0:
                follows[pid] += 1
                armed = False
        if follows:
            server = follows.most_common(1)[0][0]
            # The main thread's most frequent name: before its `execve` a
            # server started by the bench still bears the bench's.
            names = collections.Counter(e[1] for e in events if e[3] == server) or collections.Counter(
                e[1] for e in events if e[2] == server
            )
            name = names.most_common(1)[0][0]
            found.append((probe, server, name))
    return found


def echoes(events, probe, server):
    out, cur = [], None
    for t, comm, pid, tid, cpu, name, rest in events:
        if tid == probe and name == SEND[0]:
            if cur and "t6" in cur:
                out.append(cur)
            cur = {"t0": t}
        elif cur is None or "t6" in cur:
            continue
        elif tid == probe and name == "syscalls:sys_exit_recvfrom" and signed(rest) > 0:
            cur["t6"] = t
        elif pid == server:
            if name == "syscalls:sys_exit_recvfrom" and signed(rest) > 0 and "t1" not in cur:
                cur["t1"], cur["w1"] = t, tid
            elif name == "syscalls:sys_enter_write" and "t1" in cur and "t2" not in cur and (field(rest, "count") or 99) < 8:
                cur["t2"] = t
            elif name == "syscalls:sys_exit_read" and "t2" in cur and "t4" not in cur and 0 < signed(rest) < 64:
                cur["t4"], cur["w4"] = t, tid
            elif name in SEND and "t4" in cur and "t5" not in cur:
                cur["t5"] = t
    if cur and "t6" in cur:
        out.append(cur)
    keys = ("t0", "t1", "t2", "t4", "t5", "t6")
    return [c for c in out if all(k in c for k in keys) and all(c[a] <= c[b] for a, b in zip(keys, keys[1:]))]


def pct(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


class Sched:
    """Wake-ups, switches, and what each CPU ran when."""

    def __init__(self, events):
        self.wake = collections.defaultdict(list)
        self.switch_in = collections.defaultdict(list)
        self.runs = collections.defaultdict(list)  # cpu -> [(t, comm)]
        for t, comm, pid, tid, cpu, name, rest in events:
            if name == "sched:sched_wakeup":
                self.wake[int(re.search(r"pid=(\d+)", rest).group(1))].append(t)
            elif name == "sched:sched_switch":
                m = re.search(r"next_comm=(.+?) next_pid=(\d+)", rest)
                self.switch_in[int(m.group(2))].append(t)
                self.runs[cpu].append((t, re.sub(r"[/:].*|-\w\w$", "", m.group(1))))

    def runnable(self, tid, a, b):
        """The last wake-up of `tid` within [a, b] to its switch in."""
        w = self.wake.get(tid, [])
        i = bisect.bisect_right(w, b) - 1
        if i < 0 or w[i] < a:
            return None
        s = self.switch_in.get(tid, [])
        j = bisect.bisect_left(s, w[i])
        return (w[i], s[j]) if j < len(s) else None

    def ran(self, a, b):
        share = collections.Counter()
        for cpu, runs in self.runs.items():
            i = max(0, bisect.bisect_right(runs, (a, "\uffff")) - 1)
            t, comm = a, runs[i][1] if runs and runs[i][0] <= a else None
            for tt, nxt in runs[i:]:
                if tt > b:
                    break
                if tt > a:
                    if comm:
                        share[comm] += tt - t
                    t = tt
                comm = nxt
            if comm:
                share[comm] += b - t
        return share


def report(path):
    events = load(path)
    sched = Sched(events)
    for probe, server, name in find_ids(events):
        report_probe(events, sched, probe, server, name)


def report_probe(events, sched, probe, server, name):
    done = echoes(events, probe, server)
    if not done:
        print(f"{name} (pid {server}): no echo could be followed through it")
        return
    total = sorted(c["t6"] - c["t0"] for c in done)
    print(f"{name} (pid {server}), probe tid {probe}: {len(done)} echoes followed")
    print("  %-16s p50 %6.0f  p90 %6.0f  p99 %6.0f µs" % (("whole echo",) + tuple(1e6 * pct(total, p) for p in (0.5, 0.9, 0.99))))
    for step, a, b in STEPS:
        d = sorted(c[b] - c[a] for c in done)
        print("  %-16s p50 %6.0f  p90 %6.0f  p99 %6.0f µs" % ((step,) + tuple(1e6 * pct(d, p) for p in (0.5, 0.9, 0.99))))
    done.sort(key=lambda c: c["t6"] - c["t0"])
    slow = done[-max(1, len(done) // 50):]
    spent = collections.Counter()
    for c in slow:
        for step, a, b in STEPS:
            spent[step] += c[b] - c[a]
    whole = sum(spent.values())
    print(f"  slowest {len(slow)} (from {1e6 * (slow[0]['t6'] - slow[0]['t0']):.0f} µs), share of their time:")
    print("    " + ", ".join(f"{n} {100 * spent[n] / whole:.0f} %" for n, _, _ in STEPS))
    waited, ran = collections.Counter(), collections.Counter()
    for c in slow:
        for step, a, b in STEPS:
            if step not in WAKER:
                continue
            span = sched.runnable(c[WAKER[step]] if WAKER[step] else probe, c[a], c[b])
            if span:
                waited[step] += span[1] - span[0]
                ran.update(sched.ran(*span))
    print("    runnable, not running, in them: " + ", ".join(f"{n} {1e3 * waited[n]:.1f} ms" for n in WAKER) + f" (of {1e3 * whole:.1f} ms)")
    busy = sum(ran.values()) or 1
    print("    the CPUs ran meanwhile: " + ", ".join(f"{k} {100 * v / busy:.0f} %" for k, v in ran.most_common(8)))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: echo_segments.py TRACE.txt [TRACE.txt ...]")
    for p in sys.argv[1:]:
        report(p)
