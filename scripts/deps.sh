#!/usr/bin/env bash
# deps.sh: installs the Debian 12 packages shopd needs to build, test and run,
# and nothing else (plus the pinned npm tools of tools/node). Idempotent: only
# missing packages are installed, and `apt-get update` runs once and only when
# something is missing. Runs as root, or through sudo when available.
set -euo pipefail

PKGS=(
    build-essential cmake pkg-config
    libevent-dev libpq-dev libhiredis-dev libmsgpack-dev libjemalloc-dev
    libcurl4-openssl-dev libssl-dev libcmocka-dev libjansson-dev libargon2-dev
    libhttp-parser-dev
    # product images: decoding, EXIF orientation and stripping, renditions
    libvips-dev
    postgresql-15 redis-server redis-tools
    wrk curl ca-certificates openssl
    clang clang-format libclang-rt-14-dev valgrind
    # the browser CORS test (tests/browser/cors.mjs drives it with playwright-core)
    chromium
)
# pg_trgm ships inside postgresql-15 in bookworm; older layouts had it in a
# separate contrib package, which is added only if apt can install it.
OPTIONAL_CONTRIB=postgresql-contrib-15
TRGM_CONTROL=/usr/share/postgresql/15/extension/pg_trgm.control

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        SUDO=(missing-root)
    fi
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# True when apt knows a real (not purely virtual) candidate for the package.
has_candidate() {
    local cand
    cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [[ -n $cand && $cand != "(none)" ]]
}

missing=()
for p in "${PKGS[@]}"; do
    installed "$p" || missing+=("$p")
done
need_trgm=0
[[ -f $TRGM_CONTROL ]] || need_trgm=1

# The npm tools (OpenAPI lint, the contract check, client generation, playwright-core
# for the browser test: it drives Debian's chromium and downloads no browser) and the
# pages' vendored packages (swagger-ui-dist for /docs, uplot for /admin: shopd serves
# them straight from node_modules, SHOPD_VENDOR_DIR) go into
# tools/node/node_modules exactly as tools/node/package-lock.json pins them; npm
# runs only when that folder is missing or was installed from another lock file.
install_npm_tools() {
    local dir stamp want
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tools/node"
    stamp=$dir/node_modules/.shopd-lock-sha256
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [[ -s $stamp && $(<"$stamp") == "$want" ]]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "deps.sh: npm is missing (node 20 + npm are needed for tools/node)" >&2
        return 1
    fi
    echo "deps.sh: installing npm tools into $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    echo "$want" >"$stamp"
}
install_npm_tools

if [[ ${#missing[@]} -eq 0 && $need_trgm -eq 0 ]]; then
    echo "deps.sh: all packages present"
    exit 0
fi

if [[ ${SUDO[0]:-} == missing-root ]]; then
    echo "deps.sh: missing packages (${missing[*]}); run as root or install sudo" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "deps.sh: installing ${missing[*]:-(contrib)}"
"${SUDO[@]}" apt-get update -q
if [[ $need_trgm -eq 1 ]] && ! installed "$OPTIONAL_CONTRIB" && has_candidate "$OPTIONAL_CONTRIB"; then
    missing+=("$OPTIONAL_CONTRIB")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [[ ! -f $TRGM_CONTROL ]]; then
    echo "deps.sh: warning: pg_trgm is not available; trigram search will be disabled" >&2
fi
echo "deps.sh: done"
