#!/usr/bin/python3
"""The example p2p network's monitor.

Reads the discovery file drover renders from `{{ fleet.services | tojson }}`
(every service's instances with host, address and ports) afresh on every
round, so instances added or removed by `drover scale` are polled without a
restart. Each round asks every instance that has an rpc port for `/status`
and keeps the result; `/summary` serves the last complete round:

    {"round": N, "instances": {"node-3": {"service", "host", "address",
      "up", "hostname", "release", "connected_to", "peers"}, ...},
     "nodes": {"total", "up", "connected"}, "releases": {"v1": 12}}
"""

import argparse
import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

summary = {"round": 0, "instances": {}, "nodes": {"total": 0, "up": 0, "connected": 0}, "releases": {}}
lock = threading.Lock()


def poll(inst):
    url = f"http://{inst['address']}:{inst['ports']['rpc']}/status"
    row = {"service": inst["service"], "host": inst["host"], "address": inst["address"], "up": False}
    try:
        with urllib.request.urlopen(url, timeout=2.0) as r:
            st = json.load(r)
        row.update(
            up=True,
            hostname=st.get("hostname"),
            release=st.get("release"),
            connected_to=st.get("connected_to"),
            peers=st.get("peers", []),
        )
    except (OSError, ValueError) as e:
        row["error"] = str(e)
    return inst["name"], row


def rounds(discovery, interval):
    global summary
    n = 0
    with ThreadPoolExecutor(max_workers=32) as pool:
        while True:
            n += 1
            try:
                with open(discovery) as f:
                    services = json.load(f)
            except (OSError, ValueError) as e:
                print(f"cannot read {discovery}: {e}", flush=True)
                services = {}
            targets = [
                dict(i, service=i.get("service", svc))
                for svc, insts in services.items()
                for i in insts
                if "rpc" in i.get("ports", {})
            ]
            rows = dict(pool.map(poll, targets))
            nodes = [r for r in rows.values() if r["service"] == "node"]
            releases = {}
            for r in nodes:
                if r["up"]:
                    releases[r["release"]] = releases.get(r["release"], 0) + 1
            new = {
                "round": n,
                "instances": rows,
                "nodes": {
                    "total": len(nodes),
                    "up": sum(r["up"] for r in nodes),
                    "connected": sum(bool(r.get("connected_to")) for r in nodes),
                },
                "releases": releases,
            }
            with lock:
                summary = new
            time.sleep(interval)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True, help="serves /summary and /health")
    ap.add_argument("--discovery", default="/etc/p2p/discovery.json")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between rounds")
    args = ap.parse_args()
    threading.Thread(target=rounds, args=(args.discovery, args.interval), daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/summary":
                with lock:
                    body, code = json.dumps(summary), 200
            elif self.path == "/health":
                body, code = "ok\n", 200
            else:
                body, code = "try /summary\n", 404
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_):
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    print(f"monitor on :{args.port}, discovery {args.discovery}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
