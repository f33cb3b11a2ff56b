#!/usr/bin/env python3
"""Soak: `drover serve --reconcile` with `reconcile = "heal"` on a lab fleet
while faults, hand drift and releases arrive at random (seeded).

What it injects, one event every 2-6 s:
  - link faults: a host's link cut (`lab fault hN down`) or made bad
    (`delay 200ms jitter 50ms loss 5%`) for 10-40 s, then healed;
  - freezes: every process of a host stopped (SIGSTOP) for 5-20 s;
  - agent kills: SIGKILL to every drover agent process on a host (the
    agent runs only while a controller talks to it: counted when it hit one);
  - drift: a managed file (/etc/motd) rewritten or deleted by hand;
  - releases: the project's `release` variable bumped and `drover apply`
    started from the controller (in the background, one at a time),
    whatever the faults (hosts that miss it are
    `behind` and the heal passes must bring them along).

What it checks:
  - half-applied: every host's two release markers (/etc/soak-release and
    the web page, both rendered from `release` in one generation) are read
    from its root every 2 s; a host whose markers disagree in three samples
    in a row (over 4 s: a transition takes milliseconds) counts as
    half-applied. Drift never touches the markers.
  - at the end, every fault removed, it waits for two more heal passes and
    then asks `drover status --json` and the markers: hosts not on the
    project's release, drifted, behind or unreachable are "not converged".
  - serve's RSS (/proc/PID/status VmRSS) every 5 s.

Prints a markdown summary on stdout and writes the raw record (every event
with its time, every RSS sample, the final status) as JSON to --out.
Needs root (lab fleet). Not a test: a measurement to run by hand.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--drover", required=True)
ap.add_argument("--hosts", type=int, default=20)
ap.add_argument("--minutes", type=float, default=10)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--pass-every", default="15s", help="serve --reconcile interval")
ap.add_argument("--lab", default="soak")
ap.add_argument("--out", required=True, help="raw results (JSON)")
ap.add_argument("--keep", action="store_true", help="leave the lab up at the end")
args = ap.parse_args()

rng = random.Random(args.seed)
DROVER = os.path.realpath(args.drover)
LAB_DIR = os.path.join(os.environ.get("DROVER_LAB_DIR", "/var/lib/drover-lab"), args.lab)
T0 = time.monotonic()
events = []  # (t, kind, host, detail)


def now():
    return round(time.monotonic() - T0, 2)


def log(kind, host="", detail=""):
    events.append({"t": now(), "kind": kind, "host": host, "detail": detail})
    print(f"[{now():7.1f}] {kind:10} {host:5} {detail}", file=sys.stderr, flush=True)


def drover(*a, check=True, timeout=600, cwd=None):
    env = dict(os.environ, DROVER_LAB=args.lab)
    r = subprocess.run([DROVER, *a], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        sys.exit(f"drover {' '.join(a)} failed ({r.returncode}):\n{r.stderr}")
    return r


work = tempfile.mkdtemp(prefix="drover-soak.", dir="/var/tmp")
proj = os.path.join(work, "project")
hosts = [f"h{i}" for i in range(1, args.hosts + 1)]

# -- the fleet and the project ------------------------------------------------
log("setup", detail=f"lab up {args.hosts}")
drover("lab", "down", check=False)
drover("lab", "up", str(args.hosts), timeout=1800)
state = json.load(open(os.path.join(LAB_DIR, "state.json")))
NS = {h["name"]: f"dl{state['index']}h{h['n']}" for h in state["hosts"]}
subprocess.run([DROVER, "init", proj], check=True, capture_output=True)
with open(os.path.join(proj, "inventory.toml"), "w") as f:
    f.write(drover("lab", "inventory").stdout)
toml = os.path.join(proj, "drover.toml")
with open(toml) as f:
    settings = f.read()
settings = settings.replace('[vars]\n', '[vars]\nrelease = 1\n', 1) + '\n[serve]\nreconcile = "heal"\n'
with open(toml, "w") as f:
    f.write(settings)
os.makedirs(os.path.join(proj, "layers/site/etc"), exist_ok=True)
with open(os.path.join(proj, "layers/site/etc/soak-release.j2"), "w") as f:
    f.write("{{ release }}\n")
page = os.path.join(proj, "layers/site/srv/site/index.html.j2")
with open(page, "a") as f:
    f.write("<!-- release: {{ release }} -->\n")
release = 1


def set_release(n):
    with open(toml) as f:
        s = f.read()
    with open(toml, "w") as f:
        f.write(re.sub(r"(?m)^release = \d+$", f"release = {n}", s, count=1))


r = drover("-C", proj, "apply", "--json", timeout=900)
log("release", detail="1 (first apply)")

# -- serve ------------------------------------------------------------------------
serve_out = open(os.path.join(work, "serve.out"), "w+")
serve = subprocess.Popen(
    [DROVER, "-C", proj, "serve", "--listen", "127.0.0.1:0", "--reconcile", args.pass_every],
    stdout=serve_out, stderr=open(os.path.join(work, "serve.err"), "w"),
)
addr = None
for _ in range(300):
    serve_out.seek(0)
    m = re.search(r"http://(\S+)", serve_out.read())
    if m:
        addr = m.group(1)
        break
    time.sleep(0.2)
if not addr:
    sys.exit("serve did not say where it listens; see " + work)


def api(path):
    return json.loads(urllib.request.urlopen(f"http://{addr}{path}", timeout=60).read())


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


# -- checks -----------------------------------------------------------------------
def markers(h):
    root = os.path.join(LAB_DIR, "hosts", h, "merged")
    try:
        a = open(os.path.join(root, "etc/soak-release")).read().strip()
    except OSError:
        a = None
    try:
        m = re.search(r"release: (\d+)", open(os.path.join(root, "srv/site/index.html")).read())
        b = m.group(1) if m else None
    except OSError:
        b = None
    return a, b


mixed_runs = {h: 0 for h in hosts}
half_applied = set()
rss = []


def sample():
    for h in hosts:
        a, b = markers(h)
        if a != b:
            mixed_runs[h] += 1
            if mixed_runs[h] >= 3 and h not in half_applied:
                half_applied.add(h)
                log("HALF", h, f"markers {a} / {b}")
        else:
            mixed_runs[h] = 0


# -- faults ---------------------------------------------------------------------------
pending = []  # (due, host, what) heals/thaws
faults = {"down": 0, "bad-link": 0, "freeze": 0, "agent-kill": 0}
drifts = 0
applies = {"ok": 0, "failed": 0}


def busy(h):
    return any(p[1] == h for p in pending)


def kill_agents(h):
    killed = 0
    for pid in subprocess.run(["ip", "netns", "pids", NS[h]], capture_output=True, text=True).stdout.split():
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"drover" in cmd and b"/agent-" in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


running = None


def event():
    global drifts, release, running
    x = rng.random()
    free = [h for h in hosts if not busy(h)]
    h = rng.choice(free) if free else None
    if x < 0.15 and h:
        drover("lab", "fault", h, "down")
        pending.append((now() + rng.uniform(10, 40), h, "heal"))
        faults["down"] += 1
        log("fault", h, "down")
    elif x < 0.30 and h:
        drover("lab", "fault", h, "delay", "200ms", "jitter", "50ms", "loss", "5%")
        pending.append((now() + rng.uniform(10, 40), h, "heal"))
        faults["bad-link"] += 1
        log("fault", h, "delay 200ms jitter 50ms loss 5%")
    elif x < 0.40 and h:
        drover("lab", "fault", h, "freeze")
        pending.append((now() + rng.uniform(5, 20), h, "thaw"))
        faults["freeze"] += 1
        log("fault", h, "freeze")
    elif x < 0.50 and h:
        # The agent runs only while the controller talks to the host: this
        # hits one only when serve happens to be healing there.
        n = kill_agents(h)
        if n:
            faults["agent-kill"] += 1
        log("fault", h, f"agent SIGKILL ({n} processes)")
    elif x < 0.80:
        h = rng.choice(hosts)
        motd = os.path.join(LAB_DIR, "hosts", h, "merged", "etc/motd")
        try:
            if rng.random() < 0.3:
                os.remove(motd)
                log("drift", h, "rm /etc/motd")
            else:
                with open(motd, "a") as f:
                    f.write(f"hand edit {drifts}\n")
                log("drift", h, "edit /etc/motd")
            drifts += 1
        except OSError as e:
            log("drift", h, f"skipped: {e}")
    elif running is None:
        release += 1
        set_release(release)
        env = dict(os.environ, DROVER_LAB=args.lab)
        running = subprocess.Popen([DROVER, "-C", proj, "apply"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log("release", detail=f"{release}: apply started")
        if rng.random() < 0.5:  # and an agent killed while it works
            pending.append((now() + rng.uniform(0.3, 2.5), rng.choice(hosts), "kill0"))


def reap():
    """The release under way: its exit, once it ends."""
    global running
    if running is not None and running.poll() is not None:
        applies["ok" if running.returncode == 0 else "failed"] += 1
        log("applied", detail=f"release {release}: apply exit {running.returncode}")
        running = None


deadline = now() + args.minutes * 60
next_event, next_sample, next_rss = now() + 3, now(), now()
try:
    while now() < deadline:
        t = now()
        for p in [p for p in pending if p[0] <= t]:
            pending.remove(p)
            if p[2].startswith("kill"):
                # Until the agent runs there (the apply compiles, connects,
                # and reaches hosts in turn), look again every 0.1 s.
                n, tries = kill_agents(p[1]), int(p[2][4:] or 0)
                if n == 0 and running is not None and tries < 150:
                    pending.append((now() + 0.1, p[1], f"kill{tries + 1}"))
                    continue
                faults["agent-kill"] += 1 if n else 0
                log("fault", p[1], f"agent SIGKILL mid-apply ({n} processes)")
                continue
            drover("lab", "heal" if p[2] == "heal" else "fault", p[1], *([] if p[2] == "heal" else ["thaw"]))
            log(p[2], p[1])
        reap()
        if t >= next_event:
            event()
            next_event = now() + rng.uniform(2, 6)
        if t >= next_sample:
            sample()
            next_sample = t + 2
        if t >= next_rss:
            rss.append({"t": t, "kib": rss_kib(serve.pid), "pass": api("/api/status").get("pass")})
            next_rss = t + 5
        time.sleep(0.2)

    # -- the end: faults off, two more heal passes, then the verdict -----------------
    while running is not None:
        reap()
        time.sleep(0.2)
    drover("lab", "fault", "all", "thaw", check=False)
    drover("lab", "heal", "all")
    pending.clear()
    log("end", detail="faults removed; waiting for two heal passes")
    start_pass = api("/api/status").get("pass", 0)
    while api("/api/status").get("pass", 0) < start_pass + 3:  # the pass under way, then two whole ones
        sample()
        time.sleep(1)
    sample()
    final_rss = rss_kib(serve.pid)
    rss.append({"t": now(), "kib": final_rss, "pass": api("/api/status").get("pass")})
    st = drover("-C", proj, "status", "--json", check=False, timeout=600)
    status = json.loads(st.stdout) if st.stdout.strip().startswith(("{", "[")) else {"raw": st.stdout + st.stderr}
    passes = api("/api/status").get("pass")
finally:
    serve.send_signal(signal.SIGTERM)
    try:
        serve.wait(timeout=10)
    except subprocess.TimeoutExpired:
        serve.kill()

rows = status.get("hosts", status) if isinstance(status, dict) else status
not_converged = {}
for h in hosts:
    a, b = markers(h)
    why = []
    if a != str(release) or b != str(release):
        why.append(f"markers {a}/{b}, release {release}")
    row = next((r for r in rows if isinstance(r, dict) and r.get("host") == h), None) if isinstance(rows, list) else None
    if row is None:
        why.append("no status row")
    else:
        verdict = row.get("verdict") or row.get("state")
        if verdict not in ("converged", "ok", "current"):
            why.append(f"status {verdict}")
    if why:
        not_converged[h] = "; ".join(why)

kib = [s["kib"] for s in rss]
summary = {
    "hosts": args.hosts, "minutes": args.minutes, "seed": args.seed, "pass_every": args.pass_every,
    "faults": faults, "drifts": drifts, "releases": release, "applies": applies, "passes": passes,
    "half_applied": sorted(half_applied), "not_converged": not_converged,
    "serve_rss_kib": {"first": kib[0], "max": max(kib), "last": kib[-1]},
}
with open(args.out, "w") as f:
    json.dump({"summary": summary, "events": events, "rss": rss, "status": status}, f, indent=1)
if not args.keep:
    drover("lab", "down", check=False)

print(f"| soak: {args.hosts} lab hosts, {args.minutes:g} min, seed {args.seed}, passes every {args.pass_every} | |")
print("|---|---|")
print(f"| faults injected | {sum(faults.values())} ({', '.join(f'{k} {v}' for k, v in faults.items())}) |")
print(f"| hand drifts | {drifts} |")
print(f"| releases applied | {release - 1} (apply exit 0: {applies['ok']}, non-zero: {applies['failed']}) |")
print(f"| serve passes | {passes} |")
print(f"| hosts ever half-applied | {len(half_applied)} |")
print(f"| hosts not converged at the end | {len(not_converged)} {json.dumps(not_converged) if not_converged else ''} |")
print(f"| serve RSS (MiB) first / max / last | {kib[0]/1024:.1f} / {max(kib)/1024:.1f} / {kib[-1]/1024:.1f} |")
sys.exit(0 if not half_applied and not not_converged else 1)
