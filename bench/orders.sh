#!/usr/bin/env bash
# bench/orders.sh: issue 12's checkout figures, shopd and the seed stack
# (../shared/peers/seed-stack, Express + Sequelize) side by side in one run on
# this machine, with pgbench's TPC-B commit rate on the same PostgreSQL for
# scale, into bench/results/<date>-<commit>-orders.md.
#
#   bench/orders.sh          DURATION (default 15) s per run, 64 connections
#
# Runs (wrk -t2, the same add-to-cart + checkout flow for both servers: the
# peer's flow.lua and bench/wrk/shopd_flow.lua):
#   checkout   a fresh cart per checkout, 1 unit of a random variant, 64 connections
#   hot-sku    every cart buys one unit of one variant of stock 5000 until it is sold
#              out, 128 connections; then orders, stock and (shopd) the ledger are checked
#   shopbench  shopd's `checkout` and `hot-sku` scenarios (latency percentiles, batch sizes)
#   pgbench    the default TPC-B-like script, 8 clients, scale 10
# One private PostgreSQL and Redis (scripts/services.sh): shopd and the peer each
# get a database and a Redis database of their own. Needs node and npm (the
# peer's packages are installed into the work folder), wrk and pgbench.
# Everything it started is stopped at the end, also on failure or Ctrl-C.
# KEEP=1 keeps the work folder (logs, every run's output).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-release}
DURATION=${DURATION:-15}
PEER_SRC=${PEER_SRC:-$ROOT/../shared/peers/seed-stack}
BENCH_NAME="orders"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, wait_http, bench_init
for t in wrk pgbench node npm psql; do command -v "$t" >/dev/null || die "$t is not installed"; done
[[ -d $PEER_SRC ]] || die "no peer at $PEER_SRC (PEER_SRC=...)"

bench_init shopd-orders
chmod 755 "$WORK"

# ---- builds, services -------------------------------------------------------------
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shopd shopbench >&2
SHOPD=$BUILD/shopd
SHOPBENCH=$BUILD/bench/shopbench
COMMIT=$(git rev-parse --short HEAD)
[[ -z $(git status --porcelain --untracked-files=no) ]] || COMMIT=$COMMIT-dirty

"$ROOT/scripts/services.sh" start "$SVC" >/dev/null
# shellcheck disable=SC1091
source "$SVC/env"
BASE_URL=$SHOPD_DATABASE_URL
for db in shopd_orders peer pgbench; do
    psql "$BASE_URL" -qAtc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
