#!/usr/bin/env bash
# bench/runclass.sh: issue 10's run-class benchmarks, for this tree and, with
# BASE=<git rev>, for that revision too, in one run on this machine, into
# bench/results/<date>-<commit>-runclass.md and .json.
#
#   bench/runclass.sh                  this tree only
#   BASE=0f31277 bench/runclass.sh     that revision first, then this tree, side by side
#
# Measures, each run with a 1 s warm-up and DURATION (default 3) s measured,
# REPEAT (default 3) rounds, reporting the median of each figure:
#   list / list+login      uncached product list (`admin-list`, platform token,
#                          1 connection) alone, and while 4 connections log in
#                          to the same store without pause (goal: p50 <= 5x alone)
#   browse-w2 / browse-w1  `browse` on one store, 64 connections, SHOPD_WORKERS=2
#                          and 1 (also `admin-list` at 64: list-w2 / list-w1)
#   hot / hot+login        `hot-stock`, 32 connections, time-bounded (stock 10^6),
#                          alone and with 8 logins in the same store (goal: p99
#                          within 25%)
#   b / b+a-browse / b+a-list
#                          store B browses with 8 connections, alone and while
#                          store A is flooded by 64 (browse, then admin-list)
#                          (goal: B's p99 within 2x of alone)
#   bp / bp+a-browse / bp+a-list
#                          the same with B paced (open loop, B_RATE requests/s,
#                          default 2000, over its 8 connections): a store
#                          browsing normally while another floods. A closed-loop
#                          B saturates the machine alone, so a perfectly fair
#                          split halves its throughput and, by Little's law,
#                          doubles its latency: the paced runs show what the
#                          scheduler costs B without that arithmetic.
# A "while" case runs two shopbench processes at once: the load (logins, store
# A) starts 1 s before the measured one and ends after it.
#
# It builds Release in BUILD_DIR (default build-release: shopd, shopbench);
# BASE is checked out in a temporary git worktree and its shopd built in a
# temporary folder, then kept as build-base-<sha>/shopd so a rerun skips the
# build. shopbench is always this tree's. One private PostgreSQL and Redis
# (scripts/services.sh) serve both binaries, each with a database of its own
# migrated by that binary from its own sql/ and a Redis database of its own (an older
# binary only warns about newer migrations), which run side by side, each on a
# free port with a random platform token, access log and auth rate limits off;
# each measurement is taken of one binary, then of the other, so a change in
# the machine's load hits both columns alike.
# Everything it started is stopped at the end, also on failure or Ctrl-C.
#
# Environment: BASE, BUILD_DIR, DURATION, REPEAT, B_RATE, ONLY="b b+a-browse ..."
# (only those runs; the w1 runs when it names one), KEEP=1 (keep the work folder: logs,
# every run's output and JSON), PERF=<run>[,<run>...] (record `perf -e
# cpu-clock -g` of shopd during those runs of each binary, e.g.
# PERF=hot+login; the reports land in the work folder, which is then kept;
# perf costs CPU, so take figures from a run without it). About 1 minute per
# binary and round on 2 cores (BASE, 3 rounds: 6 minutes), plus the builds.
set -euo pipefail

case ${1:-} in
-h | --help)
    sed -n '2,/^set -e/{/^set -e/d;p}' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
"") ;;
*)
    echo "bench/runclass.sh: unknown argument $1 (try --help)" >&2
    exit 2
    ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-release}
DURATION=${DURATION:-3}
REPEAT=${REPEAT:-3}
B_RATE=${B_RATE:-2000}
WARMUP=1
PERF=${PERF:-}

BENCH_NAME="runclass"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, bench_init

SHOPD_PID=""
declare -A PIDS=() URLS=()
LOAD_PID=""
PERF_PID=""
BASE_SRC=""
# At the end, before PIDS (the servers): perf and the load are interrupted (INT, so
# they write what they have), and the base's temporary worktree goes.
bench_cleanup_hook() {
    bench_stop INT "$PERF_PID" "$LOAD_PID"
    if [[ -n $BASE_SRC && -d $BASE_SRC ]]; then
        git -C "$ROOT" worktree remove --force "$BASE_SRC" 2>/dev/null || true
    fi
}
BENCH_KEEPS="shopd-*.log, runs/, services"
bench_init shopd-runclass
# PostgreSQL runs as `postgres` and must be able to reach its data folder.
chmod 755 "$WORK"
RUNS=$WORK/runs
mkdir -p "$RUNS"
[[ -n $PERF ]] && KEEP=1

