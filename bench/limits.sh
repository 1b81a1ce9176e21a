#!/usr/bin/env bash
# bench/limits.sh: issue 18's cost figure of the request budgets: GET /api/v1/store
# (shopbench `store`) on a shopd with SHOPD_RATE_LIMIT=false and on one with
# SHOPD_RATE_LIMIT=true, in one run on this machine, into
# bench/results/<date>-<commit>-limits.md and .json. Goal: the limits cost under 5%.
#
#   bench/limits.sh                        ROUNDS (default 10) rounds of DURATION (3) s
#   PERF=1 bench/limits.sh                 also where the time goes (perf, cpu-clock)
#   CALLGRIND=1 bench/limits.sh            also instructions per request (valgrind)
#
# Both binaries are this tree's Release build, run at once (idle but for the one
# measured) on one private PostgreSQL and Redis (scripts/services.sh), each on a free
# port with the access log off. `on` has its budgets set far above what the run can
# spend (SHOPD_RATE_WINDOW=1, 10^6 reads per address and per store each second: never
# refused, every request still takes its two budgets, gets the RateLimit header lines
# and the sync thread pushes them to Redis every 200 ms), so the figure is the cost of
# counting, not of refusing. A 2 s warm-up run on each, then ROUNDS rounds of one
# measured run of each, the order flipped every round (off-on, on-off, ...), so a
# change in the machine's load hits both alike; each round's on/off ratio is taken of
# runs a few seconds apart. Each round ends with both loaded at once (half the
# connections and one client thread each): the machine's load then hits both at
# the same instant. Reported: the median req/s of each, the median of the rounds'
# ratios (the figure) with every round's ratio and their spread, the same for the
# side-by-side runs, and shopd's CPU time per request (utime + stime from /proc).
#
# With PERF=1, after the rounds: `perf record -e cpu-clock -g` of each shopd during one
# more run of each, and the share of samples in the budget code (rate_check,
# rl_table_*, the header lines) of `on`; the reports stay in the work folder (KEEP).
# perf costs CPU, so the figures come from the rounds, never from these runs.
#
# With CALLGRIND=1, after the rounds: each setting under callgrind, twice (open loop,
# 100 and 500 requests/s for CG_SECONDS, default 5), and the instructions one more
# request costs, (Ir_500 - Ir_100) / (requests_500 - requests_100): a figure the
# machine's load does not move.
#
# Environment: BUILD_DIR (default build-release), ROUNDS, DURATION, CONNS (64), THREADS
# (2), PERF=1, CALLGRIND=1, CG_SECONDS, KEEP=1 (keep the work folder: logs, every
# run's report). About ROUNDS x 3 x DURATION s plus a minute of build and setup on
# 2 cores (CALLGRIND=1: a minute more).
# Everything it started is stopped at the end, also on failure or Ctrl-C.
set -euo pipefail

case ${1:-} in
-h | --help)
    sed -n '2,/^set -e/{/^set -e/d;p}' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
"") ;;
*)
    echo "bench/limits.sh: unknown argument $1 (try --help)" >&2
    exit 2
    ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-release}
