#!/usr/bin/env bash
# bench/jobs.sh: issue 14's figures for the background-job machinery, into
# bench/results/<date>-<commit>-jobs.md.
#
#   bench/jobs.sh        N (default 20000) no-op jobs; DURATION (default 20) s of checkouts
#
# Runs, against one shopd (Release) on a private PostgreSQL and Redis:
#   noop      N outbox rows of kind jobs.noop written in one statement (as a business
#             change would), then the relay (outbox -> jobs -> XADD), the consumers
#             (XREADGROUP -> the blocking pool -> the job row -> XACK) and nothing
#             else: jobs/s end to end, and each job's latency from its outbox row's
#             commit to its row marked done (p50, p99, max), from PostgreSQL's clocks.
#   checkout  shopbench `checkout` for DURATION s (16 connections): every order writes an
#             order.placed outbox row in its transaction; each confirmation e-mail's
#             latency from that commit to its arrival at an SMTP sink (bench/smtp_sink.py,
#             Python's smtpd: one line per message with shopd's Message-ID and the time),
#             joined with the outbox rows in PostgreSQL.
# KEEP=1 keeps the work folder (logs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-release}
N=${N:-20000}
DURATION=${DURATION:-20}
BENCH_NAME="jobs"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, wait_http, bench_init
for t in psql curl python3; do command -v "$t" >/dev/null || die "$t is not installed"; done

bench_init shopd-jobs

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shopd shopbench >&2
SHOPD=$BUILD/shopd
SHOPBENCH=$BUILD/bench/shopbench
COMMIT=$(git rev-parse --short HEAD)
[[ -z $(git status --porcelain --untracked-files=no) ]] || COMMIT=$COMMIT-dirty

"$ROOT/scripts/services.sh" start "$SVC" >/dev/null
# shellcheck disable=SC1091
source "$SVC/env"
DB=$SHOPD_DATABASE_URL
sql() { psql "$DB" -qAtX -c "$1"; }
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
SMTP_PORT=$(free_port)
python3 "$ROOT/bench/smtp_sink.py" "$SMTP_PORT" "$WORK/arrivals.txt" 2>"$WORK/sink.log" &
PIDS+=($!)
SHOPD_SQL_DIR=$ROOT/sql "$SHOPD" migrate >"$WORK/migrate.log" 2>&1 || die "migration failed"
SHOPD_SQL_DIR=$ROOT/sql SHOPD_LISTEN=127.0.0.1:$PORT SHOPD_ADMIN_LISTEN= SHOPD_RATE_LIMIT=false \
    SHOPD_PLATFORM_TOKEN=$TOKEN SHOPD_ACCESS_LOG=0 SHOPD_OUTBOX_DIR="$WORK/outbox" \
    SHOPD_SMTP_URL=smtp://127.0.0.1:$SMTP_PORT SHOPD_SMTP_TLS=none \
    "$SHOPD" serve >"$WORK/shopd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null && break
    sleep 0.2
done
curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"slug":"bench","name":"Bench","currency":"EUR"}' "$URL/api/v1/stores" >/dev/null
STORE=$(sql "SELECT id FROM stores WHERE slug = 'bench'")

wait_done() { # kind want timeout_s
    local t0=$SECONDS
    while :; do
        local n
        n=$(sql "SELECT count(*) FROM jobs WHERE store_id = $STORE AND kind = '$1' AND state = 'done'")
        [[ $n -ge $2 ]] && return 0
        ((SECONDS - t0 < $3)) || die "$1 jobs: $n of $2 done after $3 s"
        sleep 0.2
    done
}
# Percentiles (ms) of done jobs' latency from their outbox row (its transaction's now())
# to their finished_at, for one kind.
latency() {
    sql "SELECT count(*), round(extract(epoch FROM max(j.finished_at) - min(o.created_at))::numeric, 3),
                round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.finished_at - o.created_at)) * 1000)::numeric, 1),
                round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM j.finished_at - o.created_at)) * 1000)::numeric, 1),
                round((max(extract(epoch FROM j.finished_at - o.created_at)) * 1000)::numeric, 1)
         FROM jobs j JOIN outbox o ON o.store_id = j.store_id AND o.id = j.outbox_id
         WHERE j.store_id = $STORE AND j.kind = '$1' AND j.state = 'done' $2" | tr '|' ' '
}

# ---- noop ---------------------------------------------------------------------------
log "noop: $N outbox rows in one statement"
sql "INSERT INTO outbox (store_id, kind, payload) SELECT $STORE, 'jobs.noop', jsonb_build_object('i', g) FROM generate_series(1, $N) g"
wait_done noop "$N" 300
read -r NOOP_N NOOP_SPAN NOOP_P50 NOOP_P99 NOOP_MAX < <(latency noop "")
NOOP_RATE=$(python3 -c "print(round($NOOP_N / $NOOP_SPAN))")
log "noop: $NOOP_N jobs in $NOOP_SPAN s = $NOOP_RATE jobs/s; latency p50 $NOOP_P50 ms p99 $NOOP_P99 ms max $NOOP_MAX ms"
# A trickle: one row at a time, the latency a lone event sees (the relay's poll).
for i in $(seq 1 50); do
    sql "INSERT INTO outbox (store_id, kind, payload) VALUES ($STORE, 'jobs.noop', '{\"trickle\":$i}')"
    sleep 0.05
