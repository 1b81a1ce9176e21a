#!/usr/bin/env bash
# bench/read.sh: issue 11's read-path figures in one run on this machine, into
# bench/results/<date>-<commit>-read.md: shopd's product list and product page,
# uncached and cached, against pgbench -S on the same PostgreSQL, against
# shopd-bare sending the same number of bytes as the cached list page, and against
# the seed stack (../shared/peers/seed-stack, Express + Sequelize) on the same data
# (1,000 products x 3 variants in the store `bench`).
#
#   bench/read.sh            DURATION (default 10) s per run, wrk -t2 -c64, PASSES (default 1)
#
# Runs (each after a 2 s warm-up of the same load):
#   list-uncached     GET /api/v1/products?limit=20 as the platform (an admin: never cached)
#   product-uncached  GET /api/v1/products/<random id> as the platform
#   list-cached       the same list, anonymous (the in-process page cache, I/O thread)
#   list-cached-gzip  the same with Accept-Encoding: gzip (the compressed copy)
#   product-cached    random product pages, anonymous
#   bare              shopd-bare --body-size <bytes of the cached list page>
#   pgbench-S         pgbench -S, 8 clients, scale 10, on the same PostgreSQL
#   peer-list / peer-product / peer-list-cached (CACHE=1: its Redis page cache)
# With PERF=1 (default), `perf record -e cpu-clock -g` of shopd during one more
# cached-list run and one uncached-list run (figures never come from those runs).
# Also EXPLAIN ANALYZE of the list's count before (a bounded count over the
# store's products) and after (the kept counts of sql/0020), and of the page.
# Everything it started is stopped at the end, also on failure or Ctrl-C.
# KEEP=1 keeps the work folder (logs, every run's output, perf data).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-release}
DURATION=${DURATION:-10}
PASSES=${PASSES:-1}
PERF=${PERF:-1}
PEER_SRC=${PEER_SRC:-$ROOT/../shared/peers/seed-stack}
BENCH_NAME="read"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, bench_init (wait_http: below)
for t in wrk pgbench node npm psql curl python3; do command -v "$t" >/dev/null || die "$t is not installed"; done
[[ -d $PEER_SRC ]] || die "no peer at $PEER_SRC (PEER_SRC=...)"

PEER_PID=""
PERF_PID=""
# At the end, before PIDS: perf is interrupted (INT, so it writes its data), the peer stopped.
bench_cleanup_hook() {
    bench_stop INT "$PERF_PID"
    bench_stop TERM "$PEER_PID"
}
bench_init shopd-read
chmod 755 "$WORK"
wait_http() { # url [header]
    for _ in $(seq 1 150); do
        curl -fsS -o /dev/null ${2:+-H "$2"} "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    die "$1 did not answer"
}

# ---- builds, services -------------------------------------------------------------
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shopd shopd-bare >&2
SHOPD=$BUILD/shopd
BARE=$BUILD/bench/shopd-bare
COMMIT=$(git rev-parse --short HEAD)
[[ -z $(git status --porcelain --untracked-files=no) ]] || COMMIT=$COMMIT-dirty

"$ROOT/scripts/services.sh" start "$SVC" >/dev/null
# shellcheck disable=SC1091
source "$SVC/env"
BASE_URL=$SHOPD_DATABASE_URL
for db in shopd_read peer pgbench; do
    psql "$BASE_URL" -qAtc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
