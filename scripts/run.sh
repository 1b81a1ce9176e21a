#!/usr/bin/env bash
# run.sh: build and run shopd with everything it needs (README command 1).
#
# Installs missing packages, builds Release in build-release/, starts a private
# PostgreSQL + Redis in .shopd/ (kept between runs), applies migrations,
# creates the "demo" store and seeds it (scripts/seed-demo.mjs: a catalog of 50
# products and a few weeks of orders), then runs `shopd serve` in the foreground. Ctrl-C
# (or SIGTERM) stops shopd gracefully, then the private services.
#
# Settings already in the environment win: SHOPD_LISTEN (default
# 127.0.0.1:8080), SHOPD_PLATFORM_TOKEN (default: .shopd/platform_token,
# generated once), and any other SHOPD_* variable shopd understands.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
STATE=$ROOT/.shopd
JOBS=${SHOPD_JOBS:-2}

scripts/deps.sh

cmake -S "$ROOT" -B "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$ROOT/build-release" -j"$JOBS" --target shopd

scripts/services.sh start "$STATE"
# shellcheck disable=SC1091
source "$STATE/env"
export SHOPD_DATABASE_URL SHOPD_REDIS_URL

SHOPD_PID=""
STOPPING=0
# Stops shopd (forwarding the signal that stopped us), waits for it to
# finish its graceful shutdown, then stops the private services. Runs once.
shutdown() {
    local sig=$1
    [[ $STOPPING -eq 1 ]] && return
    STOPPING=1
    if [[ -n $SHOPD_PID ]] && kill -0 "$SHOPD_PID" 2>/dev/null; then
        kill -s "$sig" "$SHOPD_PID" 2>/dev/null || true
        wait "$SHOPD_PID" 2>/dev/null || true
    fi
    "$ROOT/scripts/services.sh" stop "$STATE" || true
}
trap 'shutdown INT; exit 130' INT
trap 'shutdown TERM; exit 143' TERM
trap 'shutdown TERM; exit 129' HUP
trap 'shutdown TERM' EXIT

"$ROOT/build-release/shopd" migrate

psql "$SHOPD_DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -c \
    "INSERT INTO stores (slug, name, currency) VALUES ('demo', 'Demo Store', 'USD')
     ON CONFLICT (slug) DO NOTHING"

if [[ -z ${SHOPD_PLATFORM_TOKEN:-} ]]; then
    if [[ ! -s $STATE/platform_token ]]; then
        (umask 077 && openssl rand -hex 24 >"$STATE/platform_token")
    fi
    SHOPD_PLATFORM_TOKEN=$(<"$STATE/platform_token")
fi
export SHOPD_PLATFORM_TOKEN
export SHOPD_LISTEN=${SHOPD_LISTEN:-127.0.0.1:8080}
# The admin protocol (shopctl) on 127.0.0.1:8081 with a token kept in .shopd/admin_token.
export SHOPD_ADMIN_LISTEN=${SHOPD_ADMIN_LISTEN-127.0.0.1:8081}
if [[ -z ${SHOPD_ADMIN_TOKEN:-} ]]; then
    if [[ ! -s $STATE/admin_token ]]; then
        (umask 077 && openssl rand -hex 24 >"$STATE/admin_token")
    fi
    SHOPD_ADMIN_TOKEN=$(<"$STATE/admin_token")
fi
export SHOPD_ADMIN_TOKEN
# Access tokens survive restarts with a key kept in .shopd/; reset e-mails land in .shopd/outbox.
if [[ -z ${SHOPD_JWT_KEYS:-} ]]; then
    if [[ ! -s $STATE/jwt_secret ]]; then
        (umask 077 && openssl rand -hex 32 >"$STATE/jwt_secret")
    fi
    SHOPD_JWT_KEYS="main:$(<"$STATE/jwt_secret")"
fi
export SHOPD_JWT_KEYS
export SHOPD_OUTBOX_DIR=${SHOPD_OUTBOX_DIR:-$STATE/outbox}
export SHOPD_MEDIA_DIR=${SHOPD_MEDIA_DIR:-$STATE/media}
# Stripe keys and webhook secrets are sealed at rest (AES-256-GCM) with
# SHOPD_SECRETS_KEY, else with a key shopd makes once in .shopd/secrets_key.
export SHOPD_SECRETS_KEY_FILE=${SHOPD_SECRETS_KEY_FILE:-$STATE/secrets_key}

# Demo accounts (created once; the passwords are fixed demo values, printed below).
DEMO_SUPER=super@demo.test DEMO_SUPER_PW=demo-super-pass-1
DEMO_ADMIN=admin@demo.test DEMO_ADMIN_PW=demo-admin-pass-1
DEMO_CUSTOMER=customer@demo.test DEMO_CUSTOMER_PW=demo-customer-pass-1
printf '%s\n' "$DEMO_SUPER_PW" |
    "$ROOT/build-release/shopd" create-super-admin --email "$DEMO_SUPER" --password-stdin >/dev/null

# Not exec: this shell stays to stop the services afterwards. setsid keeps the
# terminal's Ctrl-C from reaching shopd directly, so it gets exactly one
# signal, the one forwarded by the trap above.
setsid "$ROOT/build-release/shopd" serve &
SHOPD_PID=$!
for _ in $(seq 100); do
    curl -fs "http://$SHOPD_LISTEN/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