done
wait_done noop $((N + 50)) 60
read -r _ _ TR_P50 TR_P99 TR_MAX < <(latency noop "AND o.payload ? 'trickle'")
log "noop trickle (1 row per 50 ms): p50 $TR_P50 ms p99 $TR_P99 ms max $TR_MAX ms"

# ---- checkout + e-mail ----------------------------------------------------------------
log "checkout: shopbench setup, then $DURATION s of checkouts"
"$SHOPBENCH" -t 1 -c 1 -d 1 -w 0 --tenant bench --token "$TOKEN" --stock 1000000 "$URL" checkout \
    >"$WORK/setup.txt" 2>&1 || die "shopbench setup failed: $(tail -5 "$WORK/setup.txt")"
sql "DELETE FROM jobs WHERE store_id = $STORE AND kind = 'email'"
T0=$(sql "SELECT now()")
"$SHOPBENCH" -t 1 -c 16 -d "$DURATION" -w 1 --tenant bench --token "$TOKEN" "$URL" checkout \
    >"$WORK/checkout.txt" 2>&1 || die "shopbench checkout failed: $(tail -5 "$WORK/checkout.txt")"
T1=$(sql "SELECT now()")
ORDERS=$(sql "SELECT count(*) FROM orders WHERE store_id = $STORE AND created_at >= '$T0'")
wait_done email "$(sql "SELECT count(*) FROM outbox WHERE store_id = $STORE AND kind = 'order.placed' AND created_at >= '$T0'")" 300
read -r JOB_N _ JOB_P50 JOB_P99 JOB_MAX < <(latency email "AND o.created_at >= '$T0' AND o.created_at < '$T1'")
# Arrivals at the sink, joined with their outbox rows.
sql "CREATE TABLE bench_arrivals (store_id bigint, job_id bigint, at double precision)"
psql "$DB" -qAtX -c "\\copy bench_arrivals FROM '$WORK/arrivals.txt' WITH (FORMAT text, DELIMITER ' ')"
read -r MAIL_N MAIL_P50 MAIL_P99 MAIL_MAX < <(sql "SELECT count(*),
        round((percentile_cont(0.5) WITHIN GROUP (ORDER BY a.at - extract(epoch FROM o.created_at)) * 1000)::numeric, 1),
        round((percentile_cont(0.99) WITHIN GROUP (ORDER BY a.at - extract(epoch FROM o.created_at)) * 1000)::numeric, 1),
        round((max(a.at - extract(epoch FROM o.created_at)) * 1000)::numeric, 1)
    FROM bench_arrivals a JOIN jobs j ON j.store_id = a.store_id AND j.id = a.job_id
    JOIN outbox o ON o.store_id = j.store_id AND o.id = j.outbox_id
    WHERE j.store_id = $STORE AND o.kind = 'order.placed' AND o.created_at >= '$T0' AND o.created_at < '$T1'" | tr '|' ' ')
DUPS=$(sql "SELECT count(*) - count(DISTINCT (store_id, job_id)) FROM bench_arrivals")
CO_RATE=$(grep -m1 -Eo '[0-9.]+ req/s' "$WORK/checkout.txt" || echo "?")
log "checkout: $ORDERS orders ($CO_RATE); $MAIL_N confirmations at the sink, commit -> arrived p50 $MAIL_P50 ms p99 $MAIL_P99 ms max $MAIL_MAX ms ($DUPS duplicates); jobs done p99 $JOB_P99 ms"

mkdir -p "$ROOT/bench/results"
OUT=$ROOT/bench/results/$(date -u +%Y-%m-%d)-$COMMIT-jobs.md
{
    echo "# bench/jobs.sh, $(date -u +%Y-%m-%dT%H:%MZ), commit $COMMIT"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end. Release build; private PostgreSQL and Redis (scripts/services.sh); SHOPD_JOBS_POLL_MS default; e-mail over SMTP to bench/smtp_sink.py."
    echo
    echo "| run | jobs | span | jobs/s | p50 | p99 | max |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    echo "| noop, $N outbox rows in one statement | $NOOP_N | $NOOP_SPAN s | $NOOP_RATE | $NOOP_P50 ms | $NOOP_P99 ms | $NOOP_MAX ms |"
    echo "| noop trickle, 1 row per 50 ms | 50 | | | $TR_P50 ms | $TR_P99 ms | $TR_MAX ms |"
    echo "| order confirmation e-mails under $DURATION s of checkouts (16 conns; $ORDERS orders, $CO_RATE): commit -> arrival at the SMTP sink ($DUPS duplicates) | $MAIL_N | | | $MAIL_P50 ms | $MAIL_P99 ms | $MAIL_MAX ms |"
    echo
    echo "No-op latency is from the outbox row's transaction (its now(), at most the transaction's own length before its commit) to the job's row marked done, both PostgreSQL's clock; e-mail latency from that transaction to the message's arrival at the sink (the machine's clock)."
    echo
    echo '```'
    cat "$WORK/checkout.txt"
    echo '```'
} >"$OUT"
log "wrote $OUT"
