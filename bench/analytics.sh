#!/usr/bin/env bash
# bench/analytics.sh: issue 17's analytics figures: GET /api/v1/admin/analytics/sales
# and /top-products over a year, for two stores with the same 365 days of sales
# and ten times as many orders in one (default 20,000 and 200,000), so the
# answer's cost can be read against the orders: it should follow the days
# (the rollups' rows), not the orders. Also the rebuild of each store (its
# time is O(orders)), the same year's figures aggregated straight from the
# orders for comparison, wrk figures, and the EXPLAIN ANALYZE plan of every
# statement one request of each runs (auto_explain: the statements exactly as
# shopd sends them), into bench/results/<date>-<commit>-analytics.md.
#
#   bench/analytics.sh        N=200000 (orders of the big store) DURATION=10 CONNS=8
#
# The orders are written in SQL (generate_series), two lines each over 50
# products, spread evenly over the last 365 days; the rollups are then filled
# by the rebuild (shopd's own analytics_rebuild). One private PostgreSQL and
# Redis (scripts/services.sh), stopped at the end, also on failure or Ctrl-C.
# KEEP=1 keeps the work folder. BUILD_DIR picks the build (default
# build-release, configured Release here).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-release}
N=${N:-200000}
DURATION=${DURATION:-10}
CONNS=${CONNS:-8}
BENCH_NAME="analytics"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, wait_http, bench_init
for t in wrk psql curl; do command -v "$t" >/dev/null || die "$t is not installed"; done

bench_init shopd-analytics
chmod 755 "$WORK"

if [[ -z ${BUILD_DIR:-} ]]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" -j2 --target shopd >&2
SHOPD=$BUILD/shopd
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt")
COMMIT=$(git rev-parse --short HEAD)
[[ -z $(git status --porcelain --untracked-files=no) ]] || COMMIT=$COMMIT-dirty

"$ROOT/scripts/services.sh" start "$SVC" >/dev/null
# shellcheck disable=SC1091
source "$SVC/env"
PGPORT_=$(cat "$SVC/pg/port")
SUPER="postgresql://postgres@127.0.0.1:$PGPORT_/shopd"
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
SPORT=$(free_port)
SURL=http://127.0.0.1:$SPORT
SHOPD_SQL_DIR=$ROOT/sql "$SHOPD" migrate >"$WORK/migrate.log" 2>&1 || die "migration failed"

start_shopd() {
    SHOPD_SQL_DIR=$ROOT/sql SHOPD_LISTEN=127.0.0.1:$SPORT SHOPD_ADMIN_LISTEN= SHOPD_RATE_LIMIT=false \
        SHOPD_PLATFORM_TOKEN=$TOKEN SHOPD_ACCESS_LOG=0 SHOPD_OUTBOX_DIR=$WORK/outbox \
        "$SHOPD" serve >>"$WORK/shopd.log" 2>&1 &
    PIDS+=($!)
    wait_http "$SURL/healthz"
}
stop_shopd() {
    local p=${PIDS[-1]}
    kill -TERM "$p" && wait "$p" || true
    unset 'PIDS[-1]'
}

start_shopd
for slug in small big; do
    curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "{\"slug\":\"$slug\",\"name\":\"$slug\",\"currency\":\"EUR\",\"settings\":{\"timezone\":\"Europe/Paris\"}}" \
        "$SURL/api/v1/stores" >/dev/null
done
SMALL=$(psql "$SHOPD_DATABASE_URL" -qAtc "SELECT id FROM stores WHERE slug = 'small'")
BIG=$(psql "$SHOPD_DATABASE_URL" -qAtc "SELECT id FROM stores WHERE slug = 'big'")