ROUNDS=${ROUNDS:-10}
DURATION=${DURATION:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PERF=${PERF:-0}

BENCH_NAME="limits"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, wait_http, bench_init

declare -A PIDS=() URLS=() CG_RAW=()
PERF_PID=""
# At the end, before PIDS: perf is interrupted (INT), so that it writes its data.
bench_cleanup_hook() { bench_stop INT "$PERF_PID"; }
BENCH_KEEPS="shopd-*.log, runs/, perf-*"
# No "shopd" in the work folder's name nor in the server's: a broad `pkill shopd` (or
# -f) of someone else's script on a shared machine must not stop this run halfway
# (it did, twice, while this script was written).
bench_init limits-bench
chmod 755 "$WORK" # PostgreSQL runs as `postgres` and must reach its data folder
RUNS=$WORK/runs
mkdir -p "$RUNS"
[[ $PERF == 1 ]] && KEEP=1

for t in jq curl ss; do command -v "$t" >/dev/null || die "$t is needed"; done
if [[ $PERF == 1 ]]; then command -v perf >/dev/null || die "PERF=1 needs perf (linux-perf)"; fi

# ---- build -------------------------------------------------------------------------
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shopd shopbench >&2
SHOPBENCH=$BUILD/bench/shopbench
for b in "$BUILD/shopd" "$SHOPBENCH"; do [[ -x $b ]] || die "$b was not built"; done
cp "$BUILD/shopd" "$WORK/limits-server"
SHOPD=$WORK/limits-server
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo nocommit)
if [[ $COMMIT != nocommit && -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    COMMIT=$COMMIT-dirty
fi

# ---- services, schema, the store ----------------------------------------------------------
log "starting PostgreSQL and Redis in $SVC"
"$ROOT/scripts/services.sh" start "$SVC" >/dev/null
# shellcheck disable=SC1091
source "$SVC/env"
export SHOPD_DATABASE_URL SHOPD_REDIS_URL SHOPD_SQL_DIR=$ROOT/sql
"$SHOPD" migrate >"$WORK/migrate.log" 2>&1 || die "migration failed: $(tail -n 5 "$WORK/migrate.log")"
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SHOPD_PLATFORM_TOKEN=$TOKEN

# start NAME RATE_LIMIT: a shopd on a free port (retried if the port was taken
# meanwhile), waits for /healthz. Both share the database and Redis db 0: the store
# they serve is the same row, and `off` never writes to Redis for budgets.
start() {
    local name=$1 limit=$2 port pid
    for _ in 1 2 3; do
        port=$(free_port)
        SHOPD_LISTEN=127.0.0.1:$port SHOPD_ADMIN_LISTEN= SHOPD_ACCESS_LOG=false SHOPD_MIGRATE=false \
            SHOPD_AUTH_RATE_IP=0 SHOPD_AUTH_RATE_ACCOUNT=0 SHOPD_RATE_LIMIT=$limit \
            SHOPD_RATE_WINDOW=1 SHOPD_RATE_READS_IP=1000000 SHOPD_RATE_READS_STORE=1000000 \
            SHOPD_RATE_READS_USER=1000000 \
            SHOPD_OUTBOX_DIR="$WORK/outbox" "$SHOPD" serve >>"$WORK/shopd-$name.log" 2>&1 &
        pid=$!
        for _ in $(seq 1 150); do
            if curl -sf -o /dev/null "http://127.0.0.1:$port/healthz"; then
                PIDS[$name]=$pid
                URLS[$name]=http://127.0.0.1:$port
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        grep -q 'Address already in use' "$WORK/shopd-$name.log" || break
    done
    die "shopd ($name) did not start: $(tail -n 5 "$WORK/shopd-$name.log")"
}

start off false
start on true
code=$(curl -s -o "$WORK/post.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"slug":"demo","name":"Demo","currency":"USD"}' \
    "${URLS[off]}/api/v1/stores")
[[ $code == 201 || $code == 409 ]] || die "POST /api/v1/stores answered $code: $(cat "$WORK/post.json")"
# `on` really counts: its answers carry the budget, `off`'s do not.
curl -s -D "$WORK/on.h" -o /dev/null -H 'X-Tenant-Id: demo' "${URLS[on]}/api/v1/store"
curl -s -D "$WORK/off.h" -o /dev/null -H 'X-Tenant-Id: demo' "${URLS[off]}/api/v1/store"
grep -qi '^RateLimit-Remaining:' "$WORK/on.h" || die "shopd (on) sends no RateLimit headers"
! grep -qi '^RateLimit-' "$WORK/off.h" || die "shopd (off) sends RateLimit headers"

# cpu_ticks NAME: shopd's utime + stime so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${PIDS[$1]}/stat"; }
HZ=$(getconf CLK_TCK)

# run NAME LABEL SECONDS: one closed-loop shopbench run against NAME, no warm-up
# inside (the servers stay up and warm between runs), into runs/LABEL.json, with
# shopd's CPU ticks during it added to the report as .cpu_ticks.
run() {
    local name=$1 label=$2 secs=$3 t0
    t0=$(cpu_ticks "$name")
    sb_start "$name" "$label" "$secs" "$CONNS" "$THREADS"
    sb_finish "$name" "$label" "$t0"
}

# sb_start NAME LABEL SECONDS CONNS THREADS: shopbench against NAME in the background
# (SB_PID); sb_finish NAME LABEL T0 waits for it and writes runs/LABEL.json.
sb_start() {
    local name=$1 label=$2 secs=$3 conns=$4 threads=$5
    "$SHOPBENCH" -t "$threads" -c "$conns" -d "$secs" -w 0 --tenant demo --label "$label" \
        --build-type Release --json "$RUNS/$label.raw" "${URLS[$name]}" store \
        >"$RUNS/$label.txt" 2>&1 &
    SB_PID=$!
}

sb_finish() {
    local name=$1 label=$2 t0=$3 t1 pid=$SB_PID
    [[ $# -ge 4 ]] && pid=$4
    wait "$pid" || {
        tail -n 8 "$RUNS/$label.txt" >&2
        kill -0 "${PIDS[$name]}" 2>/dev/null || log "shopd ($name) is gone: $(tail -n 2 "$WORK/shopd-$name.log")"
        die "run $label had failures"
    }
    t1=$(cpu_ticks "$name")
    jq -c --argjson ticks "$((t1 - t0))" --argjson hz "$HZ" --arg name "$name" \
        '{label: .label, server: $name, date: .date, requests: .results.requests, ok: .results.ok,
          rejected: .results.rejected, failures: .results.failures, rps: .results.requests_per_s,
          p50_us: .results.latency.p50, p99_us: .results.latency.p99,
          cpu_us_per_req: (if .results.requests > 0 then $ticks * 1000000 / $hz / .results.requests else null end)}' \
        "$RUNS/$label.raw" >"$RUNS/$label.json"
    jq -e '.rejected == 0 and .failures == 0' "$RUNS/$label.json" >/dev/null ||
        die "run $label had refused or failed requests: $(cat "$RUNS/$label.json")"
    log "$label: $(jq -r '"\(.rps | floor) req/s, \(.cpu_us_per_req | . * 10 | round / 10) us CPU/req"' "$RUNS/$label.json")"
}

# run_pair ROUND: both servers loaded at the same time, half the connections and one
# client thread each: whatever else the machine does then hits both at the same
# instant, and with the cores saturated each server gets about the same CPU, so the
# rates' ratio is about the inverse of the CPU cost per request.
run_pair() {
    local r=$1 t0off t0on poff pon
    t0off=$(cpu_ticks off)
    t0on=$(cpu_ticks on)
    sb_start off "pair-off@$r" "$DURATION" "$((CONNS / 2))" 1
    poff=$SB_PID
    sb_start on "pair-on@$r" "$DURATION" "$((CONNS / 2))" 1
    pon=$SB_PID
    sb_finish off "pair-off@$r" "$t0off" "$poff"
    sb_finish on "pair-on@$r" "$t0on" "$pon"
}

log "warm-up: 2 s on each"
run off warm-off 2
run on warm-on 2
for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2)); then order=(off on); else order=(on off); fi
    for n in "${order[@]}"; do run "$n" "$n@$r" "$DURATION"; done
    run_pair "$r"
done

# ---- where the time goes (PERF=1) --------------------------------------------------------
perf_run() {
    local name=$1
    perf record -e cpu-clock -g -o "$WORK/perf-$name.data" -p "${PIDS[$name]}" -- sleep "$DURATION" \
        >"$WORK/perf-$name.log" 2>&1 &
    PERF_PID=$!
    run "$name" "perf-$name" "$DURATION"
    wait "$PERF_PID" || true
    PERF_PID=""
    perf report -i "$WORK/perf-$name.data" --no-children --sort symbol --percent-limit 0.5 --stdio \
        -g none 2>/dev/null >"$WORK/perf-$name.txt" || true
    # Self time per symbol, every symbol (for the budget code's share).
    perf report -i "$WORK/perf-$name.data" --no-children --sort symbol --stdio -g none \
        2>/dev/null | awk '$1 ~ /%$/ && $2 ~ /^\[/ { sub("%", "", $1); print $1 "\t" $3 }' >"$WORK/perf-$name.tsv" || true
    # The kernel's symbols ([k]), to split the samples between user space and kernel.
    perf report -i "$WORK/perf-$name.data" --no-children --sort symbol --stdio -g none \
        2>/dev/null | awk '$1 ~ /%$/ && $2 == "[k]" { print "k\t" $3 }' >"$WORK/perf-$name.kernel" || true
}
if [[ $PERF == 1 ]]; then
    log "perf: one more run of each"
    perf_run off
    perf_run on
fi

# ---- instructions per request (CALLGRIND=1) ---------------------------------------------
# The rounds' req/s move by several percent between rounds on a shared VM, which
# is the size of what is measured; instruction counts do not. Each setting runs
# twice under callgrind (1 I/O thread, 1 worker), CG_SECONDS each, at two fixed
# request rates (open loop); (Ir_high - Ir_low) / (requests_high - requests_low)
# is the instructions one more request costs: start-up, shutdown and what the
# timers do while idle (the same in both runs of a setting) cancel out.
# cg_once NAME RATE_LIMIT RATE: one run; sets CG_IR (instructions, whole process)
# and CG_N (requests answered).
cg_once() {
    local name=$1 limit=$2 rate=$3 port pid out=$WORK/cg-$1-$3.out
    port=$(free_port)
    SHOPD_LISTEN=127.0.0.1:$port SHOPD_ADMIN_LISTEN= SHOPD_ACCESS_LOG=false SHOPD_MIGRATE=false \
        SHOPD_AUTH_RATE_IP=0 SHOPD_AUTH_RATE_ACCOUNT=0 SHOPD_RATE_LIMIT=$limit SHOPD_IO_THREADS=1 \
        SHOPD_WORKERS=1 SHOPD_RATE_WINDOW=1 SHOPD_RATE_READS_IP=1000000 SHOPD_RATE_READS_STORE=1000000 \
        SHOPD_RATE_READS_USER=1000000 \
        SHOPD_OUTBOX_DIR="$WORK/outbox" valgrind --tool=callgrind --callgrind-out-file="$out" "$SHOPD" serve >>"$WORK/cg-$name.log" 2>&1 &
    pid=$!
    PIDS[cg]=$pid
    for _ in $(seq 1 600); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
        kill -0 "$pid" 2>/dev/null || die "shopd under callgrind exited: $(tail -n 5 "$WORK/cg-$name.log")"
        sleep 0.1
    done
    "$SHOPBENCH" -t 1 -c 8 -d "$CG_SECONDS" -w 0 -R "$rate" --timeout 10 --tenant demo \
        --json "$RUNS/cg-$name-$rate.raw" "http://127.0.0.1:$port" store >"$RUNS/cg-$name-$rate.txt" 2>&1 ||
        die "callgrind run $name at $rate/s had failures: $(tail -n 5 "$RUNS/cg-$name-$rate.txt")"
    kill -TERM "$pid"
    wait "$pid" || die "shopd under callgrind did not stop cleanly: $(tail -n 5 "$WORK/cg-$name.log")"
    unset "PIDS[cg]"
    CG_IR=$(awk '/^(summary|totals):/ { print $2; exit }' "$out")
    CG_N=$(jq '.results.ok' "$RUNS/cg-$name-$rate.raw")
    [[ -n $CG_IR && $CG_N -gt 0 ]] || die "no callgrind total in $out"
}
CG_LINE=""
if [[ ${CALLGRIND:-0} == 1 ]]; then
    command -v valgrind >/dev/null || die "CALLGRIND=1 needs valgrind"
    CG_SECONDS=${CG_SECONDS:-5}
    declare -A CG
    for name in off on; do
        limit=false
        [[ $name == on ]] && limit=true
        log "callgrind: $name at 100 and 500 requests/s, ${CG_SECONDS} s each"
        cg_once "$name" "$limit" 100
        ir1=$CG_IR n1=$CG_N
        cg_once "$name" "$limit" 500
        ir2=$CG_IR n2=$CG_N
        CG[$name]=$(awk -v a="$ir1" -v b="$ir2" -v m="$n1" -v n="$n2" 'BEGIN { printf "%.0f", (b - a) / (n - m) }')
        log "callgrind $name: $ir1 Ir / $n1 requests, $ir2 Ir / $n2 requests: ${CG[$name]} Ir per request"
        CG_RAW[$name]="$ir1 Ir for $n1 requests, $ir2 Ir for $n2"
    done
    CG_LINE="Instructions per request (callgrind, 1 I/O thread + 1 worker, the difference of two ${CG_SECONDS} s runs at 100 and 500 requests/s): off ${CG[off]}, on ${CG[on]}: **$(awk -v a="${CG[off]}" -v b="${CG[on]}" 'BEGIN { printf "%+.1f%%", (b / a - 1) * 100 }')** (off: ${CG_RAW[off]}; on: ${CG_RAW[on]})."
fi

# ---- report -----------------------------------------------------------------------------
DATE=$(date -u +%Y-%m-%d)
mkdir -p "$ROOT/bench/results"
STEM=$ROOT/bench/results/$DATE-$COMMIT-limits
jq -s -c 'map({(.label): .}) | add' "$RUNS"/*.json >"$STEM.json"

# A figure's median over the rounds: med SERVER FIELD.
med() {
    jq -r --arg s "$1" --arg f "$2" '[to_entries[] | select(.key | test("^" + $s + "@")) | .value[$f]]
        | sort | if length == 0 then "-" else (if length % 2 == 1 then .[(length - 1) / 2]
          else (.[length / 2 - 1] + .[length / 2]) / 2 end) end' "$STEM.json"
}
# Each round's on/off ratio of FIELD, then their median.
ratios() {
    jq -r --arg f "$1" '[range(1; 1 + ($ENV.ROUNDS | tonumber)) as $r
        | (.["on@\($r)"][$f] / .["off@\($r)"][$f])] | map(. * 1000 | round / 1000)' "$STEM.json"
}
export ROUNDS
medof() { jq -r 'sort | if length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end | . * 1000 | round / 1000'; }
RPS_RATIOS=$(ratios rps)
PAIR_RATIOS=$(jq -r '[range(1; 1 + ($ENV.ROUNDS | tonumber)) as $r
    | (.["pair-on@\($r)"].rps / .["pair-off@\($r)"].rps)] | map(. * 1000 | round / 1000)' "$STEM.json")
PAIR_MED=$(medof <<<"$PAIR_RATIOS")
PAIR_OVER=$(awk -v r="$PAIR_MED" 'BEGIN { printf "%.1f", (1 - r) * 100 }')
PAIR_IQR=$(jq -r 'sort | (length - 1) as $m | (.[($m * 3 / 4) | ceil] - .[($m / 4) | floor]) | . * 1000 | round / 1000' <<<"$PAIR_RATIOS")
CPU_RATIOS=$(ratios cpu_us_per_req)
RPS_MED=$(medof <<<"$RPS_RATIOS")
CPU_MED=$(medof <<<"$CPU_RATIOS")
OVERHEAD=$(awk -v r="$RPS_MED" 'BEGIN { printf "%.1f", (1 - r) * 100 }')
CPU_OVER=$(awk -v r="$CPU_MED" 'BEGIN { printf "%+.1f", (r - 1) * 100 }')
# The rounds' spread: the interquartile range of their ratios. When it is wider than
# the goal itself, the median says nothing about a 5% cost either way.
IQR=$(jq -r 'sort | (length - 1) as $m | (.[($m * 3 / 4) | ceil] - .[($m / 4) | floor]) | . * 1000 | round / 1000' <<<"$RPS_RATIOS")
VERDICT=$(awk -v o="$OVERHEAD" -v q="$IQR" 'BEGIN {
    if (q + 0 > 0.05) printf "not resolved: the middle half of the rounds spans %.1f%%", q * 100
    else print (o + 0 < 5 ? "met" : "missed") }')
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { if (v == "-") print "-"; else printf "%.*f", d, v }'; }

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
{
    echo "# The cost of the request budgets, $DATE ($COMMIT)"
    echo
    echo "- Machine: ${CPU:-unknown CPU}, $(nproc) cores, $(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo) MB RAM," \
        "$(uname -sr); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- **shopd (both), shopbench, PostgreSQL and Redis share these cores, and other work ran on" \
        "the machine meanwhile.** Compare the two columns of this run, not absolute figures."
    echo "- GET /api/v1/store (\`shopbench store\`, X-Tenant-Id: demo), closed loop, $THREADS client threads," \
        "$CONNS keep-alive connections; $ROUNDS rounds of $DURATION s per server, the order flipped each" \
        "round, after a 2 s warm-up of each. Release build of this tree, SHOPD_WORKERS default, access log off."
    echo "- \`off\`: SHOPD_RATE_LIMIT=false. \`on\`: SHOPD_RATE_LIMIT=true, SHOPD_RATE_WINDOW=1 and 10^6" \
        "reads per window per address, user and store: every request takes its two budgets (address," \
        "store) and carries the RateLimit headers, none is refused; the sync thread shares them through Redis."
    echo
    echo "| | off | on |"
    echo "|---|---:|---:|"
    echo "| req/s (median) | $(fmt "$(med off rps)") | $(fmt "$(med on rps)") |"
    echo "| p50 / p99 us (median) | $(fmt "$(med off p50_us)") / $(fmt "$(med off p99_us)") | $(fmt "$(med on p50_us)") / $(fmt "$(med on p99_us)") |"
    echo "| shopd CPU us per request (median) | $(fmt "$(med off cpu_us_per_req)" 2) | $(fmt "$(med on cpu_us_per_req)" 2) |"
    echo
    echo "**on / off req/s, median of the rounds' ratios: $RPS_MED, an overhead of $OVERHEAD%" \
        "(goal < 5%: $VERDICT).** Every round: $(jq -r 'join(", ")' <<<"$RPS_RATIOS")."
    echo
    echo "CPU per request, on / off: $CPU_MED ($CPU_OVER%); every round: $(jq -r 'join(", ")' <<<"$CPU_RATIOS")."
    echo
    echo "Side by side (both servers loaded at once, $((CONNS / 2)) connections and one client thread each," \
        "$DURATION s per round): on / off req/s, median $PAIR_MED, an overhead of $PAIR_OVER% (middle half" \
        "of the rounds spans $(awk -v q="$PAIR_IQR" 'BEGIN { printf "%.1f", q * 100 }')%); every round:" \
        "$(jq -r 'join(", ")' <<<"$PAIR_RATIOS")."
    if [[ -n $CG_LINE ]]; then
        echo
        echo "$CG_LINE"
        echo "(Repeat runs of one setting differ by about 1.5% of its count: the difference is good to a point or two.)"
    fi
    echo
    echo "| round | order | off req/s | on req/s | on / off | off CPU us/req | on CPU us/req |"
    echo "|---:|---|---:|---:|---:|---:|---:|"
    for r in $(seq 1 "$ROUNDS"); do
        if ((r % 2)); then o="off, on"; else o="on, off"; fi
        jq -r --arg r "$r" --arg o "$o" '.["off@" + $r] as $a | .["on@" + $r] as $b
            | "| \($r) | \($o) | \($a.rps | floor) | \($b.rps | floor) | \(($b.rps / $a.rps) * 1000 | round / 1000)"
              + " | \($a.cpu_us_per_req * 100 | round / 100) | \($b.cpu_us_per_req * 100 | round / 100) |"' "$STEM.json"
    done
    if [[ $PERF == 1 && -s $WORK/perf-on.tsv ]]; then
        echo
        echo "## Where the time goes (perf record -e cpu-clock -g, one more $DURATION s run of each)"
        echo
        share() { awk -F'\t' -v re="$2" '$2 ~ re { s += $1 } END { printf "%.2f", s }' "$WORK/perf-$1.tsv"; }
        RL_RE='^(rate_check|rl_table_|rl_|wall_us|net_req_add_header_lines|sync_once|sync_main)'
        echo "- Self time in the budget code (rate_check, rl_table_*, wall_us, the header lines, the" \
            "sync thread), share of shopd's samples: on $(share on "$RL_RE")%, off $(share off "$RL_RE")%."
        echo "- clock_gettime / vDSO (wall_us reads the clock per request): on $(share on '^(clock_gettime|__vdso|__clock_gettime)')%," \
            "off $(share off '^(clock_gettime|__vdso|__clock_gettime)')%; vfprintf / snprintf (header lines and keys):" \
            "on $(share on '^(__vfprintf|vfprintf|__printf|_IO_|snprintf|__vsnprintf|printf_positional)')%," \
            "off $(share off '^(__vfprintf|vfprintf|__printf|_IO_|snprintf|__vsnprintf|printf_positional)')%;" \
            "mutex lock/unlock: on $(share on '^(pthread_mutex|__pthread_mutex|___pthread_mutex|lll_)')%," \
            "off $(share off '^(pthread_mutex|__pthread_mutex|___pthread_mutex|lll_)')%."
        split() { awk -F'\t' 'NR == FNR { k[$2] = 1; next } { if ($2 in k) ks += $1; else us += $1 } END { printf "user %.1f%%, kernel %.1f%%", us, ks }' "$WORK/perf-$1.kernel" "$WORK/perf-$1.tsv"; }
        echo "- shopd's samples in user space and in the kernel (TCP, epoll, scheduling): on $(split on)," \
            "off $(split off). callgrind counts user-space instructions only, so its overhead weighs" \
            "about the user share of it in shopd's CPU."
        echo
        echo "Top symbols of \`on\` (self time):"
        echo
        echo '```'
        head -n 30 "$WORK/perf-on.tsv" | awk -F'\t' '{ printf "%6.2f%%  %s\n", $1, $2 }'
        echo '```'
    fi
} >"$STEM.md"
log "wrote $STEM.md and .json"
cat "$STEM.md"
