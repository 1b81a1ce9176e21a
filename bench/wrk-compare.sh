#!/usr/bin/env bash
# wrk-compare.sh: how close shopd's GET /api/v1/store comes to a bare libevent
# server on the same machine. Starts shopd-bare on a free port (threads =
# cores), then measures both with wrk and with shopbench using the same
# request (GET /api/v1/store, X-Tenant-Id), and prints each rate and the ratio
# shopd / bare.
#
#   bench/wrk-compare.sh [URL] [TENANT]      default: http://127.0.0.1:8080 demo
#
# Environment: BUILD_DIR (folder with bench/shopd-bare and bench/shopbench;
# default build-release, then build), DURATION (seconds, default 10), CONNS
# (default 64), THREADS (client threads, default 2), MD (append Markdown rows
# to this file), JSON_PREFIX (write shopbench JSON as PREFIX-bare.json and
# PREFIX-shopd.json). The load generator and both servers share this machine,
# so the ratio means more than the absolute figures.
set -euo pipefail

URL=${1:-http://127.0.0.1:8080}
URL=${URL%/}
TENANT=${2:-demo}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() {
    echo "wrk-compare.sh: $*" >&2
    exit 1
}

find_bin() {
    local name=$1 dir
    for dir in ${BUILD_DIR:+"$BUILD_DIR"} "$ROOT/build-release" "$ROOT/build"; do
        if [[ -x $dir/bench/$name ]]; then
            echo "$dir/bench/$name"
            return
        fi
    done
    die "$name not found; build it: cmake --build build-release --target $name (or set BUILD_DIR)"
}

command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
BARE=$(find_bin shopd-bare)
SHOPBENCH=$(find_bin shopbench)

TMP=$(mktemp -d /tmp/wrk-compare.XXXXXX)
BARE_PID=""
cleanup() {
    if [[ -n $BARE_PID ]] && kill -0 "$BARE_PID" 2>/dev/null; then
        kill -INT "$BARE_PID" 2>/dev/null || true
        wait "$BARE_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Is shopd there, and does the tenant exist?
code=$(curl -s -o "$TMP/probe" -w '%{http_code}' -H "X-Tenant-Id: $TENANT" "$URL/api/v1/store" || true)
[[ $code == 200 ]] || die "GET $URL/api/v1/store (X-Tenant-Id: $TENANT) answered '$code', not 200: is shopd running and does the store exist?"

CORES=$(nproc)
"$BARE" -p 0 -t "$CORES" >"$TMP/bare.out" 2>&1 &
BARE_PID=$!
BARE_PORT=""
for _ in $(seq 1 100); do
    BARE_PORT=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$TMP/bare.out")
    [[ -n $BARE_PORT ]] && break
    kill -0 "$BARE_PID" 2>/dev/null || break
    sleep 0.05
done
[[ -n $BARE_PORT ]] || die "shopd-bare did not start: $(cat "$TMP/bare.out")"
BARE_URL=http://127.0.0.1:$BARE_PORT

# wrk_run URL OUT: requests/s, p50, p99 and failures (non-2xx + socket errors)
# of a wrk run, tab-separated.
wrk_run() {
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -H "X-Tenant-Id: $TENANT" \
        "$1/api/v1/store" >"$2" 2>&1 || die "wrk failed: $(cat "$2")"
    awk '
        /Requests\/sec:/ { rps = $2 }
        /^ +50%/ { p50 = $2 }
        /^ +99%/ { p99 = $2 }
        /Non-2xx or 3xx responses:/ { bad += $NF }
        /Socket errors:/ { gsub(/,/, ""); bad += $4 + $6 + $8 + $10 }
        END { printf "%s\t%s\t%s\t%d\n", rps, p50, p99, bad }
    ' "$2"
}

# sb_run URL LABEL: requests/s, p50, p99 and failures of a shopbench run.
sb_run() {
    local json=()
    [[ -n ${JSON_PREFIX:-} ]] && json=(--json "$JSON_PREFIX-$2.json")
    rm -f "$TMP/row.md"
    "$SHOPBENCH" -t "$THREADS" -c "$CONNS" -d "$DURATION" -w 1 --tenant "$TENANT" \
        --label "$2" --md "$TMP/row.md" --max-errors 1000000000 "${json[@]}" "$1" store \
        >"$TMP/sb-$2.out" 2>&1 || die "shopbench failed: $(cat "$TMP/sb-$2.out")"
    # | label | scenario | model | threads x conns | req/s | p50 | p99 | p99.9 | max | failures |
    awk -F' *[|] *' '{ printf "%s\t%s\t%s\t%s\n", $6, $7, $8, $11 }' "$TMP/row.md"
}

echo "wrk-compare: shopd $URL (tenant $TENANT) vs shopd-bare $BARE_URL ($CORES threads);"
echo "  $THREADS client threads, $CONNS connections, ${DURATION} s each; clients and servers share $CORES cores"

# Plain redirections, not $(...): a failing run must stop the script (die).
wrk_run "$BARE_URL" "$TMP/wrk-bare" >"$TMP/r1"
wrk_run "$URL" "$TMP/wrk-shopd" >"$TMP/r2"
sb_run "$BARE_URL" bare >"$TMP/r3"
sb_run "$URL" shopd >"$TMP/r4"
IFS=$'\t' read -r w_bare_rps w_bare_p50 w_bare_p99 w_bare_bad <"$TMP/r1"
IFS=$'\t' read -r w_shop_rps w_shop_p50 w_shop_p99 w_shop_bad <"$TMP/r2"
IFS=$'\t' read -r s_bare_rps s_bare_p50 s_bare_p99 s_bare_bad <"$TMP/r3"
IFS=$'\t' read -r s_shop_rps s_shop_p50 s_shop_p99 s_shop_bad <"$TMP/r4"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
w_ratio=$(ratio "$w_shop_rps" "$w_bare_rps")
s_ratio=$(ratio "$s_shop_rps" "$s_bare_rps")

printf '\n%-12s %-10s %12s %10s %10s %9s\n' target tool "req/s" p50 p99 "failed"
printf '%-12s %-10s %12.0f %10s %10s %9s\n' shopd-bare wrk "$w_bare_rps" "$w_bare_p50" "$w_bare_p99" "$w_bare_bad"
printf '%-12s %-10s %12.0f %10s %10s %9s\n' shopd wrk "$w_shop_rps" "$w_shop_p50" "$w_shop_p99" "$w_shop_bad"
printf '%-12s %-10s %12.0f %10s %10s %9s\n' shopd-bare shopbench "$s_bare_rps" "$s_bare_p50" "$s_bare_p99" "$s_bare_bad"
printf '%-12s %-10s %12.0f %10s %10s %9s\n' shopd shopbench "$s_shop_rps" "$s_shop_p50" "$s_shop_p99" "$s_shop_bad"
echo
echo "ratio shopd / bare: $w_ratio (wrk), $s_ratio (shopbench)"

if [[ -n ${MD:-} ]]; then
    {
        echo "| target | tool | req/s | p50 | p99 | failed |"
        echo "|---|---|---:|---:|---:|---:|"
        printf '| shopd-bare (%s threads) | wrk | %.0f | %s | %s | %s |\n' "$CORES" "$w_bare_rps" "$w_bare_p50" "$w_bare_p99" "$w_bare_bad"
        printf '| shopd GET /api/v1/store | wrk | %.0f | %s | %s | %s |\n' "$w_shop_rps" "$w_shop_p50" "$w_shop_p99" "$w_shop_bad"
        printf '| shopd-bare (%s threads) | shopbench | %.0f | %s | %s | %s |\n' "$CORES" "$s_bare_rps" "$s_bare_p50" "$s_bare_p99" "$s_bare_bad"
        printf '| shopd GET /api/v1/store | shopbench | %.0f | %s | %s | %s |\n' "$s_shop_rps" "$s_shop_p50" "$s_shop_p99" "$s_shop_bad"
        echo
        echo "Ratio shopd / bare: **$w_ratio** (wrk), **$s_ratio** (shopbench)." \
            "wrk -t$THREADS -c$CONNS -d${DURATION}s; shopbench -t $THREADS -c $CONNS -d $DURATION, closed loop."
    } >>"$MD"
fi