done
SHOPD_DB=${BASE_URL%/*}/shopd_read
PEER_DB=${BASE_URL%/*}/peer
PG_DB=${BASE_URL%/*}/pgbench
SHOPD_REDIS=${SHOPD_REDIS_URL%/*}/1
PEER_REDIS=${SHOPD_REDIS_URL%/*}/2

# ---- shopd and its data ------------------------------------------------------------
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
SPORT=$(free_port)
SURL=http://127.0.0.1:$SPORT
SHOPD_DATABASE_URL=$SHOPD_DB SHOPD_SQL_DIR=$ROOT/sql "$SHOPD" migrate >"$WORK/migrate.log" 2>&1 ||
    die "migration failed"
SHOPD_DATABASE_URL=$SHOPD_DB SHOPD_REDIS_URL=$SHOPD_REDIS SHOPD_SQL_DIR=$ROOT/sql \
    SHOPD_LISTEN=127.0.0.1:$SPORT SHOPD_ADMIN_LISTEN= SHOPD_RATE_LIMIT=false \
    SHOPD_PLATFORM_TOKEN=$TOKEN SHOPD_ACCESS_LOG=0 \
    SHOPD_AUTH_RATE_IP=0 SHOPD_AUTH_RATE_ACCOUNT=0 SHOPD_OUTBOX_DIR="$WORK/outbox" "$SHOPD" serve >"$WORK/shopd.log" 2>&1 &
SHOPD_PID=$!
PIDS+=("$SHOPD_PID")
wait_http "$SURL/healthz"
curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"slug":"bench","name":"Store bench","currency":"EUR"}' "$SURL/api/v1/stores" >/dev/null
# The peer's shape: 1000 products of 3 variants (S, M, L), names and descriptions alike.
psql "$SHOPD_DB" -qAt >/dev/null <<'SQL'
WITH s AS (SELECT id FROM stores WHERE slug = 'bench')
INSERT INTO products (store_id, name, slug, description, base_price, status)
SELECT s.id, 'Store bench product ' || i, 'product-' || i,
       'Description of product ' || i || ' of Store bench. A comfortable everyday item.',
       1000 + (i * 37) % 9000, 'active'
  FROM s, generate_series(1, 1000) i;
WITH s AS (SELECT id FROM stores WHERE slug = 'bench')
INSERT INTO product_variants (store_id, product_id, sku, options, stock, position)
SELECT s.id, p.id, 'P' || p.id || '-' || z.size, jsonb_build_object('Size', z.size), 1000000, z.pos
  FROM s JOIN products p ON p.store_id = s.id,
       (VALUES ('S', 0), ('M', 1), ('L', 2)) z(size, pos);
VACUUM ANALYZE products;
VACUUM ANALYZE product_variants;
SQL
read -r PMIN PMAX < <(psql "$SHOPD_DB" -qAt -F ' ' -c "SELECT min(p.id), max(p.id) FROM products p JOIN stores s ON s.id = p.store_id WHERE s.slug = 'bench'")
SID=$(psql "$SHOPD_DB" -qAtc "SELECT id FROM stores WHERE slug = 'bench'")

# ---- the peer ---------------------------------------------------------------------
log "installing and seeding the peer (npm, 10 stores x 1000 products x 3 variants)"
cp -r "$PEER_SRC" "$WORK/peer"
(cd "$WORK/peer" && npm install --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1) || die "npm install failed"
(cd "$WORK/peer" && DATABASE_URL=$PEER_DB REDIS_URL=$PEER_REDIS node seed.js >"$WORK/seed.log" 2>&1) || die "peer seed failed"
read -r PPMIN PPMAX < <(psql "$PEER_DB" -qAt -F ' ' -c "SELECT min(p.id), max(p.id) FROM products p JOIN stores s ON s.id = p.store_id WHERE s.slug = 'bench'")
PPORT=$(free_port)
PURL=http://127.0.0.1:$PPORT
peer_start() { # CACHE value
    (cd "$WORK/peer" && DATABASE_URL=$PEER_DB REDIS_URL=$PEER_REDIS NODE_ENV=production PORT=$PPORT CACHE=$1 exec node server.js >>"$WORK/peer.log" 2>&1) &
    PEER_PID=$!
    wait_http "$PURL/api/v1/products/$PPMIN" 'X-Tenant-Id: bench'
}
peer_stop() {
    kill -TERM "$PEER_PID" 2>/dev/null && wait "$PEER_PID" 2>/dev/null || true
    PEER_PID=""
}

# ---- runs ---------------------------------------------------------------------------
LUA=$ROOT/bench/wrk/read.lua
declare -A RPS P99
wrk_run() { # name url lua-args...
    local name=$1 url=$2
    shift 2
    wrk -t2 -c64 -d2s -s "$LUA" "$url" -- "$@" >/dev/null 2>&1 || true
    wrk -t2 -c64 -d"${DURATION}s" --latency -s "$LUA" "$url" -- "$@" >"$WORK/$name.txt" 2>&1 || true
    RPS[$name]=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/$name.txt")
    P99[$name]=$(awk '$1 == "99%" {print $2}' "$WORK/$name.txt")
    local errs
    errs=$(grep -E 'Non-2xx|Socket errors' "$WORK/$name.txt" | tr '\n' ' ' || true)
    log "$name: ${RPS[$name]:-?} req/s, p99 ${P99[$name]:-?} $errs"
}
LIST="/api/v1/products?limit=20"
# The bytes of the pages as served (identity and gzip), for the bare server's body.
curl -fsS -o "$WORK/list.json" -H 'X-Tenant-Id: bench' "$SURL$LIST"
curl -fsS -o "$WORK/list.json" -H 'X-Tenant-Id: bench' "$SURL$LIST"
LIST_BYTES=$(stat -c %s "$WORK/list.json")
curl -fsS -o "$WORK/list.gz" -H 'X-Tenant-Id: bench' -H 'Accept-Encoding: gzip' "$SURL$LIST"
LIST_GZ_BYTES=$(stat -c %s "$WORK/list.gz")
curl -fsS -o "$WORK/list-expand.json" -H 'X-Tenant-Id: bench' "$SURL$LIST&expand=variants"
EXPAND_BYTES=$(stat -c %s "$WORK/list-expand.json")
peer_start 0
curl -fsS -o "$WORK/peer-list.json" -H 'X-Tenant-Id: bench' "$PURL/api/v1/products?page=1&limit=20"
PEER_BYTES=$(stat -c %s "$WORK/peer-list.json")
peer_stop

BPORT=$(free_port)
"$BARE" -p "$BPORT" -b "$LIST_BYTES" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_http "http://127.0.0.1:$BPORT/"
pgbench -i -q -s 10 "$PG_DB" >"$WORK/pgbench-init.txt" 2>&1

for pass in $(seq 1 "$PASSES"); do
    log "pass $pass of $PASSES"
    wrk_run "list-uncached-$pass" "$SURL" "$LIST" bench "$TOKEN" -
    wrk_run "product-uncached-$pass" "$SURL" "/api/v1/products/" bench "$TOKEN" - "$PMIN" "$PMAX"
    wrk_run "list-cached-$pass" "$SURL" "$LIST" bench - -
    wrk_run "list-cached-gzip-$pass" "$SURL" "$LIST" bench - gzip
    wrk_run "product-cached-$pass" "$SURL" "/api/v1/products/" bench - - "$PMIN" "$PMAX"
    wrk_run "bare-$pass" "http://127.0.0.1:$BPORT" "/" bench - -
    pgbench -S -c 8 -j 2 -T "$DURATION" "$PG_DB" >"$WORK/pgbench-$pass.txt" 2>&1 || true
    RPS[pgbench-$pass]=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench-$pass.txt" | head -1)
    log "pgbench -S: ${RPS[pgbench-$pass]} tps"
    peer_start 0
    wrk_run "peer-list-$pass" "$PURL" "/api/v1/products?page=1&limit=20" bench - -
    wrk_run "peer-product-$pass" "$PURL" "/api/v1/products/" bench - - "$PPMIN" "$PPMAX"
    peer_stop
    peer_start 1
    wrk_run "peer-list-cached-$pass" "$PURL" "/api/v1/products?page=1&limit=20" bench - -
    peer_stop
done
METRICS=$(curl -fsS "$SURL/metrics" | grep -E '^shopd_page_cache|^shopd_catalog_version' || true)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- EXPLAIN: the count before and after, and the page --------------------------------
explain() { psql "$SHOPD_DB" -qAt -c "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) $1" 2>&1; }
EX_OLD=$(explain "SELECT count(*) FROM (SELECT 1 FROM products p WHERE p.store_id = $SID AND p.status = 'active' ORDER BY p.id LIMIT 10001) c")
EX_NEW=$(explain "SELECT coalesce(sum(n), 0) FROM catalog_counts WHERE store_id = $SID AND status = 'active'")
EX_PAGE=$(explain "SELECT json_build_object('id', p.id, 'slug', p.slug, 'name', p.name, 'price_min', coalesce(vs.pmin, p.base_price), 'price_max', coalesce(vs.pmax, p.base_price), 'in_stock', vs.in_stock, 'image', NULL, 'variant_count', vs.n)::text FROM (SELECT p.* FROM products p WHERE p.store_id = $SID AND p.status = 'active' ORDER BY p.id DESC LIMIT 20 OFFSET 0) p LEFT JOIN LATERAL (SELECT count(*) AS n, min(coalesce(v.price, p.base_price)) AS pmin, max(coalesce(v.price, p.base_price)) AS pmax, coalesce(bool_or(v.stock > 0), false) AS in_stock FROM product_variants v WHERE v.store_id = p.store_id AND v.product_id = p.id) vs ON true ORDER BY p.id DESC")

# ---- perf -------------------------------------------------------------------------------
perf_run() { # name lua-args...
    local name=$1
    shift
    perf record -e cpu-clock -g -o "$WORK/perf-$name.data" -p "$SHOPD_PID" -- sleep "$DURATION" >"$WORK/perf-$name.log" 2>&1 &
    PERF_PID=$!
    wrk -t2 -c64 -d"${DURATION}s" -s "$LUA" "$SURL" -- "$@" >/dev/null 2>&1 || true
    wait "$PERF_PID" || true
    PERF_PID=""
    perf report -i "$WORK/perf-$name.data" --no-children --sort symbol --percent-limit 1 --stdio \
        -g none 2>/dev/null | grep -E '^ +[0-9]' | head -25 >"$WORK/perf-$name.txt" || true
    # Shares by where the time is: kernel (system calls, network), libc, shopd, libevent.
    perf report -i "$WORK/perf-$name.data" --no-children --sort dso --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9]' | head -10 >"$WORK/perf-$name-dso.txt" || true
}
if [[ $PERF == 1 ]] && command -v perf >/dev/null; then
    log "perf: cached list, then uncached list"
    perf_run list-cached "$LIST" bench - -
    perf_run list-uncached "$LIST" bench "$TOKEN" -
fi

# ---- report -------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.3f", a / b; else print "n/a" }'; }
x() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.1fx", a / b; else print "n/a" }'; }
OUT=$ROOT/bench/results/$(date -u +%Y-%m-%d)-$COMMIT-read.md
{
    echo "# Read-path figures (issue 11), $(date -u +%Y-%m-%d) commit $COMMIT"
    echo
    echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); load average"
    echo "at the end of the runs: $LOAD. **Noisy**: the machine is shared with other engineers'"
    echo "builds and tests while this runs, and wrk, shopd, the peer, PostgreSQL and Redis share its"
    echo "cores. Only ratios from this one run mean anything. wrk -t2 -c64, ${DURATION} s per run after"
    echo "a 2 s warm-up, $PASSES pass(es). Data: 1,000 products x 3 variants in the store \`bench\`"
    echo "(shopd and the peer alike). pgbench -S: 8 clients, scale 10, the same PostgreSQL."
    echo
    echo "Bytes of a list page of 20: shopd lean $LIST_BYTES (gzip $LIST_GZ_BYTES on the wire, $(x "$LIST_BYTES" "$LIST_GZ_BYTES") smaller),"
    echo "shopd with expand=variants $EXPAND_BYTES, the peer $PEER_BYTES."
    echo
    for pass in $(seq 1 "$PASSES"); do
        pg=${RPS[pgbench-$pass]:-}
        echo "### Pass $pass"
        echo
        echo "| figure | shopd req/s | p99 | reference | ratio | peer req/s | shopd / peer |"
        echo "|---|---:|---:|---|---:|---:|---:|"
        echo "| list page 20, uncached (platform token) | ${RPS[list-uncached-$pass]:-} | ${P99[list-uncached-$pass]:-} | pgbench -S $pg tps | $(ratio "${RPS[list-uncached-$pass]:-}" "$pg") | ${RPS[peer-list-$pass]:-} | $(x "${RPS[list-uncached-$pass]:-}" "${RPS[peer-list-$pass]:-}") |"
        echo "| product page, uncached | ${RPS[product-uncached-$pass]:-} | ${P99[product-uncached-$pass]:-} | pgbench -S $pg tps | $(ratio "${RPS[product-uncached-$pass]:-}" "$pg") | ${RPS[peer-product-$pass]:-} | $(x "${RPS[product-uncached-$pass]:-}" "${RPS[peer-product-$pass]:-}") |"
        echo "| list page 20, cached (anonymous) | ${RPS[list-cached-$pass]:-} | ${P99[list-cached-$pass]:-} | shopd-bare, $LIST_BYTES-byte body: ${RPS[bare-$pass]:-} (p99 ${P99[bare-$pass]:-}) | $(ratio "${RPS[list-cached-$pass]:-}" "${RPS[bare-$pass]:-}") | ${RPS[peer-list-cached-$pass]:-} (CACHE=1) | $(x "${RPS[list-cached-$pass]:-}" "${RPS[peer-list-cached-$pass]:-}") |"
        echo "| list page 20, cached, gzip | ${RPS[list-cached-gzip-$pass]:-} | ${P99[list-cached-gzip-$pass]:-} | shopd-bare | $(ratio "${RPS[list-cached-gzip-$pass]:-}" "${RPS[bare-$pass]:-}") | | |"
        echo "| product page, cached | ${RPS[product-cached-$pass]:-} | ${P99[product-cached-$pass]:-} | pgbench -S $pg tps | $(ratio "${RPS[product-cached-$pass]:-}" "$pg") | | |"
        echo
    done
    echo "Page cache counters at the end:"
    echo '```'
    echo "$METRICS"
    echo '```'
    echo
    echo "## The list's count, before (bounded count over the store's products) and after (sql/0020)"
    echo
    echo '```'
    echo "-- before: SELECT count(*) FROM (SELECT 1 FROM products p WHERE ... ORDER BY p.id LIMIT 10001) c"
    echo "$EX_OLD"
    echo
    echo "-- after: SELECT coalesce(sum(n), 0) FROM catalog_counts WHERE store_id = ... AND status = 'active'"
    echo "$EX_NEW"
    echo '```'
    echo
    echo "## The page (lean entries: 20 products, one index range of variants each)"
    echo
    echo '```'
    echo "$EX_PAGE"
    echo '```'
    if [[ -s $WORK/perf-list-cached.txt ]]; then
        echo
        echo "## Where the time goes (perf record -e cpu-clock -g of shopd, one more ${DURATION} s run each)"
        for name in list-cached list-uncached; do
            echo
            echo "$name, by object:"
            echo '```'
            cat "$WORK/perf-$name-dso.txt"
            echo '```'
            echo "$name, by symbol (self, >= 1%):"
            echo '```'
            cat "$WORK/perf-$name.txt"
            echo '```'
        done
    fi
    echo
    echo "wrk outputs:"
    echo '```'
    for f in "$WORK"/*-[0-9].txt; do
        echo "== $(basename "$f" .txt)"
        grep -E 'Latency|Req/Sec|requests in|Requests/sec|Transfer|Non-2xx|Socket|tps' "$f" || true
    done
    echo '```'
} >"$OUT"
cat "$OUT"
log "wrote $OUT"
