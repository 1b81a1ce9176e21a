#!/usr/bin/env bash
# bench/stripe.sh: issue 13's Stripe figures against the fake Stripe
# (tests/fake_stripe/fake_stripe.mjs), into bench/results/<date>-<commit>-stripe.md:
#
#   webhook    signed Stripe webhook POSTs (HMAC-SHA256 checked against the store's
#              sealed signing secret, the event id deduplicated into webhook_events in
#              its transaction on the store's actor, acknowledged), one in ten a
#              redelivery: deliveries/s and latency percentiles
#   checkout   guest add-to-cart + a keyed checkout that creates a PaymentIntent at the
#              fake (on the blocking pool, the answer recorded on the actor): checkouts/s
#              and the checkout's latency percentiles
#
#   bench/stripe.sh        DURATION (default 15) s per run, CONNS (default 16) connections
#
# The client is bench/stripe_load.mjs (node, keep-alive, a closed loop per connection).
# One private PostgreSQL and Redis (scripts/services.sh), shopd built Release
# (BUILD_DIR, default build-release). Everything it started is stopped at the end,
# also on failure or Ctrl-C. KEEP=1 keeps the work folder (logs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-release}
DURATION=${DURATION:-15}
CONNS=${CONNS:-16}
BENCH_NAME="stripe"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, wait_http, bench_init
for t in node psql curl python3; do command -v "$t" >/dev/null || die "$t is not installed"; done

bench_init shopd-stripe

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shopd >&2
SHOPD=$BUILD/shopd
COMMIT=$(git rev-parse --short HEAD)
[[ -z $(git status --porcelain --untracked-files=no) ]] || COMMIT=$COMMIT-dirty

"$ROOT/scripts/services.sh" start "$SVC" >/dev/null
# shellcheck disable=SC1091
source "$SVC/env"

# ---- the fake Stripe and shopd --------------------------------------------------------
node "$ROOT/tests/fake_stripe/fake_stripe.mjs" >"$WORK/fake.out" 2>"$WORK/fake.log" &
PIDS+=($!)
for _ in $(seq 1 50); do grep -q '^PORT ' "$WORK/fake.out" 2>/dev/null && break; sleep 0.1; done
FAKE=http://127.0.0.1:$(sed -n 's/^PORT //p' "$WORK/fake.out")
curl -fsS -o /dev/null -H 'Content-Type: application/json' -d '{"create":"succeed"}' "$FAKE/_control"

TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
SPORT=$(free_port)
SURL=http://127.0.0.1:$SPORT
SHOPD_SQL_DIR=$ROOT/sql "$SHOPD" migrate >"$WORK/migrate.log" 2>&1 || die "migration failed"
SHOPD_SQL_DIR=$ROOT/sql SHOPD_LISTEN=127.0.0.1:$SPORT SHOPD_ADMIN_LISTEN= SHOPD_RATE_LIMIT=false \
    SHOPD_PLATFORM_TOKEN=$TOKEN SHOPD_ACCESS_LOG=0 SHOPD_STRIPE_ANY_BASE=true \
    SHOPD_SECRETS_KEY_FILE=$WORK/secrets.key SHOPD_OUTBOX_DIR=$WORK/outbox \
    "$SHOPD" serve >"$WORK/shopd.log" 2>&1 &
PIDS+=($!)
wait_http "$SURL/healthz"

api() { curl -fsS -H "Authorization: Bearer $TOKEN" -H 'X-Tenant-Id: bench' -H 'Content-Type: application/json' "$@"; }
jget() { python3 -c "import sys,json; print(json.load(sys.stdin)$1)"; }
curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"slug":"bench","name":"Bench","currency":"EUR"}' "$SURL/api/v1/stores" >/dev/null
WHSEC=whsec_bench_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
api -X PATCH -d "{\"secret_key\":\"sk_test_bench_0123456789\",\"webhook_secrets\":[\"$WHSEC\"],\"api_base\":\"$FAKE\",\"default\":true}" \
    "$SURL/api/v1/admin/payments/stripe" >/dev/null
PRODUCT=$(api -d '{"name":"Mug","base_price":1000,"status":"active"}' "$SURL/api/v1/products" | jget '["id"]')
VARIANT=$(api -d '{"sku":"MUG-1","options":{"c":"red"},"price":1000}' "$SURL/api/v1/products/$PRODUCT/variants" | jget '["id"]')
api -X PATCH -d '{"adjust":10000000,"reason":"bench"}' "$SURL/api/v1/variants/$VARIANT/inventory" >/dev/null
ZONE=$(api -d '{"name":"Germany","countries":["DE"]}' "$SURL/api/v1/admin/shipping-zones" | jget '["id"]')
RATE=$(api -d '{"name":"Standard","kind":"flat","price":500}' "$SURL/api/v1/admin/shipping-zones/$ZONE/rates" | jget '["id"]')

# ---- the runs -----------------------------------------------------------------------
log "webhooks: $CONNS connections, ${DURATION}s"
WH=$(node "$ROOT/bench/stripe_load.mjs" webhook "$SURL" bench "$WHSEC" "$CONNS" "$DURATION")
log "$WH"
log "checkouts with Stripe: $CONNS connections, ${DURATION}s"
CO=$(RATE=$RATE node "$ROOT/bench/stripe_load.mjs" checkout "$SURL" bench "$VARIANT" "$CONNS" "$DURATION")
log "$CO"
STATS=$(curl -fsS "$FAKE/_stats")
DB=$(psql "$SHOPD_DATABASE_URL" -qAtc "SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM orders), (SELECT count(*) FROM orders WHERE status = 'PAID'), (SELECT count(DISTINCT provider_ref) FROM payments WHERE provider_ref IS NOT NULL)")

mkdir -p "$ROOT/bench/results"
OUT=$ROOT/bench/results/$(date -u +%Y-%m-%d)-$COMMIT-stripe.md
{
    echo "# bench/stripe.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT"
    echo
    echo "Machine: $(nproc) CPUs, $(uname -sr), load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "shopd Release, SHOPD_RATE_LIMIT=false, access log off, SHOPD_BLOCKING_THREADS=${SHOPD_BLOCKING_THREADS:-default}; the client (node), shopd, the fake"
    echo "Stripe (node), PostgreSQL and Redis share these cores. $CONNS connections, ${DURATION} s per run."
    echo
    echo '## Signed webhooks'
    echo
    echo '```json'
    echo "$WH"
    echo '```'
    echo
    echo '## Checkout with Stripe (the fake answers succeeded)'
    echo
    echo '```json'
    echo "$CO"
    echo '```'
    echo
    echo "Fake Stripe afterwards: $STATS"
    echo
    echo "Database afterwards (webhook_events | orders | PAID | distinct PaymentIntents): $DB"
} >"$OUT"
log "written $OUT"
