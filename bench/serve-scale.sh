#!/usr/bin/env bash
# `drover serve` with 10,000 simulated hosts: the first check pass, the grid
# page's load and live-update times in headless Chromium, /metrics and
# /api/status render times, and the server's memory.
#
# Usage:  bench/serve-scale.sh                     # builds target/release/drover; HOSTS=10000
#         DROVER=/path/to/drover HOSTS=1000 bench/serve-scale.sh
#
# Hosts are in-process agents (`--simulate DIR`); the first `apply` creates
# them. Needs python3, chromium and chromium-driver (scripts/deps); no root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DROVER:-}" ]; then
    cargo build --release -p drover >&2
    DROVER="${CARGO_TARGET_DIR:-target}/release/drover"
fi
DROVER=$(realpath "$DROVER")
HOSTS="${HOSTS:-10000}"
WORK=$(mktemp -d /var/tmp/drover-serve.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

"$DROVER" init "$WORK/project" >/dev/null
python3 - "$HOSTS" > "$WORK/project/inventory.toml" <<'PY'
import sys
for i in range(1, int(sys.argv[1]) + 1):
    print(f'[hosts.s{i}]\naddress = "10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"\ngroups = ["rack{i % 40}"]\n')
PY
echo "first apply of $HOSTS simulated hosts…" >&2
"$DROVER" -C "$WORK/project" apply --simulate "$WORK/hosts" > /dev/null 2>&1 || true

"$DROVER" -C "$WORK/project" serve --simulate "$WORK/hosts" --listen 127.0.0.1:0 --check-every 3600s \
    > "$WORK/serve.out" 2> "$WORK/serve.err" &
PIDS+=($!)
SERVE_PID=$!
chromedriver --port=9519 > /dev/null 2>&1 &
PIDS+=($!)
until grep -q listening "$WORK/serve.out"; do sleep 0.2; done
ADDR=$(sed -n 's/.*http:\/\///p' "$WORK/serve.out")

python3 - "$ADDR" "$SERVE_PID" "$HOSTS" <<'PY'
import json, sys, time, urllib.request
addr, pid, hosts = sys.argv[1], sys.argv[2], int(sys.argv[3])
def get(path):
    t = time.perf_counter()
    body = urllib.request.urlopen(f"http://{addr}{path}", timeout=120).read()
    return time.perf_counter() - t, body
while json.loads(get("/api/status")[1])["pass"] < 1:
    time.sleep(0.5)
status = json.loads(get("/api/status")[1])
counts = status["counts"]
def best(path, n=5):
    times = [get(path) for _ in range(n)]
    return min(t for t, _ in times) * 1000, len(times[0][1])
m_ms, m_len = best("/metrics")
s_ms, s_len = best("/api/status")
def wd(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:9519{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None, headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=120).read())["value"]
for _ in range(50):
    try:
        sid = wd("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}}}})["sessionId"]
        break
    except Exception:
        time.sleep(0.2)
loads = []
for _ in range(3):
    wd("POST", f"/session/{sid}/url", {"url": f"http://{addr}/"})
    ms = wd("POST", f"/session/{sid}/execute/async", {"args": [hosts], "script": """
        const [n, done] = arguments;
        (function wait() {
          if (document.querySelectorAll('#grid .cell').length === n) done(performance.now());
          else setTimeout(wait, 10);
        })();"""})
    loads.append(ms)
# A live update that changes every host's state (the worst case for one SSE message).
upd = wd("POST", f"/session/{sid}/execute/sync", {"args": [], "script": """
    const changed = [...hosts.values()].map(h => Object.assign({}, h, {state: h.state === 'drifted' ? 'converged' : 'drifted'}));
    const msg = {pass: 99, at_ms: Date.now(), counts: {}, rollout: null, problems: [], changed, total: hosts.size};
    const t = performance.now(); update(msg); return performance.now() - t;"""})
wd("DELETE", f"/session/{sid}")
st = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status") if ":" in l)
print(f"{hosts} simulated hosts; states {counts}; first check pass {status['check_ms']} ms")
print()
print("| measure | value |")
print("|---|---|")
print(f"| grid page load, navigation to {hosts} cells drawn (3 loads) | {', '.join(f'{x:.0f} ms' for x in loads)} |")
print(f"| live update changing all {hosts} cells (one SSE message applied) | {upd:.0f} ms |")
print(f"| /metrics render + transfer (best of 5) | {m_ms:.0f} ms ({m_len // 1024} KiB) |")
print(f"| /api/status render + transfer (best of 5) | {s_ms:.0f} ms ({s_len // 1024} KiB) |")
print(f"| server RSS now / peak | {int(st['VmRSS'].split()[0]) // 1024} MiB / {int(st['VmHWM'].split()[0]) // 1024} MiB |")
PY
