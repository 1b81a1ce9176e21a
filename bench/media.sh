#!/usr/bin/env bash
# media.sh: issue 16's media figures on a private PostgreSQL and Redis
# (scripts/services.sh) and a Release shopd with the local storage:
#
#   1. uploads per second of a ~2 MB JPEG (2000 x 1500), N uploads from C
#      client threads (bench/media_bench.c), CONC at once; p50/p99 latency;
#   2. renditions per second per core: the N images' media jobs (3 widths x
#      WebP and JPEG each) from the first job taken to the last finished, over
#      the blocking threads that ran them;
#   3. peak RSS while resizing 20 images at once: 20 images uploaded to a
#      shopd that only relays (SHOPD_JOBS_CONSUME=false), then a fresh shopd
#      with 40 blocking threads (20 lanes for one store) and 20 jobs in flight
#      takes them all; its VmHWM before and after.
#
#   bench/media.sh                   # about 2 minutes on 2 cores
#   N=20 CONC=2 bench/media.sh       # a quick look
#
# Writes bench/results/<date>-<commit>-media.md; stops what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-release}
N=${N:-40}
CONC=${CONC:-4}

BENCH_NAME="bench/media"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, wait_http, bench_init
for t in psql curl jq; do command -v "$t" >/dev/null || die "$t is not installed"; done

bench_init shopd-media
chmod 755 "$WORK"

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shopd media_bench >&2
SHOPD=$BUILD/shopd
COMMIT=$(git rev-parse --short HEAD)
[[ -z $(git status --porcelain --untracked-files=no) ]] || COMMIT=$COMMIT-dirty

"$ROOT/scripts/services.sh" start "$SVC" >/dev/null
# shellcheck disable=SC1091
source "$SVC/env"
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
SPORT=$(free_port)
SURL=http://127.0.0.1:$SPORT
SHOPD_SQL_DIR=$ROOT/sql "$SHOPD" migrate >"$WORK/migrate.log" 2>&1 || die "migration failed"

# start_shopd ENV...: a shopd with these extra settings; its pid is PIDS[-1].
start_shopd() {
    env "$@" SHOPD_SQL_DIR="$ROOT/sql" SHOPD_LISTEN=127.0.0.1:$SPORT SHOPD_ADMIN_LISTEN= \
        SHOPD_RATE_LIMIT=false SHOPD_PLATFORM_TOKEN="$TOKEN" SHOPD_ACCESS_LOG=0 SHOPD_JWT_KEYS="bench:$TOKEN$TOKEN" \
        SHOPD_MEDIA_DIR="$WORK/media" SHOPD_JOBS_POLL_MS=50 "$SHOPD" serve >>"$WORK/shopd.log" 2>&1 &
    PIDS+=($!)
    wait_http "$SURL/healthz"
}
stop_shopd() {
    local p=${PIDS[-1]}
    kill -TERM "$p" && wait "$p" || true
    unset 'PIDS[-1]'
}
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
sql() { psql "$SHOPD_DATABASE_URL" -Atqc "$1"; }

start_shopd
STORE=$(curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"slug":"media-bench","name":"Media","currency":"EUR","admin":{"email":"a@media.test","password":"media-bench-pass-1","name":"A"}}' \
    "$SURL/api/v1/stores" | jq -r .id)
ACCESS=$(curl -fsS -H "X-Tenant-Id: $STORE" -H 'Content-Type: application/json' \
    -d '{"email":"a@media.test","password":"media-bench-pass-1"}' "$SURL/api/v1/auth/login" |
    jq -r .access_token)
product() {
    curl -fsS -H "X-Tenant-Id: $STORE" -H "Authorization: Bearer $ACCESS" -H 'Content-Type: application/json' \
        -d "{\"name\":\"Photo $1\",\"base_price\":100}" "$SURL/api/v1/products" | jq -r .id
}

# 1 and 2: uploads, then the renditions they queued.
P1=$(product one)
log "uploading $N images, $CONC at once"
UP=$("$BUILD/bench/media_bench" "$SURL" "$STORE" "$ACCESS" "$P1" "$N" "$CONC" "$WORK/photo.jpg")
for _ in $(seq 1 1200); do
    [[ $(sql "SELECT count(*) FROM product_images WHERE product_id = $P1 AND state = 'processing'") == 0 ]] && break
    sleep 0.25