done
SHOPD_DB=${BASE_URL%/*}/shopd_orders
PEER_DB=${BASE_URL%/*}/peer
PG_DB=${BASE_URL%/*}/pgbench
SHOPD_REDIS=${SHOPD_REDIS_URL%/*}/1
PEER_REDIS=${SHOPD_REDIS_URL%/*}/2

# ---- shopd --------------------------------------------------------------------------
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
SPORT=$(free_port)
SURL=http://127.0.0.1:$SPORT
SHOPD_DATABASE_URL=$SHOPD_DB SHOPD_SQL_DIR=$ROOT/sql "$SHOPD" migrate >"$WORK/migrate.log" 2>&1 ||
    die "migration failed"
SHOPD_DATABASE_URL=$SHOPD_DB SHOPD_REDIS_URL=$SHOPD_REDIS SHOPD_SQL_DIR=$ROOT/sql \
    SHOPD_LISTEN=127.0.0.1:$SPORT SHOPD_ADMIN_LISTEN= SHOPD_RATE_LIMIT=false \
    SHOPD_PLATFORM_TOKEN=$TOKEN SHOPD_ACCESS_LOG=0 \
    SHOPD_AUTH_RATE_IP=0 SHOPD_AUTH_RATE_ACCOUNT=0 SHOPD_OUTBOX_DIR="$WORK/outbox" "$SHOPD" serve >"$WORK/shopd.log" 2>&1 &
PIDS+=($!)
wait_http "$SURL/healthz"
curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"slug":"bench","name":"Bench","currency":"EUR"}' "$SURL/api/v1/stores" >/dev/null
# shopbench's setup makes bench-cart (50 variants), bench-sku and the DE shipping zone.
"$SHOPBENCH" -t 1 -c 1 -d 1 -w 0 --tenant bench --token "$TOKEN" --stock 5000 "$SURL" checkout \
    >"$WORK/setup.txt" 2>&1 || die "shopbench setup failed: $(tail -5 "$WORK/setup.txt")"
api() { curl -fsS -H "Authorization: Bearer $TOKEN" -H 'X-Tenant-Id: bench' "$@"; }
RATE=$(api "$SURL/api/v1/checkout/shipping-rates?country=DE" | python3 -c 'import sys,json; print(json.load(sys.stdin)["rates"][0]["id"])')
read -r VMIN VMAX < <(api "$SURL/api/v1/products/bench-cart" | python3 -c 'import sys,json; v=[x["id"] for x in json.load(sys.stdin)["variants"]]; print(min(v), max(v))')
HOT=$(api "$SURL/api/v1/products/bench-sku" | python3 -c 'import sys,json; print(json.load(sys.stdin)["variants"][0]["id"])')
set_hot_stock() {
    api -X PATCH -H 'Content-Type: application/json' -d "{\"set\":$1,\"reason\":\"bench\"}" \
        "$SURL/api/v1/variants/$HOT/inventory" >/dev/null
}

# ---- the peer -----------------------------------------------------------------------
log "installing and seeding the peer (npm, 10 stores x 1000 products x 3 variants)"
cp -r "$PEER_SRC" "$WORK/peer"
(cd "$WORK/peer" && npm install --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1) || die "npm install failed"
(cd "$WORK/peer" && DATABASE_URL=$PEER_DB REDIS_URL=$PEER_REDIS node seed.js >"$WORK/seed.log" 2>&1) || die "peer seed failed"
PPORT=$(free_port)
PURL=http://127.0.0.1:$PPORT
(cd "$WORK/peer" && DATABASE_URL=$PEER_DB REDIS_URL=$PEER_REDIS NODE_ENV=production PORT=$PPORT exec node server.js >"$WORK/peer.log" 2>&1) &
PIDS+=($!)
for _ in $(seq 1 100); do
    curl -sS -o /dev/null -H 'X-Tenant-Id: bench' "$PURL/api/v1/products/1" 2>/dev/null && break
    sleep 0.2
done

# ---- runs ---------------------------------------------------------------------------
flow() { # name url script args...
    local name=$1 url=$2 script=$3 conns=$4
    shift 4
    wrk -t2 -c"$conns" -d"${DURATION}s" --latency -s "$script" "$url" -- "$@" >"$WORK/$name.txt" 2>&1 || true
    grep '^FLOW' "$WORK/$name.txt" || echo "FLOW failed"
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

log "checkout: shopd, then the peer"
S_CO=$(flow shopd-checkout "$SURL" "$ROOT/bench/wrk/shopd_flow.lua" 64 bench "$RATE" normal "$VMIN" "$VMAX")
P_CO=$(flow peer-checkout "$PURL" "$WORK/peer/flow.lua" 64 normal 1 3000)
log "hot-sku: shopd, then the peer (HOT-1, stock 5000)"
# shopd sells 5000 units in less than the run, and wrk's rate is then the stock over the
# whole duration: give it enough stock to sell for the whole run (the check is the same:
# orders = stock taken, ledger = stock).
HOT_STOCK=1000000
set_hot_stock $HOT_STOCK
S_HOT=$(flow shopd-hot "$SURL" "$ROOT/bench/wrk/shopd_flow.lua" 128 bench "$RATE" hot "$HOT")
S_HOT_LEFT=$(api "$SURL/api/v1/variants/$HOT/movements" | python3 -c 'import sys,json; d=json.load(sys.stdin); print(d["stock"], d["ledger_sum"])')
P_HOT=$(flow peer-hot "$PURL" "$WORK/peer/flow.lua" 128 hot 3001)
P_HOT_LEFT=$(psql "$PEER_DB" -qAtc "SELECT stock_quantity FROM product_variants WHERE id = 3001" 2>/dev/null || echo "?")
log "shopbench: checkout and hot-sku on shopd"
"$SHOPBENCH" -t 2 -c 64 -d "$DURATION" -w 2 --tenant bench --token "$TOKEN" "$SURL" checkout >"$WORK/sb-checkout.txt" 2>&1 || true
set_hot_stock 20000
"$SHOPBENCH" -t 2 -c 128 -d 60 -w 0 --tenant bench --token "$TOKEN" --stock 20000 "$SURL" hot-sku >"$WORK/sb-hot.txt" 2>&1 || true
log "pgbench TPC-B on the same PostgreSQL"
pgbench -i -q -s 10 "$PG_DB" >"$WORK/pgbench-init.txt" 2>&1
pgbench -c 8 -j 2 -T "$DURATION" "$PG_DB" >"$WORK/pgbench.txt" 2>&1 || true
PG_TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.txt" | head -1)
METRICS=$(curl -fsS "$SURL/metrics" | grep -E '^shopd_checkout_batch_size_(sum|count|max)' | tr '\n' ' ')

# ---- report -------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a" }'; }
OUT=$ROOT/bench/results/$(date -u +%Y-%m-%d)-$COMMIT-orders.md
s_co=$(field checkouts_per_s "$S_CO")
p_co=$(field checkouts_per_s "$P_CO")
s_hot=$(field checkouts_per_s "$S_HOT")
p_hot=$(field checkouts_per_s "$P_HOT")
{
    echo "# Checkout figures, $(date -u +%Y-%m-%d) commit $COMMIT"
    echo
    echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r). shopd (Release), the peer"
    echo "(Express + Sequelize, one node process), PostgreSQL and Redis share the machine with the"
    echo "load generator. wrk -t2, ${DURATION} s per run. Only ratios from this one run count."
    echo
    echo "| figure | shopd | peer | shopd / peer |"
    echo "|---|---:|---:|---:|"
    echo "| checkouts/s (add + checkout, fresh cart, 64 conns) | $s_co | $p_co | $(ratio "$s_co" "$p_co") |"
    echo "| p99 of a request in that flow (ms) | $(field p99_ms "$S_CO") | $(field p99_ms "$P_CO") | |"
    echo "| hot SKU checkouts/s (one variant, 128 conns; shopd stock $HOT_STOCK, peer 5000) | $s_hot | $p_hot | $(ratio "$s_hot" "$p_hot") |"
    echo "| hot SKU: orders / stock left (+ ledger sum) | $(field checkouts_201 "$S_HOT") / $S_HOT_LEFT | $(field checkouts_201 "$P_HOT") / $P_HOT_LEFT | |"
    echo "| pgbench TPC-B tps (8 clients) | $PG_TPS | | hot SKU / TPC-B: $(ratio "$s_hot" "$PG_TPS") |"
    echo
    echo "wrk flows:"
    echo '```'
    echo "shopd checkout: $S_CO"
    echo "peer  checkout: $P_CO"
    echo "shopd hot-sku:  $S_HOT"
    echo "peer  hot-sku:  $P_HOT"
    echo '```'
    echo
    echo "shopbench on shopd (checkout, 64 connections; hot-sku, stock 20000, 128 connections):"
    echo '```'
    grep -E 'rate|latency|p50|p99|checkouts|batching|hot-sku|result' "$WORK/sb-checkout.txt" "$WORK/sb-hot.txt" | sed "s|$WORK/||" || true
    echo "$METRICS"
    echo '```'
} >"$OUT"
cat "$OUT"
log "wrote $OUT"
