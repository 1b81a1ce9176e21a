#!/usr/bin/env bash
# bench/search.sh: issue 17's search figures: GET /api/v1/search and
# /search/suggest over one store of N products (default 100,000), queries per
# second and latency percentiles (wrk --latency), each answer built and served
# from the catalog cache, and the EXPLAIN ANALYZE plan
# of every statement each scenario runs (auto_explain, the statements exactly
# as shopd sends them), into bench/results/<date>-<commit>-search.md.
#
#   bench/search.sh          N=100000 DURATION=10 (s per run) CONNS=16
#
# The corpus is made in SQL (generate_series) through the real triggers of
# sql/0015: 20 categories, 50 brands, names from 20 adjectives x 25 nouns and
# the product number, a color and a material attribute, 95% active, one
# variant (SKU, size, stock 0..4) for every other product.
# One private PostgreSQL and Redis (scripts/services.sh), stopped at the end,
# also on failure or Ctrl-C. KEEP=1 keeps the work folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-release}
N=${N:-100000}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
BENCH_NAME="search"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, wait_http, bench_init
for t in wrk psql curl; do command -v "$t" >/dev/null || die "$t is not installed"; done

bench_init shopd-search
chmod 755 "$WORK"

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shopd >&2
SHOPD=$BUILD/shopd
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
        SHOPD_PLATFORM_TOKEN=$TOKEN SHOPD_ACCESS_LOG=0 SHOPD_OUTBOX_DIR="$WORK/outbox" "$SHOPD" serve >>"$WORK/shopd.log" 2>&1 &
    PIDS+=($!)
    wait_http "$SURL/healthz"
}
stop_shopd() {
    local p=${PIDS[-1]}
    kill -TERM "$p" && wait "$p" || true
    unset 'PIDS[-1]'
}

start_shopd
curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"slug":"bench","name":"Bench","currency":"EUR"}' "$SURL/api/v1/stores" >/dev/null
SID=$(psql "$SHOPD_DATABASE_URL" -qAtc "SELECT id FROM stores WHERE slug = 'bench'")

log "seeding $N products"
T0=$(date +%s)
psql "$SHOPD_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -v sid="$SID" -v n="$N" >/dev/null <<'SQL'
INSERT INTO categories (store_id, name, slug)
SELECT :sid, 'Category ' || g, 'category-' || g FROM generate_series(1, 20) g;
WITH adj AS (SELECT ARRAY['red','blue','green','black','white','soft','warm','light','heavy','classic',
                          'modern','vintage','slim','wide','bold','plain','striped','dotted','velvet','linen'] a),
     noun AS (SELECT ARRAY['shirt','tshirt','jacket','sweater','hoodie','jeans','shorts','skirt','dress','coat',
                           'scarf','hat','cap','socks','shoes','boots','sandals','belt','bag','wallet',
                           'gloves','vest','blouse','polo','cardigan'] a),
     cats AS (SELECT array_agg(id ORDER BY id) a FROM categories WHERE store_id = :sid)
INSERT INTO products (store_id, category_id, name, slug, description, base_price, status, brand, attributes)
SELECT :sid, cats.a[1 + g % 20],
       initcap(adj.a[1 + g % 20]) || ' ' || initcap(noun.a[1 + (g / 20) % 25]) || ' ' || g,
       'p-' || g,
       'A ' || adj.a[1 + (g * 7) % 20] || ' ' || noun.a[1 + (g / 20) % 25] || ' made of ' ||
           (ARRAY['cotton','wool','silk','leather','denim'])[1 + g % 5] || ', number ' || g,
       100 + (g * 7919) % 60000,
       CASE WHEN g % 20 = 0 THEN 'draft' ELSE 'active' END,
       'Brand ' || (g % 50),
       jsonb_build_object('color', (ARRAY['red','blue','green','black','white','grey','navy','pink'])[1 + g % 8],
                          'material', (ARRAY['cotton','wool','silk','leather','denim'])[1 + g % 5])
FROM generate_series(1, :n) g, adj, noun, cats;
INSERT INTO product_variants (store_id, product_id, sku, options, stock)
SELECT :sid, id, 'SKU-' || id, jsonb_build_object('size', (ARRAY['S','M','L','XL'])[1 + id % 4]), id % 5
FROM products WHERE store_id = :sid AND id % 2 = 0;
ANALYZE;
SQL
SEED_S=$(($(date +%s) - T0))
ACTIVE=$(psql "$SHOPD_DATABASE_URL" -qAtc "SELECT count(*) FROM products WHERE store_id = $SID AND status = 'active'")
log "seeded in ${SEED_S}s ($ACTIVE active)"