done
READY=$(sql "SELECT count(*) FROM product_images WHERE product_id = $P1 AND state = 'ready'")
RENDS=$(sql "SELECT count(*) FROM product_image_renditions r JOIN product_images i ON i.store_id = r.store_id AND i.id = r.image_id WHERE i.product_id = $P1")
SPAN=$(sql "SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM jobs WHERE kind = 'media' AND state = 'done'")
THREADS=$(nproc)
HWM1=$(hwm_kb "${PIDS[-1]}")
stop_shopd

# 3: 20 queued jobs, then one shopd resizing them all at once.
start_shopd SHOPD_JOBS_CONSUME=false
P2=$(product two)
"$BUILD/bench/media_bench" "$SURL" "$STORE" "$ACCESS" "$P2" 20 4 "$WORK/photo2.jpg" >/dev/null
sleep 1
stop_shopd
start_shopd SHOPD_BLOCKING_THREADS=40 SHOPD_JOBS_INFLIGHT=20
PID=${PIDS[-1]}
BEFORE=$(rss_kb "$PID")
T0=$(date +%s.%N)
PEAK=0
for _ in $(seq 1 2400); do
    r=$(rss_kb "$PID")
    ((r > PEAK)) && PEAK=$r
    [[ $(sql "SELECT count(*) FROM product_images WHERE product_id = $P2 AND state = 'processing'") == 0 ]] && break
    sleep 0.05
done
T1=$(date +%s.%N)
HWM2=$(hwm_kb "$PID")
READY2=$(sql "SELECT count(*) FROM product_images WHERE product_id = $P2 AND state = 'ready'")
stop_shopd

OUT=bench/results/$(date -u +%Y-%m-%d)-$COMMIT-media.md
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
{
    echo "# media figures ($COMMIT, $(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "Machine: $CPU, $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); a Release shopd, local storage, PostgreSQL and Redis of scripts/services.sh on the same machine (shared with other work: read the numbers as an order of magnitude)."
    echo
    echo "## Uploads of a $(jq -r .jpeg_bytes <<<"$UP")-byte JPEG (2000 x 1500)"
    echo
    echo '```json'
    echo "$UP"
    echo '```'
    echo
    echo "Each upload decodes the JPEG, applies its orientation, strips its metadata, re-encodes it, hashes it and writes it (fsync + rename) on the blocking pool, then commits the row and its outbox row."
    echo
    echo "## Renditions"
    echo
    echo "$READY of $N images ready, $RENDS renditions (SHOPD_MEDIA_SIZES 160,480,1024 x WebP and JPEG) made in ${SPAN}s from the first job taken to the last finished: $(awk -v r="$RENDS" -v s="$SPAN" -v c="$THREADS" 'BEGIN {printf "%.1f renditions/s, %.1f per core (%d cores)", r/s, r/s/c, c}'). The shopd's peak RSS over phases 1 and 2: $((HWM1 / 1024)) MiB."
    echo
    echo "## Resizing 20 images at once"
    echo
    echo "20 queued media jobs taken by a fresh shopd with 40 blocking threads (20 lanes for the store) and SHOPD_JOBS_INFLIGHT=20: $READY2 ready in $(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.1f", b-a}') s. RSS before: $((BEFORE / 1024)) MiB; sampled peak: $((PEAK / 1024)) MiB; VmHWM: $((HWM2 / 1024)) MiB. That is $(((HWM2 - BEFORE) / 20 / 1024)) MiB a concurrent job, against 8.6 MiB for one decoded 2000 x 1500 RGB image: libvips runs with its operation cache off, one thread per pipeline and shrink-on-load (vips_thumbnail)."
    echo
    echo "Uploads of one store run on its blocking lanes, half of SHOPD_BLOCKING_THREADS (default: the cores), so here one at a time: the upload rate is one core's decode + re-encode + fsync of a 2 MB JPEG."
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
