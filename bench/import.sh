#!/usr/bin/env bash
# import.sh: issue 15's import figures, end to end, on a private PostgreSQL and
# Redis (scripts/services.sh, fsync on, as bench/run) and a Release shopd:
#
#   1. the API seeding path (`shopbench seed --per-request`: one request per
#      product and per variant, as bench/run seeds) into API_STORES stores of
#      API_PRODUCTS products with VARIANTS variants each: products per second;
#   2. the bulk path: `shopctl import products` of PRODUCTS products with
#      VARIANTS variants each (a JSON lines file) into one store over the admin
#      port (import.products -> batches of products.import, one transaction
#      each on the store's actor): rows per second, shopd's RSS before, at its
#      peak (sampled every 0.2 s) and after, the counts and the stock ledger
#      checked in PostgreSQL; the ratio to 1.;
#   3. `shopbench seed --stores K --products 20 --variants 2` (the bulk route,
#      POST /api/v1/imports/products, one request per store) for the full
#      K = 10,000 browse run: its wall time, then a short `tenants` browse run
#      over the K stores to show the catalogs answer.
#
#   bench/import.sh            # about 3 minutes on 2 cores
#   PRODUCTS=10000 K=1000 bench/import.sh   # a quick look
#
# Writes bench/results/<date>-<commit>-import.md and .json; stops what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-release}
PRODUCTS=${PRODUCTS:-100000}
VARIANTS=${VARIANTS:-3}
API_STORES=${API_STORES:-20}
API_PRODUCTS=${API_PRODUCTS:-50}
K=${K:-10000}
BROWSE_S=${BROWSE_S:-5}

BENCH_NAME="bench/import"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, bench_init

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shopd shopctl shopbench >&2
SHOPD=$BUILD/shopd
SHOPCTL=$BUILD/shopctl
SHOPBENCH=$BUILD/bench/shopbench
for b in "$SHOPD" "$SHOPCTL" "$SHOPBENCH"; do [[ -x $b ]] || die "$b was not built"; done