# name|path: the scenarios.
SCENARIOS=(
    "fulltext, common word|/api/v1/search?q=jacket"
    "fulltext, two words|/api/v1/search?q=velvet+jacket"
    "fulltext + filters|/api/v1/search?q=shirt&brand=Brand+7&attr.color=red&in_stock=true"
    "typo (trigram fallback)|/api/v1/search?q=cardgian"
    "no q: facets over the store|/api/v1/search"
    "filters only, price sort|/api/v1/search?attr.color=navy&attr.material=silk&price_max=20000&sort=price"
    "suggest, 2 letters|/api/v1/search/suggest?q=bl"
    "suggest, 5 letters|/api/v1/search/suggest?q=vinta"
)

# Plans: auto_explain logs every statement of one request per scenario.
psql "$SUPER" -qAt -c "ALTER DATABASE shopd SET session_preload_libraries = 'auto_explain'" \
    -c "ALTER DATABASE shopd SET auto_explain.log_min_duration = 0" \
    -c "ALTER DATABASE shopd SET auto_explain.log_analyze = on" \
    -c "ALTER DATABASE shopd SET auto_explain.log_buffers = on" >/dev/null
stop_shopd
start_shopd
PGLOG=$SVC/pg/postgres.log
PLANS=$WORK/plans.md
: >"$PLANS"
for s in "${SCENARIOS[@]}"; do
    name=${s%%|*} path=${s#*|}
    off=$(stat -c %s "$PGLOG")
    curl -sS --max-time 60 -o /dev/null -H 'X-Tenant-Id: bench' "$SURL$path" || die "$path failed"
    sleep 0.3
    {
        echo "### $name: \`GET $path\`"
        echo
        echo '```'
        tail -c +$((off + 1)) "$PGLOG" | sed -e 's/^[0-9-]* [0-9:.]* UTC \[[0-9]*\] [a-z]*@[a-z]* //' |
            grep -v '^\s*$' | head -c 30000
        echo '```'
        echo
    } >>"$PLANS"
done
psql "$SUPER" -qAt -c "ALTER DATABASE shopd RESET ALL" >/dev/null
stop_shopd
start_shopd

# Throughput: each scenario warmed, then wrk, twice: with the platform token
# (an admin caller: the catalog cache is bypassed, every answer is built) and
# anonymous (a shopper: served from the cache after the first answer).
RES=$WORK/table.md
echo "| scenario | request | built: req/s | p50 | p99 | cached: req/s | p50 | p99 | hits (total) |" >"$RES"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|" >>"$RES"
run_wrk() { # path, extra header args...; prints "rps p50 p99"
    local path=$1 out non2xx
    shift
    wrk -t2 -c"$CONNS" -d2s --timeout 30s -H 'X-Tenant-Id: bench' "$@" "$SURL$path" >/dev/null
    out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 30s --latency -H 'X-Tenant-Id: bench' "$@" "$SURL$path")
    echo "$out" >>"$WORK/wrk.txt"
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    [[ -z $non2xx ]] || log "$path: $non2xx non-2xx answers"
    echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1 == "50%" {print $2}') $(echo "$out" | awk '$1 == "99%" {print $2}')"
}
for s in "${SCENARIOS[@]}"; do
    name=${s%%|*} path=${s#*|}
    total=$(curl -sS --max-time 60 -H 'X-Tenant-Id: bench' "$SURL$path" |
        python3 -c 'import sys,json; d=json.load(sys.stdin); print(d["total"] if "total" in d else len(d["products"]))' 2>/dev/null || echo "error")
    read -r f_rps f_p50 f_p99 < <(run_wrk "$path" -H "Authorization: Bearer $TOKEN")
    read -r c_rps c_p50 c_p99 < <(run_wrk "$path")
    echo "| $name | \`$path\` | $f_rps | $f_p50 | $f_p99 | $c_rps | $c_p50 | $c_p99 | $total |" >>"$RES"
    log "$name: built $f_rps req/s (p99 $f_p99), cached $c_rps req/s (p99 $c_p99)"
done

OUT=$ROOT/bench/results/$(date -u +%F)-$COMMIT-search.md
{
    echo "# Search over $N products ($ACTIVE active), commit $COMMIT"
    echo
    echo "$(date -u '+%F %H:%M UTC'), $(nproc) CPUs (shared with other work on this machine)," \
        "$(psql "$SHOPD_DATABASE_URL" -qAtc 'SHOW server_version'), shopd Release build, defaults" \
        "(SHOPD_WORKERS etc.), rate limits off. wrk -t2 -c$CONNS -d${DURATION}s per figure, after 2 s of warm-up;" \
        "built: with the platform token (the catalog cache bypassed); cached: anonymous;" \
        "one store, the corpus seeded in ${SEED_S}s through the search triggers."
    echo
    cat "$RES"
    echo
    echo "## Plans (auto_explain, EXPLAIN ANALYZE with buffers, one request each)"
    echo
    cat "$PLANS"
} >"$OUT"
log "wrote $OUT"
