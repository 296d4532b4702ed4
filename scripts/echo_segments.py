#!/usr/bin/env python3
"""Where a keystroke's echo waits under load: splits each echo of the
benchmark's probe (scenario 4) into its steps, from a system-wide trace.

Reads `perf script -F comm,pid,tid,cpu,time,event,trace` of a recording made
by `scripts/echo-trace` (sched_switch, sched_wakeup, and the syscalls named
below) and prints, for each server traced:

- each step's p50/p90/p99 over all echoes:
  probe → server  the probe's `sendto` of the key to the server's `recvfrom`
                  of it
  server → PTY    that `recvfrom` to the server's `write` of the key
  PTY → server    that `write` to the server's `read` of the echo (the
                  kernel's tty layer: two flushes by a kworker)
  server → socket that `read` to the server's `sendto`/`writev` on the
                  probe's connection
  socket → probe  that send to the probe's `recvfrom` of it
- for the slowest 2 % of echoes: each step's share of their time; for the
  three steps that end in another thread or after a wake-up, how long the
  thread that ends the step was runnable but not running (from a wake-up,
  or preempted, to its next switch in); and what the CPUs ran meanwhile,
  by process (the server's and the bench's threads named apart).

One recording may hold several servers' phases (termstream's, then a
peer's): each probe, a thread named `echo-probe` that sent at least 200
keys, is followed through the process whose `recvfrom` most often follows
its sends. A key is written with a `write` of at most 7 bytes, and its echo
read as a `read` of as many bytes; the echo's frame is the first send on
the socket the key came in on. Standard library only.
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
# The thread that ends a step after a wait: the server's receiving thread,
# its reader of the echo, the probe.
WAKER = {"probe → server": "w1", "PTY → server": "w4", "socket → probe": None}
SEND = ("syscalls:sys_enter_sendto", "syscalls:sys_enter_writev")
KEY_MAX = 7


def load(path):
    """The trace's events as (time, comm, pid, tid, cpu, event, rest)."""
    events = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if m:
                comm, pid, tid, cpu, t, name, rest = m.groups()
                events.append((float(t), comm.strip(), int(pid), int(tid), int(cpu), name, rest))
    return events


def signed(hexstr):
    """A syscall's return value, printed as 64-bit hex."""
    v = int(hexstr.strip(), 16)
    return v - (1 << 64) if v >= 1 << 63 else v


def field(rest, key):
    """A numeric field of a syscall's entry (`fd: 0x…`)."""
    m = re.search(key + r": (0x[0-9a-f]+)", rest)
    return int(m.group(1), 16) if m else None


def find_ids(events):
    """Each probe (an `echo-probe` thread that sent at least 200 keys), the
    server it typed into and that server's name."""
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
            names = collections.Counter(e[1] for e in events if e[3] == server)
            names = names or collections.Counter(e[1] for e in events if e[2] == server)
            found.append((probe, server, names.most_common(1)[0][0]))
    return found


def echoes(events, probe, server):
    """Every echo followed through all its steps: t0…t6 (no t3) and the
    threads w1 (received the key) and w4 (read the echo)."""
    out, cur = [], None
    fd_of = {}  # tid -> the fd of its `recvfrom` in progress
    for t, comm, pid, tid, cpu, name, rest in events:
        if pid == server and name == "syscalls:sys_enter_recvfrom":
            fd_of[tid] = field(rest, "fd")
            continue
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
                cur.update(t1=t, w1=tid, conn=fd_of.get(tid))
            elif name == "syscalls:sys_enter_write" and "t1" in cur and "t2" not in cur:
                count = field(rest, "count")
                if count is not None and 0 < count <= KEY_MAX:
                    cur.update(t2=t, key=count)
            elif name == "syscalls:sys_exit_read" and "t2" in cur and "t4" not in cur:
                # The echo: as many bytes as the key (not by fd: ttyd reads
                # its PTY through a duplicate of the fd it writes to).
                if signed(rest) == cur["key"]:
                    cur.update(t4=t, w4=tid)
            elif name in SEND and "t4" in cur and "t5" not in cur:
                if cur["conn"] is None or field(rest, "fd") == cur["conn"]:
                    cur["t5"] = t
    if cur and "t6" in cur:
        out.append(cur)
    keys = ("t0", "t1", "t2", "t4", "t5", "t6")
    return [c for c in out if all(k in c for k in keys) and all(c[a] <= c[b] for a, b in zip(keys, keys[1:]))]