# n orders of store sid over the last 365 days, two lines each over 50 products.
seed() {
    psql "$SHOPD_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -v sid="$1" -v n="$2" >/dev/null <<'SQL'
INSERT INTO products (store_id, name, slug, base_price, status)
SELECT :sid, 'Product ' || g, 'p-' || g, 1000 + g * 10, 'active' FROM generate_series(1, 50) g;
INSERT INTO product_variants (store_id, product_id, sku, price, stock)
SELECT :sid, id, 'SKU-' || id, base_price, 1000000 FROM products WHERE store_id = :sid;
CREATE TEMP TABLE v AS SELECT row_number() OVER (ORDER BY id) AS k, id, product_id, price
  FROM product_variants WHERE store_id = :sid;
INSERT INTO orders (store_id, number, email, status, payment_status, payment_provider, currency,
                    subtotal, total, shipping_address, billing_address, cart_ref, item_count, created_at)
SELECT :sid, 1000 + g, 'b' || g || '@example.com',
       CASE WHEN g % 20 = 0 THEN 'CANCELLED' ELSE 'PAID' END,
       CASE WHEN g % 20 = 0 THEN 'voided' ELSE 'paid' END, 'test', 'EUR',
       a.price + 2 * b.price, a.price + 2 * b.price + 490, '{}', '{}', 'seed-' || g, 3,
       now() - (g % 365) * interval '1 day' - (g % 1440) * interval '1 minute'
  FROM generate_series(1, :n) g
  JOIN v a ON a.k = 1 + g % 50 JOIN v b ON b.k = 1 + (g * 7) % 50;
INSERT INTO order_items (store_id, order_id, variant_id, product_id, name, sku, unit_price, quantity, line_total)
SELECT o.store_id, o.id, v.id, v.product_id, 'Product', 'SKU', v.price, x.q, v.price * x.q
  FROM orders o
  CROSS JOIN LATERAL (VALUES (1 + (o.number - 1000) % 50, 1), (1 + ((o.number - 1000) * 7) % 50, 2)) x (k, q)
  JOIN v ON v.k = x.k
 WHERE o.store_id = :sid;
INSERT INTO order_counters (store_id, last_number) VALUES (:sid, 1000 + :n);
ANALYZE orders;
ANALYZE order_items;
SQL
}
log "seeding $((N / 10)) orders (small) and $N orders (big)"
seed "$SMALL" $((N / 10))
seed "$BIG" "$N"