# The demo store's admin and customer, through the API (201, or 409 when they exist).
demo_user() {
    curl -s -o /dev/null -H "Authorization: Bearer $SHOPD_PLATFORM_TOKEN" -H 'X-Tenant-Id: demo' \
        -H 'Content-Type: application/json' \
        -d "{\"email\":\"$1\",\"password\":\"$2\",\"role\":\"$3\",\"name\":\"Demo $3\"}" \
        "http://$SHOPD_LISTEN/api/v1/admin/users" || true
}
demo_user "$DEMO_ADMIN" "$DEMO_ADMIN_PW" STORE_ADMIN
demo_user "$DEMO_CUSTOMER" "$DEMO_CUSTOMER_PW" CUSTOMER

# Something to buy (once): a product with one variant in stock, and a shipping zone
# for the US with a flat rate, so a cart and a checkout work out of the box.
demo_api() {
    curl -s -H "Authorization: Bearer $SHOPD_PLATFORM_TOKEN" -H 'X-Tenant-Id: demo' \
        -H 'Content-Type: application/json' "$@" || true
}
id_of() { sed -n 's/^{ *"id" *: *\([0-9][0-9]*\).*/\1/p'; }
DEMO_URL=http://$SHOPD_LISTEN/api/v1
if ! demo_api "$DEMO_URL/products/demo-tee" | grep -q '"id"'; then
    pid=$(demo_api -d '{"name":"Demo Tee","slug":"demo-tee","base_price":1999,"status":"active"}' \
        "$DEMO_URL/products" | id_of)
    [[ -n $pid ]] && demo_api -d '{"sku":"DEMO-TEE-M","options":{"size":"M"},"stock":100}' \
        "$DEMO_URL/products/$pid/variants" >/dev/null
    zid=$(demo_api -d '{"name":"United States","countries":["US"]}' \
        "$DEMO_URL/admin/shipping-zones" | id_of)
    [[ -n $zid ]] && demo_api -d '{"name":"Standard","kind":"flat","price":500}' \
        "$DEMO_URL/admin/shipping-zones/$zid/rates" >/dev/null
fi
# A real-looking shop for /admin and the API (scripts/seed-demo.mjs: 50 products in 7
# categories with variants and stock, about two dozen orders over the last three
# weeks); each part only once, so a re-run adds nothing. A failure is reported and
# shopd keeps running.
node "$ROOT/scripts/seed-demo.mjs" --url "http://$SHOPD_LISTEN" --store demo \
    --platform-token "$SHOPD_PLATFORM_TOKEN" --database-url "$SHOPD_DATABASE_URL" ||
    echo "run.sh: the demo seed failed (see above); shopd runs without it" >&2
DEMO_VARIANT=$(demo_api "$DEMO_URL/products/demo-tee" | sed -n 's/.*"variants" *: *\[ *{ *"id" *: *\([0-9][0-9]*\).*/\1/p')
DEMO_RATE=$(demo_api "$DEMO_URL/checkout/shipping-rates?country=US" | sed -n 's/.*"rates" *: *\[ *{ *"id" *: *\([0-9][0-9]*\).*/\1/p')

cat <<EOF

shopd is running on http://$SHOPD_LISTEN  (Ctrl-C stops it and the private services)

  admin dashboard http://$SHOPD_LISTEN/admin/   (store demo, $DEMO_ADMIN / $DEMO_ADMIN_PW)
  API docs        http://$SHOPD_LISTEN/docs/    (Swagger UI; the document: /openapi.yaml)

  demo accounts:
    super admin     $DEMO_SUPER / $DEMO_SUPER_PW   (POST /api/v1/platform/auth/login)
    store admin     $DEMO_ADMIN / $DEMO_ADMIN_PW   (store demo: POST /api/v1/auth/login)
    customer        $DEMO_CUSTOMER / $DEMO_CUSTOMER_PW

  curl -H 'X-Tenant-Id: demo' -H 'Content-Type: application/json' \\
       -d '{"email":"$DEMO_CUSTOMER","password":"$DEMO_CUSTOMER_PW"}' http://$SHOPD_LISTEN/api/v1/auth/login

  curl http://$SHOPD_LISTEN/healthz
  curl -H 'X-Tenant-Id: demo' http://$SHOPD_LISTEN/api/v1/store

  a guest cart, then a checkout (the test payment provider; the first answer's X-Cart-Id names the cart):
  curl -si -H 'X-Tenant-Id: demo' -H 'Content-Type: application/json' \\
       -d '{"variant_id":${DEMO_VARIANT:-1},"quantity":1}' http://$SHOPD_LISTEN/api/v1/cart/add
  curl -H 'X-Tenant-Id: demo' -H 'X-Cart-Id: <the id>' -H 'Content-Type: application/json' \\
       -d '{"email":"you@example.com","shipping_rate_id":${DEMO_RATE:-1},"shipping_address":{"name":"You","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}' \\
       http://$SHOPD_LISTEN/api/v1/checkout
  curl -H "Authorization: Bearer $SHOPD_PLATFORM_TOKEN" http://$SHOPD_LISTEN/api/v1/stores

  admin protocol on ${SHOPD_ADMIN_LISTEN:-(off)} (token in .shopd/admin_token):
  SHOPD_ADMIN_TOKEN=\$(cat .shopd/admin_token) build-release/shopctl stores

  PostgreSQL: $SHOPD_DATABASE_URL   Redis: $SHOPD_REDIS_URL

EOF

rc=0
wait "$SHOPD_PID" || rc=$?
# shopd ended by itself (error or crash): report its status after cleanup.
SHOPD_PID=""
exit $rc
