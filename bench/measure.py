#!/usr/bin/env python3
"""Run a command; print its wall time and the controller's peak memory as JSON.

    bench/measure.py OUT.json -- CMD ARGS...

Two memory figures, because a single number misleads for tools that fork:

- maxrss_kb: what `/usr/bin/time -f %M` reports (the largest single process
  in the tree, from wait4's rusage). Right for one-process tools (drover,
  pyinfra); for Ansible it is one fork, not the whole controller.
- peak_pss_kb: the largest sum, over every process of the tree, of PSS
  (proportional set size: shared pages split between their users), sampled
  every 100 ms. The tree includes daemonised descendants (Ansible's
  ControlPersist ssh masters): this process is their subreaper.

It also records the CPU time (user, system) of the command and the
descendants it waited for, and the load average (1, 5, 15 min) at the start and the end:
on a shared machine a figure means little without the load it was taken
under.

The command's stdout/stderr go to this process's stderr. The exit code is
passed through (and recorded).
"""

import ctypes
import json
import os
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36


def children(pid):
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            out = [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(root):
    seen, stack = [], [root]
    while stack:
        p = stack.pop()
        seen.append(p)
        stack.extend(children(p))
    return seen


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    out_path, sep, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
    assert sep == "--" and cmd, __doc__
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    me = os.getpid()
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            total = sum(pss_kb(p) for p in tree(me) if p != me)
            peak[0] = max(peak[0], total)
            done.wait(0.1)

    load_start = loadavg()
    start = time.monotonic()
    child = subprocess.Popen(cmd, stdout=sys.stderr, stderr=sys.stderr)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - start
    done.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    with open(out_path, "w") as f:
        json.dump({"wall_s": round(wall, 3), "maxrss_kb": usage.ru_maxrss, "peak_pss_kb": peak[0], "code": code,
                   "cpu_user_s": round(usage.ru_utime, 2), "cpu_sys_s": round(usage.ru_stime, 2),
                   "loadavg_start": load_start, "loadavg_end": loadavg()}, f)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
