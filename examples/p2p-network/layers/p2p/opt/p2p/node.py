#!/usr/bin/python3
"""One peer of the example p2p network (bootnode or node).

Every peer listens on its p2p port for handshakes (`HELLO <name> <release>`,
answered `WELCOME <name> <release>`) and serves its state on its rpc port:
`/status` (JSON: name, hostname, kind, release, connected_to, peers) and `/health`
(200 once the peer is part of the network: a bootnode at once, a node when
a bootnode has welcomed it; 503 before). drover's health check reads
`/health`, so an apply or a rollout batch only counts when every node really
joined the network.

A node reads the bootnode list from the file drover renders from
`fleet.services.bootnode`, re-reading it on every attempt, and keeps
handshaking (a heartbeat) with the first bootnode that answers; it starts
at a bootnode chosen by its name, so nodes spread over the bootnodes.
Bootnodes forget peers they have not heard from for PEER_TTL seconds, so a
removed node disappears from their peer lists.
"""

import argparse
import json
import re
import socket
import socketserver
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEARTBEAT = 1.0
RETRY = 0.3
PEER_TTL = 5.0


class Peer:
    def __init__(self, args):
        self.name = args.name
        self.release = args.release
        self.kind = "node" if args.bootnodes else "bootnode"
        self.bootnodes_file = args.bootnodes
        self.lock = threading.Lock()
        self.connected_to = None
        self.peers = {}  # name -> (release, last seen)

    def status(self):
        with self.lock:
            now = time.monotonic()
            peers = sorted(n for n, (_, seen) in self.peers.items() if now - seen < PEER_TTL)
            return {
                "name": self.name,
                "hostname": socket.gethostname(),
                "kind": self.kind,
                "release": self.release,
                "connected_to": self.connected_to,
                "peers": peers,
            }

    def healthy(self):
        return self.kind == "bootnode" or self.connected_to is not None

    def welcome(self, name, release):
        with self.lock:
            if name not in self.peers:
                log(f"{self.name}: peer {name} ({release}) joined")
            self.peers[name] = (release, time.monotonic())

    def bootnodes(self):
        """The bootnodes, rotated so that each node starts at its own one."""
        try:
            with open(self.bootnodes_file) as f:
                boots = json.load(f)
        except (OSError, ValueError) as e:
            log(f"{self.name}: cannot read {self.bootnodes_file}: {e}")
            return []
        if not boots:
            return []
        start = zlib.crc32(self.name.encode()) % len(boots)
        return boots[start:] + boots[:start]

    def dial(self):
        """Handshake with bootnodes forever: the current one first."""
        while True:
            boots = self.bootnodes()
            current = self.connected_to
            boots.sort(key=lambda b: b["name"] != current)  # stable: keeps the rotation otherwise
            joined = None
            for b in boots:
                try:
                    joined = handshake(b["address"], b["ports"]["p2p"], self.name, self.release)
                    break
                except (OSError, ValueError) as e:
                    log(f"{self.name}: bootnode {b['name']} at {b['address']}:{b['ports']['p2p']}: {e}")
            with self.lock:
                if joined != self.connected_to:
                    log(f"{self.name}: connected to {joined}" if joined else f"{self.name}: no bootnode answers")
                self.connected_to = joined
            time.sleep(HEARTBEAT if joined else RETRY)


def handshake(address, port, name, release):
    with socket.create_connection((address, port), timeout=1.0) as s:
        s.sendall(f"HELLO {name} {release}\n".encode())
        reply = s.makefile().readline().split()
    if len(reply) != 3 or reply[0] != "WELCOME":
        raise ValueError(f"unexpected answer {reply!r}")
    return reply[1]


def log(msg):
    print(msg, flush=True)


def serve_p2p(peer, port):
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            self.connection.settimeout(2.0)
            words = self.rfile.readline().decode(errors="replace").split()
            if len(words) == 3 and words[0] == "HELLO":
                peer.welcome(words[1], words[2])
                self.wfile.write(f"WELCOME {peer.name} {peer.release}\n".encode())

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    server = socketserver.ThreadingTCPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def serve_rpc(peer, port):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/status":
                self.reply(200, json.dumps(peer.status()))
            elif self.path == "/health":
                ok = peer.healthy()
                self.reply(200 if ok else 503, "ok\n" if ok else "not connected to a bootnode\n")
            else:
                self.reply(404, "try /status or /health\n")

        def reply(self, code, body):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_):
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--p2p", type=int, required=True, help="port for handshakes")
    ap.add_argument("--rpc", type=int, required=True, help="port for /status and /health")
    ap.add_argument("--release", required=True)
    ap.add_argument("--bootnodes", help="JSON list of bootnode instances; without it, this peer is a bootnode")
    args = ap.parse_args()
    if not re.fullmatch(r"v\d+(\.\d+)*", args.release):
        # A mistyped release must not join the network under a name other
        # peers cannot compare: refuse to start (so its health check fails
        # and drover rolls the host back).
        ap.error(f"release {args.release!r} is not v<major>[.<minor>...] (e.g. v2, v2.1)")
    peer = Peer(args)
    serve_p2p(peer, args.p2p)
    log(f"{peer.name}: {peer.kind} {peer.release} on p2p :{args.p2p}, rpc :{args.rpc}")
    if peer.kind == "node":
        threading.Thread(target=peer.dial, daemon=True).start()
    serve_rpc(peer, args.rpc)


if __name__ == "__main__":
    main()