def pct(sorted_values, p):
    """The p-th quantile of sorted values (nearest rank below)."""
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


class Sched:
    """When each thread was runnable but not running, and what each CPU ran."""

    def __init__(self, events, names):
        self.waits = collections.defaultdict(list)  # tid -> [(from, to)]
        self.runs = collections.defaultdict(list)  # cpu -> [(t, label)]
        pid_of = {e[3]: e[2] for e in events}
        ready = {}  # tid -> since when it is runnable
        for t, comm, pid, tid, cpu, name, rest in events:
            if name == "sched:sched_wakeup":
                ready.setdefault(int(re.search(r" pid=(\d+)", rest).group(1)), t)
            elif name == "sched:sched_switch":
                m = re.search(r"prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.+?) next_pid=(\d+)", rest)
                prev, state, nxt = int(m.group(1)), m.group(2), int(m.group(4))
                if state.startswith("R"):
                    ready[prev] = t  # preempted: still runnable
                if nxt in ready:
                    self.waits[nxt].append((ready.pop(nxt), t))
                comm_next = re.sub(r"[/:].*|-\w\w$", "", m.group(3))  # kworker/u8:3-ev → kworker
                owner = names.get(pid_of.get(nxt))
                self.runs[cpu].append((t, f"{owner}: {comm_next}" if owner else comm_next))

    def runnable(self, tid, a, b):
        """How long `tid` was runnable but not running within [a, b], and
        those intervals."""
        spans = [(max(x, a), min(y, b)) for x, y in self.waits.get(tid, []) if y > a and x < b]
        return sum(y - x for x, y in spans), spans

    def ran(self, a, b):
        """Time each label ran on the CPUs within [a, b]."""
        share = collections.Counter()
        for runs in self.runs.values():
            i = max(0, bisect.bisect_right(runs, (a, "\uffff")) - 1)
            t, label = a, runs[i][1] if runs and runs[i][0] <= a else None
            for tt, nxt in runs[i:]:
                if tt > b:
                    break
                if tt > a:
                    if label:
                        share[label] += tt - t
                    t = tt
                label = nxt
            if label:
                share[label] += b - t
        return share


def report(path):
    """Prints the steps of every probe's echoes in the trace at `path`."""
    events = load(path)
    found = find_ids(events)
    pid_of = {e[3]: e[2] for e in events}
    names = {server: name for _, server, name in found}
    names.update({pid_of[probe]: "bench" for probe, _, _ in found})
    sched = Sched(events, names)
    for probe, server, name in found:
        report_probe(events, sched, probe, server, name)


def report_probe(events, sched, probe, server, name):
    """Prints the steps of one probe's echoes through `server`."""
    done = echoes(events, probe, server)
    if not done:
        print(f"{name} (pid {server}): no echo could be followed through it")
        return
    total = sorted(c["t6"] - c["t0"] for c in done)
    print(f"{name} (pid {server}), probe tid {probe}: {len(done)} echoes followed")
    row = "  %-16s p50 %6.0f  p90 %6.0f  p99 %6.0f µs"
    print(row % (("whole echo",) + tuple(1e6 * pct(total, p) for p in (0.5, 0.9, 0.99))))
    for step, a, b in STEPS:
        d = sorted(c[b] - c[a] for c in done)
        print(row % ((step,) + tuple(1e6 * pct(d, p) for p in (0.5, 0.9, 0.99))))
    done.sort(key=lambda c: c["t6"] - c["t0"])
    slow = done[-max(1, len(done) // 50) :]
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
            if step in WAKER:
                tid = c[WAKER[step]] if WAKER[step] else probe
                time, spans = sched.runnable(tid, c[a], c[b])
                waited[step] += time
                for x, y in spans:
                    ran.update(sched.ran(x, y))
    waits = ", ".join(f"{n} {1e3 * waited[n]:.1f} ms" for n in WAKER)
    print(f"    runnable, not running, in them: {waits} (of {1e3 * whole:.1f} ms)")
    busy = sum(ran.values()) or 1
    print("    the CPUs ran meanwhile: " + ", ".join(f"{k} {100 * v / busy:.0f} %" for k, v in ran.most_common(8)))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: echo_segments.py TRACE.txt [TRACE.txt ...]")
    for p in sys.argv[1:]:
        report(p)