DATE=$(date -u +%Y-%m-%d)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo nocommit)
if [[ $COMMIT != nocommit && -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    COMMIT=$COMMIT-dirty
fi
STEM=$ROOT/bench/results/$DATE-$COMMIT-import
bench_init bulk-bench
# The server runs as a copy named bulk-server: on a shared machine a broad
# `pkill shopd` of someone else's script must not stop this run halfway.
cp "$SHOPD" "$WORK/bulk-server"
SERVER=$WORK/bulk-server

log "starting PostgreSQL and Redis in $SVC"
"$ROOT/scripts/services.sh" start "$SVC" >/dev/null
source "$SVC/env"
export SHOPD_DATABASE_URL SHOPD_REDIS_URL
SHOPD_SQL_DIR=$ROOT/sql "$SHOPD" migrate >"$WORK/migrate.log" 2>&1 || die "migration failed"
PORT=$(free_port)
APORT=$(free_port)
while [[ $APORT == "$PORT" ]]; do APORT=$(free_port); done
URL=http://127.0.0.1:$PORT
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
ATOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
SHOPD_LISTEN=127.0.0.1:$PORT SHOPD_ADMIN_LISTEN=127.0.0.1:$APORT SHOPD_ADMIN_TOKEN=$ATOKEN \
    SHOPD_PLATFORM_TOKEN=$TOKEN SHOPD_ACCESS_LOG=false SHOPD_MIGRATE=false \
    SHOPD_AUTH_RATE_IP=0 SHOPD_AUTH_RATE_ACCOUNT=0 SHOPD_RATE_LIMIT=false \
    "$SERVER" serve >"$WORK/shopd.log" 2>&1 &
SHOPD_PID=$!
PIDS+=("$SHOPD_PID")
for _ in $(seq 1 150); do
    curl -sf -o /dev/null "$URL/healthz" && break
    kill -0 "$SHOPD_PID" 2>/dev/null || die "shopd exited: $(tail -n 5 "$WORK/shopd.log")"
    sleep 0.1
done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$SHOPD_PID/status"; }
sql() { psql "$SHOPD_DATABASE_URL" -XAtq -c "$1"; }

# 1. The API path, as bench/run seeds (stores first; the per-request catalog).
log "API path: $API_STORES stores x $API_PRODUCTS products x $VARIANTS variants, one request each"
"$SHOPBENCH" seed --stores "$API_STORES" --verify 0 --token "$TOKEN" "$URL" >/dev/null
"$SHOPBENCH" seed --stores "$API_STORES" --products "$API_PRODUCTS" --variants "$VARIANTS" \
    --per-request --verify 0 --token "$TOKEN" "$URL" | tee "$WORK/api.txt" >&2
API_RATE=$(sed -n 's/^seed: products: .* s, \([0-9]*\) products\/s.*/\1/p' "$WORK/api.txt")
[[ -n $API_RATE && $API_RATE -gt 0 ]] || die "no API rate in $(cat "$WORK/api.txt")"

# 2. The bulk path: one store, PRODUCTS rows, over the admin port.
log "writing $PRODUCTS rows with $VARIANTS variants each"
python3 - "$PRODUCTS" "$VARIANTS" >"$WORK/rows.jsonl" <<'EOF'
import json, sys
n, v = int(sys.argv[1]), int(sys.argv[2])
for i in range(1, n + 1):
    print(json.dumps({"name": f"Bulk Product {i}", "slug": f"bulk-product-{i}",
                      "base_price": 100 + i % 5000, "status": "active", "brand": f"Brand {i % 50}",
                      "category": f"bulk-cat-{i % 20}",
                      "description": f"Product number {i} of the bulk import benchmark.",
                      "attributes": {"material": ["cotton", "wool", "linen"][i % 3]},
                      "variants": [{"sku": f"BULK-{i}-{j}", "options": {"size": s},
                                    "price": 100 + i % 5000 + j, "stock": 10 + j}
                                   for j, s in enumerate(["S", "M", "L", "XL", "XXL"][:v])]},
                     separators=(",", ":")))
EOF
curl -sf -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"slug":"bulk","name":"Bulk","currency":"USD"}' "$URL/api/v1/stores" || die "no bulk store"
RSS0=$(rss)
: >"$WORK/rss.txt"
(while kill -0 "$SHOPD_PID" 2>/dev/null; do rss >>"$WORK/rss.txt"; sleep 0.2; done) &
SAMPLER=$!
log "bulk path: shopctl import products ($PRODUCTS rows)"
T0=$(date +%s.%N)
"$SHOPCTL" --addr "127.0.0.1:$APORT" --token "$ATOKEN" --timeout 600 --json \
    import products --store bulk "$WORK/rows.jsonl" >"$WORK/import.json"
T1=$(date +%s.%N)
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
RSS_PEAK=$(sort -n "$WORK/rss.txt" | tail -n 1)
RSS1=$(rss)
SECS=$(echo "$T1 - $T0" | bc -l)
IMPORTED=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["imported"])' "$WORK/import.json")
REJECTED=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["rejected"]))' "$WORK/import.json")
RATE=$(echo "$IMPORTED / $SECS" | bc -l | xargs printf '%.0f')
RATIO=$(echo "$RATE / $API_RATE" | bc -l | xargs printf '%.1f')
SID=$(sql "SELECT id FROM stores WHERE slug = 'bulk'")
NP=$(sql "SELECT count(*) FROM products WHERE store_id = $SID")
NV=$(sql "SELECT count(*) FROM product_variants WHERE store_id = $SID")
BAD_LEDGER=$(sql "SELECT count(*) FROM product_variants v WHERE v.store_id = $SID AND v.stock <>
    (SELECT coalesce(sum(delta), 0) FROM inventory_movements m WHERE m.store_id = v.store_id AND m.variant_id = v.id)")
[[ $NP == "$PRODUCTS" && $NV == $((PRODUCTS * VARIANTS)) && $BAD_LEDGER == 0 && $REJECTED == 0 ]] ||
    die "bulk import: $NP products, $NV variants, $BAD_LEDGER variants off the ledger, $REJECTED rejected"
log "bulk: $IMPORTED products in $SECS s = $RATE products/s (${RATIO}x the API path's $API_RATE)"

# 3. K stores x 20 products x 2 variants through shopbench seed's bulk route.
log "seeding $K stores x 20 products x 2 variants"
T0=$(date +%s.%N)
"$SHOPBENCH" seed --stores "$K" --products 20 --variants 2 --token "$TOKEN" "$URL" |
    tee "$WORK/seedk.txt" >&2
T1=$(date +%s.%N)
SEEDK_S=$(echo "$T1 - $T0" | bc -l | xargs printf '%.1f')
SEEDK_LINE=$(grep '^seed: products:' "$WORK/seedk.txt" | sed 's/^seed: products: //')
STORES_LINE=$(head -n 1 "$WORK/seedk.txt" | sed 's/^seed: //')
NK=$(sql "SELECT count(*) FROM products p JOIN stores s ON s.id = p.store_id WHERE s.slug LIKE 'bench-%'")
log "browse over the $K stores for $BROWSE_S s"
"$SHOPBENCH" -t 2 -c 64 -d "$BROWSE_S" -w 1 "$URL" tenants --stores "$K" >"$WORK/browse.txt" 2>&1 ||
    log "the browse run failed: $(tail -n 3 "$WORK/browse.txt")"
BROWSE=$(grep -m1 -E 'req/s|requests/s' "$WORK/browse.txt" || echo "n/a")

MACHINE="$(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), $(uname -r)"
cat >"$STEM.md" <<EOF
# Import figures ($DATE, $COMMIT, Release)

Machine: $MACHINE; shopd, PostgreSQL (fsync on), Redis and the clients share it.

| What | Figure |
|---|---|
| API path (\`shopbench seed --per-request\`, $API_STORES stores x $API_PRODUCTS products x $VARIANTS variants, 8 connections) | **$API_RATE products/s** |
| Bulk path (\`shopctl import products\`, $PRODUCTS products x $VARIANTS variants, one store, admin port) | **$RATE products/s** ($(echo "$RATE * (1 + $VARIANTS)" | bc) rows/s with the variants), $(printf '%.1f' "$SECS") s |
| Ratio bulk / API, same run | **${RATIO}x** |
| shopd RSS before / peak / after the bulk import | $((RSS0 / 1024)) / $((RSS_PEAK / 1024)) / $((RSS1 / 1024)) MiB |
| Checked in PostgreSQL | $NP products, $NV variants, $BAD_LEDGER variants whose stock is not their ledger sum, $REJECTED rows rejected |
| \`shopbench seed --stores $K --products 20 --variants 2\` (bulk route) | **$SEEDK_S s** wall time: $STORES_LINE; products: $SEEDK_LINE; $NK products in the bench stores |
| \`shopbench tenants --stores $K\` after it, ${BROWSE_S} s | $BROWSE |
EOF
cat >"$STEM.json" <<EOF
{"date": "$DATE", "commit": "$COMMIT", "machine": "$MACHINE", "api_products_per_s": $API_RATE,
 "bulk_products": $PRODUCTS, "variants_per_product": $VARIANTS, "bulk_seconds": $SECS,
 "bulk_products_per_s": $RATE, "ratio": $RATIO, "rss_kib": {"before": $RSS0, "peak": $RSS_PEAK, "after": $RSS1},
 "seed_k": $K, "seed_k_seconds": $SEEDK_S, "seed_k_products": $NK}
EOF
cat "$STEM.md"
log "wrote $STEM.md and .json"
