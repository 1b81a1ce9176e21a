# shellcheck shell=bash
# bench/lib.sh: the setup the bench scripts share. Set BENCH_NAME (the prefix
# of every message), then source it:
#
#   BENCH_NAME=search
#   source "$ROOT/bench/lib.sh"
#   ...
#   bench_init shopd-search      # WORK=/tmp/shopd-search.XXXXXX, SVC, PIDS, traps
#
# log MSG...     prints "BENCH_NAME: MSG" on stderr
# die MSG...     log, then exit 1 (the cleanup runs and keeps the work folder)
# free_port      prints a TCP port in 40000-59999 nobody listens on
# wait_http U    waits up to 20 s for U to answer 2xx, else dies
# bench_stop SIG PID...  sends SIG to each PID still running (empty ones are
#                skipped) and waits for it
# bench_init STEM  makes the work folder WORK=/tmp/STEM.XXXXXX and SVC=$WORK/services
#                (for scripts/services.sh start "$SVC"), declares PIDS (an indexed
#                array unless the script declared it first, e.g. declare -A) and
#                installs the cleanup that runs once on any exit (Ctrl-C and TERM
#                exit 130):
#                  1. bench_cleanup_hook, if the script defines one: what only that
#                     script starts (perf or a load generator it interrupts with INT,
#                     a git worktree, ...);
#                  2. every PIDS entry gets TERM and is waited for;
#                  3. the services in SVC are stopped (a failure is logged);
#                  4. with KEEP=1 or a non-zero exit the work folder stays and its
#                     path is logged (with BENCH_KEEPS, a note of what is in it, if
#                     set); otherwise the services are destroyed and WORK removed.
#                The exit status stays the script's.

log() { echo "${BENCH_NAME:-bench}: $*" >&2; }
die() {
    log "$*"
    exit 1
}

free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((40000 + RANDOM % 20000))
        # Any state: a client's ephemeral port in use also makes bind fail.
        if ! ss -Htan "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return
        fi
    done
    die "no free port"
}

wait_http() {
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    die "$1 did not answer"
}

bench_stop() {
    local sig=$1 p
    shift
    for p in "$@"; do
        [[ -n $p ]] || continue
        if kill "-$sig" "$p" 2>/dev/null; then
            wait "$p" 2>/dev/null || true
        fi
    done
}

bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if declare -F bench_cleanup_hook >/dev/null; then
        bench_cleanup_hook || true
    fi
    bench_stop TERM "${PIDS[@]}"
    if [[ -d $SVC ]]; then
        "$ROOT/scripts/services.sh" stop "$SVC" >/dev/null 2>&1 || log "could not stop the services in $SVC"
    fi
    if [[ ${KEEP:-0} == 1 || $rc -ne 0 ]]; then
        log "work folder kept: $WORK${BENCH_KEEPS:+ ($BENCH_KEEPS)}"
    else
        "$ROOT/scripts/services.sh" destroy "$SVC" >/dev/null 2>&1 || true
        rm -rf "$WORK"
    fi
    exit "$rc"
}

bench_init() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    SVC=$WORK/services
    declare -p PIDS >/dev/null 2>&1 || declare -ga PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