# Rebuild each store (O(orders)): the time of the one statement.
rebuild_ms() {
    psql "$SHOPD_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 <<SQL | tail -1
\\timing on
SELECT analytics_rebuild($1);
SQL
}
RB_SMALL=$(rebuild_ms "$SMALL" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
RB_BIG=$(rebuild_ms "$BIG" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
psql "$SHOPD_DATABASE_URL" -qAtc "ANALYZE analytics_sales_daily; ANALYZE analytics_product_daily" >/dev/null
ROWS_SALES=$(psql "$SHOPD_DATABASE_URL" -qAtc "SELECT count(*) FROM analytics_sales_daily WHERE store_id = $BIG")
ROWS_PROD=$(psql "$SHOPD_DATABASE_URL" -qAtc "SELECT count(*) FROM analytics_product_daily WHERE store_id = $BIG")

# The same year's figures straight from the orders (what the rollups save).
direct_ms() {
    psql "$SHOPD_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 <<SQL | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
\\timing on
SELECT (o.created_at AT TIME ZONE 'Europe/Paris')::date, count(*), sum(total), sum(item_count)
  FROM orders o WHERE o.store_id = $1 AND o.status <> 'CANCELLED'
   AND o.created_at >= now() - interval '365 days' GROUP BY 1;
SQL
}
DIRECT_SMALL=$(direct_ms "$SMALL")
DIRECT_BIG=$(direct_ms "$BIG")

ADMIN_TOKEN=$TOKEN # the platform token may call any store's admin routes
FROM=$(psql "$SHOPD_DATABASE_URL" -qAtc "SELECT ((now() AT TIME ZONE 'Europe/Paris')::date - 364)::text")
declare -a SCEN=(
    "sales by day, a year|/api/v1/admin/analytics/sales?from=$FROM&interval=day"
    "sales by month, a year|/api/v1/admin/analytics/sales?from=$FROM&interval=month"
    "top 10 products by revenue, a year|/api/v1/admin/analytics/top-products?from=$FROM"
)

# Plans: auto_explain logs every statement of one request per scenario.
psql "$SUPER" -qAt -c "ALTER DATABASE shopd SET session_preload_libraries = 'auto_explain'" \
    -c "ALTER DATABASE shopd SET auto_explain.log_min_duration = 0" \
    -c "ALTER DATABASE shopd SET auto_explain.log_analyze = on" \
    -c "ALTER DATABASE shopd SET auto_explain.log_buffers = on" >/dev/null
stop_shopd
start_shopd
PGLOG=$SVC/pg/postgres.log
declare -A PLAN=()
for s in "${SCEN[@]}"; do
    name=${s%%|*}
    path=${s#*|}
    off=$(stat -c %s "$PGLOG")
    curl -fsS --max-time 60 -o /dev/null -H "Authorization: Bearer $ADMIN_TOKEN" -H 'X-Tenant-Id: big' \
        "$SURL$path" || die "$path failed"
    sleep 0.3
    PLAN[$name]=$(tail -c +$((off + 1)) "$PGLOG" |
        sed -e 's/^[0-9-]* [0-9:.]* UTC \[[0-9]*\] [a-z]*@[a-z]* //' | grep -v '^\s*$' | head -c 30000)
done
psql "$SUPER" -qAt -c "ALTER DATABASE shopd RESET ALL" >/dev/null
stop_shopd
start_shopd

run_wrk() {
    local tenant=$1 path=$2 out
    wrk -t2 -c"$CONNS" -d2s --timeout 30s -H "X-Tenant-Id: $tenant" \
        -H "Authorization: Bearer $ADMIN_TOKEN" "$SURL$path" >/dev/null
    out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 30s --latency -H "X-Tenant-Id: $tenant" \
        -H "Authorization: Bearer $ADMIN_TOKEN" "$SURL$path")
    echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "50%" {print $2}' <<<"$out") $(awk '$1 == "99%" {print $2}' <<<"$out")"
}

OUT=$ROOT/bench/results/$(date -u +%Y-%m-%d)-$COMMIT-analytics.md
{
    echo "# Analytics: sales over a year from daily rollups ($COMMIT)"
    echo
    echo "bench/analytics.sh on $(nproc) shared cores, PostgreSQL" \
        "$(psql "$SHOPD_DATABASE_URL" -qAtc 'SHOW server_version'), shopd $BUILD_TYPE build, defaults" \
        "(SHOPD_WORKERS etc.), rate limits off, time zone Europe/Paris. wrk -t2 -c$CONNS -d${DURATION}s per" \
        "figure, after 2 s of warm-up; every answer is built (no cache)."
    echo
    echo "Two stores with the same 365 days of sales: *small* $((N / 10)) orders, *big* $N orders" \
        "(2 lines each over 50 products, 1 in 20 cancelled). The big store's rollups:" \
        "$ROWS_SALES rows of analytics_sales_daily, $ROWS_PROD of analytics_product_daily."
    echo
    echo "| | small ($((N / 10)) orders) | big ($N orders) |"
    echo "|---|---|---|"
    echo "| rebuild (one statement, O(orders)) | $RB_SMALL ms | $RB_BIG ms |"
    echo "| the year by day straight from orders (psql, for comparison) | $DIRECT_SMALL ms | $DIRECT_BIG ms |"
    for s in "${SCEN[@]}"; do
        name=${s%%|*}
        path=${s#*|}
        read -r a_rps a_p50 a_p99 < <(run_wrk small "$path")
        read -r b_rps b_p50 b_p99 < <(run_wrk big "$path")
        echo "| $name: req/s, p50, p99 | $a_rps, $a_p50, $a_p99 | $b_rps, $b_p50, $b_p99 |"
    done
    echo
    echo "## Plans (auto_explain, EXPLAIN ANALYZE with buffers, one request each, big store)"
    for s in "${SCEN[@]}"; do
        name=${s%%|*}
        echo
        echo "### $name"
        echo
        echo '```'
        echo "${PLAN[$name]}"
        echo '```'
    done
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