# ---- builds ----------------------------------------------------------------------
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shopd shopbench >&2
SHOPBENCH=$BUILD/bench/shopbench
for b in "$BUILD/shopd" "$SHOPBENCH"; do [[ -x $b ]] || die "$b was not built"; done

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo nocommit)
if [[ $COMMIT != nocommit && -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    COMMIT=$COMMIT-dirty
fi
# TARGETS: name, binary, description; the base (if any) first.
NAMES=()
SQLS=() # each binary's migrations folder; each binary gets a database of its own
declare -A DB_OF SQL_OF REDIS_OF
BINS=()
DESCS=()
if [[ -n ${BASE:-} ]]; then
    BASE_SHA=$(git -C "$ROOT" rev-parse --verify "$BASE^{commit}") || die "BASE=$BASE is not a commit"
    BASE_SHORT=$(git -C "$ROOT" rev-parse --short "$BASE_SHA")
    BASE_BIN=$ROOT/build-base-$BASE_SHORT/shopd
    if [[ ! -x $BASE_BIN ]]; then
        log "building shopd at $BASE_SHORT in a temporary worktree"
        BASE_SRC=$WORK/base-src
        git -C "$ROOT" worktree add --detach "$BASE_SRC" "$BASE_SHA" >/dev/null 2>&1 ||
            die "git worktree add $BASE_SHORT failed"
        cmake -S "$BASE_SRC" -B "$WORK/base-build" -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$WORK/base-build" -j2 --target shopd >&2
        mkdir -p "$(dirname "$BASE_BIN")"
        cp "$WORK/base-build/shopd" "$BASE_BIN"
        git -C "$ROOT" worktree remove --force "$BASE_SRC"
        BASE_SRC=""
        rm -rf "$WORK/base-build"
    fi
    # Its own migrations: the base binary runs on a database with its own schema.
    BASE_SQL=$(dirname "$BASE_BIN")/sql
    if [[ ! -d $BASE_SQL ]]; then
        mkdir -p "$BASE_SQL"
        git -C "$ROOT" archive "$BASE_SHA" sql | tar -x -C "$(dirname "$BASE_BIN")"
    fi
    NAMES+=(base)
    BINS+=("$BASE_BIN")
    SQLS+=("$BASE_SQL")
    DESCS+=("$BASE_SHORT ($(git -C "$ROOT" log -1 --format=%s "$BASE_SHA" | cut -c1-72))")
fi
NAMES+=(head)
BINS+=("$BUILD/shopd")
SQLS+=("$ROOT/sql")
DESCS+=("$COMMIT (this tree)")

# ---- services and data ---------------------------------------------------------------
log "starting PostgreSQL and Redis in $SVC"
"$ROOT/scripts/services.sh" start "$SVC" >/dev/null
# shellcheck disable=SC1091
source "$SVC/env"
export SHOPD_DATABASE_URL SHOPD_REDIS_URL
# One database per binary, migrated by that binary from its own sql/: a base from
# before a schema change must not run on the newer schema.
BASE_URL=$SHOPD_DATABASE_URL
for i in "${!NAMES[@]}"; do
    db=shopd_${NAMES[$i]}
    psql "$BASE_URL" -qAtc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null ||
        die "cannot create database $db"
    DB_OF[${BINS[$i]}]=${BASE_URL%/*}/$db
    SQL_OF[${BINS[$i]}]=${SQLS[$i]}
    REDIS_OF[${BINS[$i]}]=${SHOPD_REDIS_URL%/*}/$((i + 1)) # caches apart too
    SHOPD_DATABASE_URL=${DB_OF[${BINS[$i]}]} SHOPD_SQL_DIR=${SQLS[$i]} "${BINS[$i]}" migrate >"$WORK/migrate-${NAMES[$i]}.log" 2>&1 ||
        die "migration (${NAMES[$i]}) failed: $(tail -n 5 "$WORK/migrate-${NAMES[$i]}.log")"
done

TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SHOPD_PLATFORM_TOKEN=$TOKEN
PORT=""
URL=""

# start_shopd NAME BINARY WORKERS: shopd on a free port, waits for /healthz;
# then `use NAME` aims the runs at it.
start_shopd() {
    local name=$1 bin=$2 workers=$3
    for _ in 1 2 3; do
        start_shopd_once "$name" "$bin" "$workers" && return
        grep -q 'Address already in use' "$WORK/shopd-$name.log" || break
        log "port $PORT was taken meanwhile; another one"
    done
    die "shopd ($name) did not start: $(tail -n 5 "$WORK/shopd-$name.log")"
}

start_shopd_once() {
    local name=$1 bin=$2 workers=$3
    PORT=$(free_port)
    URL=http://127.0.0.1:$PORT
    SHOPD_DATABASE_URL=${DB_OF[$bin]} SHOPD_SQL_DIR=${SQL_OF[$bin]} SHOPD_REDIS_URL=${REDIS_OF[$bin]} \
        SHOPD_LISTEN=127.0.0.1:$PORT SHOPD_ADMIN_LISTEN= SHOPD_ACCESS_LOG=false SHOPD_MIGRATE=false SHOPD_WORKERS=$workers \
        SHOPD_AUTH_RATE_IP=0 SHOPD_AUTH_RATE_ACCOUNT=0 SHOPD_RATE_LIMIT=false \
        "$bin" serve >>"$WORK/shopd-$name.log" 2>&1 &
    SHOPD_PID=$!
    PIDS[$name]=$SHOPD_PID
    URLS[$name]=$URL
    for _ in $(seq 1 150); do
        curl -sf -o /dev/null "$URL/healthz" && return 0
        if ! kill -0 "$SHOPD_PID" 2>/dev/null; then
            wait "$SHOPD_PID" 2>/dev/null || true
            unset "PIDS[$name]" "URLS[$name]"
            return 1
        fi
        sleep 0.1
    done
    die "shopd ($name) did not answer /healthz"
}

use() {
    TARGET=$1
    SHOPD_PID=${PIDS[$1]}
    URL=${URLS[$1]}
}

stop_all() {
    local n
    for n in "${!PIDS[@]}"; do
        kill -TERM "${PIDS[$n]}" 2>/dev/null || true
        wait "${PIDS[$n]}" 2>/dev/null || true
    done
    PIDS=()
    URLS=()
}

# post PATH BODY [TENANT]: 201 or 409 (exists) is fine.
post() {
    local code
    code=$(curl -s -o "$WORK/post.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
        ${3:+-H "X-Tenant-Id: $3"} -H 'Content-Type: application/json' -d "$2" "$URL$1")
    [[ $code == 201 || $code == 409 ]] || die "POST $1 answered $code: $(cat "$WORK/post.json")"
}

# Stores demo (A: lists, logins, hot stock, the flood) and demo-b (B), run.sh's
# demo customer in demo, and 200 products in each (browse's setup seeds them).
log "creating stores demo and demo-b and their catalogs (in each binary's database)"
for i in "${!NAMES[@]}"; do
    start_shopd seed "${BINS[$i]}" 0
    post /api/v1/stores '{"slug":"demo","name":"Demo","currency":"USD"}'
    post /api/v1/stores '{"slug":"demo-b","name":"Demo B","currency":"USD"}'
    post /api/v1/admin/users \
        '{"email":"customer@demo.test","password":"demo-customer-pass-1","role":"CUSTOMER","name":"Demo Customer"}' demo
    for t in demo demo-b; do
        "$SHOPBENCH" -t 1 -c 1 -d 0.5 -w 0 --token "$TOKEN" --tenant "$t" "$URL" browse >"$WORK/seed-$t.txt" 2>&1 ||
            die "seeding $t failed: $(tail -n 5 "$WORK/seed-$t.txt")"
    done
    stop_all
done

# ---- measurements -------------------------------------------------------------------
FAILED_RUNS=0
# sb LABEL SCENARIO TENANT CONNS [shopbench options]: one measured run, in the
# foreground, into runs/<target>-LABEL.{txt,json}.
sb() {
    local label=$1 scn=$2 tenant=$3 conns=$4
    shift 4
    local threads=1
    [[ $conns -ge 32 ]] && threads=2
    local out=$RUNS/$TARGET-$label@$ROUND
    perf_start "$label"
    log "$TARGET: $label"
    if ! "$SHOPBENCH" -t "$threads" -c "$conns" -d "$DURATION" -w "$WARMUP" --label "$TARGET-$label@$ROUND" \
        --build-type Release --json "$out.json" --token "$TOKEN" --tenant "$tenant" "$@" \
        "$URL" "$scn" >"$out.txt" 2>&1; then
        FAILED_RUNS=$((FAILED_RUNS + 1))
        log "$TARGET-$label@$ROUND had failures:"
        tail -n 8 "$out.txt" >&2
    fi
    perf_stop
    LAST_FG=$out.json
    # A "while" case only counts if the load ran all along: it started before
    # this run's measured window (its setup is a few requests) and had not
    # finished (written its report) when this run ended.
    if [[ -n $LOAD_PID ]]; then
        local early=0
        [[ -e $RUNS/$TARGET-$LOAD_LABEL@$ROUND.json ]] && early=1
        if [[ $early -eq 1 ]]; then
            FAILED_RUNS=$((FAILED_RUNS + 1))
            log "$TARGET-$label@$ROUND: the load $LOAD_LABEL ended before it: not measured under load"
        fi
    fi
    kill -0 "$SHOPD_PID" 2>/dev/null || die "shopd ($TARGET) exited during $label: $(tail -n 10 "$WORK/shopd-$TARGET.log")"
}

# load_start LABEL SCENARIO TENANT CONNS: the background load of a "while"
# case, running 1 s before and after the measured run.
load_start() {
    local label=$1 scn=$2 tenant=$3 conns=$4
    local threads=1
    [[ $conns -ge 32 ]] && threads=2
    local d
    d=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { print d + w + 2 }')
    "$SHOPBENCH" -t "$threads" -c "$conns" -d "$d" -w 1 --label "$TARGET-$label@$ROUND" --build-type Release \
        --json "$RUNS/$TARGET-$label@$ROUND.json" --token "$TOKEN" --tenant "$tenant" --stock 1000000 \
        "$URL" "$scn" >"$RUNS/$TARGET-$label@$ROUND.txt" 2>&1 &
    LOAD_PID=$!
    LOAD_LABEL=$label
    sleep 1
}

load_wait() {
    local lj=$RUNS/$TARGET-$LOAD_LABEL@$ROUND.json
    if ! wait "$LOAD_PID"; then
        FAILED_RUNS=$((FAILED_RUNS + 1))
        log "$TARGET-$LOAD_LABEL@$ROUND (load) had failures:"
        tail -n 8 "$RUNS/$TARGET-$LOAD_LABEL@$ROUND.txt" >&2
    fi
    LOAD_PID=""
    # Started by the end of the measured run's warm-up (dates have 1 s steps)?
    if [[ -e $lj && -e $LAST_FG ]] && ! jq -e -n --slurpfile l "$lj" --slurpfile f "$LAST_FG" --argjson w "$WARMUP" \
        '($l[0].date | fromdateiso8601) <= ($f[0].date | fromdateiso8601) + $w' >/dev/null; then
        FAILED_RUNS=$((FAILED_RUNS + 1))
        log "$TARGET: the load $LOAD_LABEL started after the measured run's warm-up: not measured under load"
    fi
}

perf_start() {
    [[ -n $PERF && ,$PERF, == *",$1,"* ]] || return 0
    perf record -e cpu-clock -g -o "$WORK/perf-$TARGET-$1@$ROUND.data" -p "$SHOPD_PID" \
        -- sleep "$((DURATION + WARMUP))" >"$WORK/perf-$TARGET-$1@$ROUND.log" 2>&1 &
    PERF_PID=$!
    PERF_LABEL=$1@$ROUND
}

perf_stop() {
    [[ -n $PERF_PID ]] || return 0
    wait "$PERF_PID" || true
    PERF_PID=""
    perf report -i "$WORK/perf-$TARGET-$PERF_LABEL.data" --no-children --percent-limit 1 --stdio \
        2>/dev/null | head -n 200 >"$WORK/perf-$TARGET-$PERF_LABEL.txt" || true
    log "perf report: $WORK/perf-$TARGET-$PERF_LABEL.txt"
}

# A time-bounded hot-stock: the stock outlasts the run (verify still checks
# that every decrement is in the stock and the ledger).
HOT=(--stock 1000000)

# measure RUN: one measurement (with its load, if any) for $TARGET.
measure() {
    case $1 in
    list) sb list admin-list demo 1 ;;
    list+login)
        load_start login4 login demo 4
        sb list+login admin-list demo 1
        load_wait
        ;;
    hot) sb hot hot-stock demo 32 "${HOT[@]}" ;;
    hot+login)
        load_start login8 login demo 8
        sb hot+login hot-stock demo 32 "${HOT[@]}"
        load_wait
        ;;
    b) sb b browse demo-b 8 ;;
    b+a-browse)
        load_start a-browse browse demo 64
        sb b+a-browse browse demo-b 8
        load_wait
        ;;
    b+a-list)
        load_start a-list admin-list demo 64
        sb b+a-list browse demo-b 8
        load_wait
        ;;
    bp) sb bp browse demo-b 8 --rate "$B_RATE" ;;
    bp+a-browse)
        load_start a-browse-p browse demo 64
        sb bp+a-browse browse demo-b 8 --rate "$B_RATE"
        load_wait
        ;;
    bp+a-list)
        load_start a-list-p admin-list demo 64
        sb bp+a-list browse demo-b 8 --rate "$B_RATE"
        load_wait
        ;;
    browse-w*) sb "$1" browse demo 64 ;;
    list-w*) sb "$1" admin-list demo 64 ;;
    esac
}

# Every binary runs at once (idle but for the one measured), and each
# measurement is taken of each binary in turn, so a change in the machine's
# load (other builds) hits both columns alike.
# REPEAT rounds of it all; the report takes the median of each figure.
for ROUND in $(seq 1 "$REPEAT"); do
    for w in 2 1; do
        if [[ $w -eq 2 ]]; then
            RUNLIST=(list list+login hot hot+login b b+a-browse b+a-list bp bp+a-browse bp+a-list
                browse-w2 list-w2)
        else
            RUNLIST=(browse-w1 list-w1)
        fi
        if [[ -n ${ONLY:-} ]]; then
            keep=()
            for r in "${RUNLIST[@]}"; do
                [[ " $ONLY " == *" $r "* ]] && keep+=("$r")
            done
            RUNLIST=("${keep[@]}")
            [[ ${#RUNLIST[@]} -gt 0 ]] || continue
        fi
        for i in "${!NAMES[@]}"; do start_shopd "${NAMES[$i]}" "${BINS[$i]}" "$w"; done

        for r in "${RUNLIST[@]}"; do
            for n in "${NAMES[@]}"; do
                use "$n"
                measure "$r"
            done
        done
        stop_all
    done
done

# ---- report -----------------------------------------------------------------------------
DATE=$(date -u +%Y-%m-%d)
RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"
STEM=$RESULTS/$DATE-$COMMIT-runclass
# All runs in one JSON document, {"<binary>-<run>@<round>": shopbench's report},
# without the percentile spectra (the work folder with KEEP=1 has them).
jq -s -c 'map({(.label): (.results.latency |= del(.spectrum))}) | add' "$RUNS"/*.json >"$STEM.json"

# fig TARGET RUN FIELD [ROUND]: a figure of a run (p50, p99, p99_9, max in ms;
# rps; fail): of that round, or the median over the rounds (failures: the sum).
fig() {
    jq -r --arg k "$1-$2@" --arg f "$3" --arg round "${4:-}" '
        [to_entries[] | select((.key | startswith($k)) and ($round == "" or .key == $k + $round))
         | .value.results] as $rs |
        def med: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
        if ($rs | length) == 0 then "-"
        elif $f == "fail" then ($rs | map(.failures) | add)
        elif $f == "rps" then ($rs | map(.requests_per_s) | med | floor)
        else ($rs | map(.latency[$f] / 1000) | med | . * 100 | round / 100) end' "$STEM.json"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "-") printf "%.2f", a / b; else print "-" }'; }
verdict() { awk -v r="$1" -v g="$2" 'BEGIN { if (r == "-") print "-"; else print (r + 0 <= g ? "met" : "missed") }'; }
# per_round TARGET RUN RUN0 FIELD: the ratio RUN / RUN0 of each round, "a, b, c".
per_round() {
    local k out=""
    for k in $(seq 1 "$REPEAT"); do
        out+="${out:+, }$(ratio "$(fig "$1" "$2" "$4" "$k")" "$(fig "$1" "$3" "$4" "$k")")"
    done
    echo "$out"
}

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
CORES=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
{
    echo "# shopd run classes, $DATE ($COMMIT)"
    echo
    echo "- Machine: ${CPU:-unknown CPU}, $CORES cores, $MEM_MB MB RAM, $(uname -sr); load average" \
        "at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- **shopd, shopbench (two processes in the \"while\" cases), PostgreSQL and Redis share these" \
        "$CORES cores, and other engineers' builds ran on the machine meanwhile.** Compare the" \
        "columns of this run, and ratios, not absolute figures."
    echo "- Binaries (Release): $(for i in "${!NAMES[@]}"; do printf '%s = %s; ' "${NAMES[$i]}" "${DESCS[$i]}"; done)"
    echo "  all running at once on the same PostgreSQL 15 (fsync on) and Redis, measured in turn; shopbench of this tree."
    echo "- Each run: ${WARMUP} s warm-up, ${DURATION} s measured, closed loop; $REPEAT rounds, each" \
        "measurement taken of every binary in turn; figures are the median over the rounds" \
        "(ratios: of the medians; the ratios of each round follow in brackets)."
    echo "- Stores \`demo\` (A) and" \
        "\`demo-b\` (B), 200 products each. \`admin-list\`: list pages with the platform token" \
        "(bypasses the catalog cache); \`login\`: argon2id customer logins in \`demo\`; \`hot-stock\`:" \
        "one variant, stock 10^6, 32 connections, time-bounded."
    echo "- SHOPD_WORKERS=2 unless the run says w1; other settings default (blocking pool = cores)."
    echo
    echo "## Goals"
    echo
    printf '| goal | %s |\n' "$(for n in "${NAMES[@]}"; do printf '%s | ' "$n"; done | sed 's/ | $//')"
    printf '|---|%s\n' "$(for _ in "${NAMES[@]}"; do printf -- '---:|'; done)"
    row() { # row TEXT FN: FN TARGET prints the cell
        local text=$1 fn=$2 cells="" n
        for n in "${NAMES[@]}"; do cells+=" $($fn "$n") |"; done
        echo "| $text |$cells"
    }
    g_list() {
        local r
        r=$(ratio "$(fig "$1" list+login p50)" "$(fig "$1" list p50)")
        echo "$(fig "$1" list p50) -> $(fig "$1" list+login p50) ms: **${r}x** ($(verdict "$r" 5)) [$(per_round "$1" list+login list p50)]; p99 $(fig "$1" list p99) -> $(fig "$1" list+login p99) ms"
    }
    g_browse() {
        local r
        r=$(ratio "$(fig "$1" browse-w2 rps)" "$(fig "$1" browse-w1 rps)")
        echo "$(fig "$1" browse-w2 rps) vs $(fig "$1" browse-w1 rps) req/s: **${r}x** [$(per_round "$1" browse-w2 browse-w1 rps)]; admin-list (64 conns) $(fig "$1" list-w2 rps) vs $(fig "$1" list-w1 rps): $(ratio "$(fig "$1" list-w2 rps)" "$(fig "$1" list-w1 rps)")x"
    }
    g_hot() {
        local r
        r=$(ratio "$(fig "$1" hot+login p99)" "$(fig "$1" hot p99)")
        echo "$(fig "$1" hot p99) -> $(fig "$1" hot+login p99) ms: **${r}x** ($(verdict "$r" 1.25)) [$(per_round "$1" hot+login hot p99)]; $(fig "$1" hot rps) -> $(fig "$1" hot+login rps) decrements/s"
    }
    g_fair() {
        local r1 r2
        r1=$(ratio "$(fig "$1" b+a-browse p99)" "$(fig "$1" b p99)")
        r2=$(ratio "$(fig "$1" b+a-list p99)" "$(fig "$1" b p99)")
        echo "$(fig "$1" b p99) -> $(fig "$1" b+a-browse p99) ms (A browse): **${r1}x** ($(verdict "$r1" 2)) [$(per_round "$1" b+a-browse b p99)]; -> $(fig "$1" b+a-list p99) ms (A admin-list): **${r2}x** ($(verdict "$r2" 2)) [$(per_round "$1" b+a-list b p99)]"
    }
    row "1. uncached list p50, alone -> with 4 logins (goal <= 5x)" g_list
    row "2. browse one store, SHOPD_WORKERS=2 vs 1" g_browse
    row "3. hot-stock p99, alone -> with 8 logins (goal <= 1.25x)" g_hot
    g_fair_paced() {
        local r1 r2
        r1=$(ratio "$(fig "$1" bp+a-browse p99)" "$(fig "$1" bp p99)")
        r2=$(ratio "$(fig "$1" bp+a-list p99)" "$(fig "$1" bp p99)")
        echo "$(fig "$1" bp p99) -> $(fig "$1" bp+a-browse p99) ms (A browse): **${r1}x** ($(verdict "$r1" 2)) [$(per_round "$1" bp+a-browse bp p99)]; -> $(fig "$1" bp+a-list p99) ms (A admin-list): **${r2}x** ($(verdict "$r2" 2)) [$(per_round "$1" bp+a-list bp p99)]"
    }
    row "4. store B browse p99 (8 conns), alone -> A flooded by 64 (goal <= 2x)" g_fair
    row "4b. the same, B paced at $B_RATE req/s (open loop)" g_fair_paced
    echo
    echo "## Every run (medians over the rounds)"
    echo
    echo "| run | scenario | store | conns | binary | req/s | p50 ms | p99 ms | p99.9 ms | max ms | failures |"
    echo "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|"
    for r in list login4 list+login hot login8 hot+login b a-browse b+a-browse a-list b+a-list \
        a-browse-p bp bp+a-browse a-list-p bp+a-list browse-w2 browse-w1 list-w2 list-w1; do
        for n in "${NAMES[@]}"; do
            meta=$(jq -r --arg k "$n-$r@1" '.[$k] | if . == null then "- | - | -" else
                "\(.scenario) | \(.config.tenant) | \(.config.connections)" end' "$STEM.json")
            echo "| $r | $meta | $n | $(fig "$n" "$r" rps) | $(fig "$n" "$r" p50) | $(fig "$n" "$r" p99) |" \
                "$(fig "$n" "$r" p99_9) | $(fig "$n" "$r" max) | $(fig "$n" "$r" fail) |"
        done
    done
    echo
    echo "login4, login8, a-browse and a-list are the background load of the row after them" \
        "(started 1 s before it, ended after it). Every round's report: the .json beside this file." \
        "hot-stock checks (round 1):"
    echo
    for n in "${NAMES[@]}"; do
        for r in hot hot+login; do
            echo "- $n $r: $(grep -h '^  hot-stock ' "$RUNS/$n-$r@1.txt" | sed 's/^ *hot-stock *//' || echo '?')"
        done
    done
} >"$STEM.md"
log "wrote $STEM.md and .json"
cat "$STEM.md"
[[ $FAILED_RUNS -eq 0 ]] || die "$FAILED_RUNS runs had failures (see above)"
