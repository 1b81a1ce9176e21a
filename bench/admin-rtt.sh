#!/usr/bin/env bash
# admin-rtt.sh: issue 15's admin figures against a running shopd: the admin
# round trip (p50/p99 of a pipelined-free request/answer) with the HTTP side
# idle and then under shopbench load, and the HTTP rate with and without a busy
# admin port.
#
#   bench/admin-rtt.sh HTTP_URL ADMIN_HOST:PORT ADMIN_TOKEN [SECONDS] [OP]
#
# OP is the admin operation timed (default stores.get of store 1, a worker
# round trip; "ping" measures the I/O thread alone). Needs build-release/bench/
# shopbench (or SHOPBENCH) and python3. Prints a small Markdown table.
set -euo pipefail
URL=${1:?usage: bench/admin-rtt.sh HTTP_URL ADMIN_HOST:PORT ADMIN_TOKEN [SECONDS] [OP]}
ADMIN=${2:?admin host:port}
TOKEN=${3:?admin token}
SECS=${4:-10}
OP=${5:-stores.get}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHOPBENCH=${SHOPBENCH:-$ROOT/build-release/bench/shopbench}
[[ -x $SHOPBENCH ]] || SHOPBENCH=$ROOT/build/bench/shopbench
[[ -x $SHOPBENCH ]] || { echo "admin-rtt: no shopbench (build the shopbench target)" >&2; exit 2; }
WORK=$(mktemp -d /tmp/shopd-admin-rtt.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The admin client: hello, then one request at a time for SECS seconds; prints
# "count p50_us p99_us max_us". msgpack by hand (maps, strings, small ints):
# enough for these frames, and no package to install.
rtt() {
    python3 - "$ADMIN" "$TOKEN" "$1" "$OP" <<'EOF'
import socket, struct, sys, time
host, port = sys.argv[1].rsplit(':', 1)
token, secs, op = sys.argv[2], float(sys.argv[3]), sys.argv[4]
def mp(v):
    if isinstance(v, bool): return b'\xc3' if v else b'\xc2'
    if isinstance(v, int): return bytes([v]) if 0 <= v < 128 else b'\xd3' + struct.pack('>q', v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b'\xd9' + bytes([len(b)])) + b
    if isinstance(v, dict): return bytes([0x80 | len(v)]) + b''.join(mp(k) + mp(x) for k, x in v.items())
    raise ValueError(v)
def frame(v):
    b = mp(v)
    return struct.pack('>I', len(b)) + b
s = socket.create_connection((host, int(port)))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def read():
    h = b''
    while len(h) < 4:
        h += s.recv(4 - len(h))
    n = struct.unpack('>I', h)[0]
    b = b''
    while len(b) < n:
        b += s.recv(n - len(b))
    return b
s.sendall(frame({'op': 'hello', 'version': 1, 'token': token}))
if b'\xa2ok\xc3' not in read():
    sys.exit('admin-rtt: hello refused')
args = {'id': '1'} if op == 'stores.get' else {}
lat = []
end = time.monotonic() + secs
i = 0
while time.monotonic() < end:
    i = (i + 1) % 100
    t = time.monotonic_ns()
    s.sendall(frame({'id': i, 'op': op, 'args': args}))
    read()
    lat.append((time.monotonic_ns() - t) // 1000)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
print(len(lat), q(0.5), q(0.99), lat[-1])
EOF
}

# HTTP rate (requests/s) of shopbench's store scenario for SECS seconds.
http_rate() {
    "$SHOPBENCH" -c 64 -d "$SECS" -w 1 --json "$WORK/$1.json" "$URL" store >"$WORK/$1.log" 2>&1 || true
    python3 -c '
import json, sys
def find(d):
    if isinstance(d, dict):
        if "requests_per_s" in d:
            return d["requests_per_s"]
        for v in d.values():
            r = find(v)
            if r is not None:
                return r
print(int(find(json.load(open(sys.argv[1]))) or 0))' "$WORK/$1.json" 2>/dev/null || echo "?"
}

read -r n0 p50_0 p99_0 max0 < <(rtt "$SECS")
base_rate=$(http_rate idle)
rtt "$SECS" >"$WORK/loaded" &
rpid=$!
loaded_rate=$(http_rate loaded)
wait "$rpid"
read -r n1 p50_1 p99_1 max1 <"$WORK/loaded"

echo "| admin $OP | requests | p50 us | p99 us | max us | HTTP store rate |"
echo "|---|---|---|---|---|---|"
echo "| HTTP idle | $n0 | $p50_0 | $p99_0 | $max0 | $base_rate (admin idle) |"
echo "| HTTP at full speed | $n1 | $p50_1 | $p99_1 | $max1 | $loaded_rate (admin busy) |"
