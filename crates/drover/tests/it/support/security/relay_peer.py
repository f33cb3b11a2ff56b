# A relay peer that does not know the run's secret, run as the unprivileged
# user `op` on a lab host by crates/drover/tests/security.rs. Prints one
# result line per probe; the test judges them.
#
#   relay_peer.py wrong  HOST PORT BLOB        answer the challenge with a made-up MAC
#   relay_peer.py replay HOST PORT LINE...     send an answer captured from another connection
#   relay_peer.py flood  HOST PORT N           hold N connections open, then try one more
#   relay_peer.py connect HOST PORT            can a connection be made at all?
import os, socket, sys

def line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            break
        buf += c
    return buf.decode().strip()

def conn(host, port):
    s = socket.create_connection((host, int(port)), timeout=10)
    return s

mode, host, port = sys.argv[1], sys.argv[2], sys.argv[3]
print("uid", os.getuid())
if mode == "wrong":
    s = conn(host, port)
    print("challenge", line(s))
    s.sendall(("%s 0 %s\n" % (sys.argv[4], "00" * 32)).encode())
    print("reply", line(s))
elif mode == "replay":
    s = conn(host, port)
    print("challenge", line(s))
    s.sendall((" ".join(sys.argv[4:]) + "\n").encode())
    print("reply", line(s))
elif mode == "flood":
    held = [conn(host, port) for _ in range(int(sys.argv[4]))]
    for s in held:
        print("held", line(s).split(" ")[0])
    extra = conn(host, port)
    print("extra", line(extra))
elif mode == "connect":
    try:
        s = conn(host, port)
        print("connected", line(s).split(" ")[0])
    except OSError as e:
        print("refused", e.errno)
