#!/usr/bin/env bash
# services.sh: a private PostgreSQL 15 and Redis for shopd, kept in one folder.
#
#   scripts/services.sh start  DIR [all|pg|redis]   start (or reuse) and write DIR/env
#   scripts/services.sh stop   DIR [all|pg|redis]   clean stop (pg_ctl -m fast, redis SHUTDOWN)
#   scripts/services.sh kill   DIR [all|pg|redis]   crash on purpose (SIGKILL / -m immediate)
#   scripts/services.sh status DIR                  exit 0 if both run
#   scripts/services.sh reset  DIR                  empty database shopd and Redis
#   scripts/services.sh destroy DIR                 stop, then delete DIR entirely
#
# Layout: DIR/pg/{data,sock,postgres.log,port}, DIR/redis/{redis.conf,redis.pid,
# redis.log,appendonlydir,port}, DIR/env (source it: SHOPD_DATABASE_URL,
# SHOPD_REDIS_URL). Both listen on 127.0.0.1 only, on free ports picked in
# 20000-40000 (PGPORT_WANTED / REDISPORT_WANTED to choose); a restarted DIR keeps
# its ports when they are still free, so the URLs stay the same.
#
# Durability: fsync stays on unless SHOPD_TEST_FAST=1 (tests), which turns off
# fsync, synchronous_commit and full_page_writes. Redis uses appendonly with
# appendfsync everysec.
#
# PostgreSQL refuses to run as root: as root, DIR/pg belongs to the `postgres`
# user (created if missing) and initdb/pg_ctl run through runuser. If that user
# cannot reach DIR (a parent directory without o+x), DIR/pg becomes a symlink
# to a folder under /var/tmp.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT_LO=20000
PORT_HI=40000

die() {
    echo "services.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -ge 2 ]] || usage
ACTION=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd -P)
WHAT=${3:-all}
case $WHAT in all | pg | redis) ;; *) usage ;; esac

PG=$DIR/pg
REDIS=$DIR/redis
# The postgres user may reach DIR/pg only through its real path (see below).
[[ -L $PG && -d $PG ]] && PG=$(readlink -f "$PG")
IS_ROOT=0
[[ $(id -u) -eq 0 ]] && IS_ROOT=1

# ---- helpers -------------------------------------------------------------

# Runs a PostgreSQL server binary as the user allowed to run it.
as_pg() {
    if [[ $IS_ROOT -eq 1 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_free() {
    local p=$1
    if [[ -x /usr/bin/python3 ]]; then
        # A bind probe also sees ports bound but not yet listening.
        /usr/bin/python3 - "$p" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# Like the servers themselves: TIME_WAIT leftovers of a previous run do not
# make a port busy, a listener does.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
    else
        ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
    fi
}

# pick_port WANTED FILE: WANTED if given, else the port of the last run (FILE)
# if still free, else a random free one.
pick_port() {
    local wanted=$1 file=$2 p
    if [[ -n $wanted ]]; then
        port_free "$wanted" || die "port $wanted is in use"
        echo "$wanted"
        return
    fi
    if [[ -s $file ]]; then
        p=$(<"$file")
        if port_free "$p"; then
            echo "$p"
            return
        fi
    fi
    for _ in $(seq 1 200); do
        p=$((PORT_LO + RANDOM % (PORT_HI - PORT_LO)))
        if port_free "$p"; then
            echo "$p"
            return
        fi
    done
    die "no free port found in $PORT_LO-$PORT_HI"
}

pg_running() {
    [[ -f $PG/data/PG_VERSION ]] || return 1
    as_pg "$PGBIN/pg_ctl" -D "$PG/data" status >/dev/null 2>&1
}

redis_pid() {
    [[ -s $REDIS/redis.pid ]] || return 1
    local pid
    pid=$(<"$REDIS/redis.pid")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

redis_running() {
    redis_pid >/dev/null || return 1
    [[ -s $REDIS/port ]] || return 1
    [[ $(redis-cli -h 127.0.0.1 -p "$(<"$REDIS/port")" ping 2>/dev/null) == PONG ]]
}

# ---- PostgreSQL ------------------------------------------------------------

# Makes sure the postgres user can reach and own DIR/pg. Returns with DIR/pg
# existing (maybe as a symlink into /var/tmp).
pg_prepare_dir() {
    [[ $IS_ROOT -eq 1 ]] || {
        mkdir -p "$PG"
        return
    }
    if ! getent passwd postgres >/dev/null; then
        useradd -r -M -d /var/lib/postgresql -s /usr/sbin/nologin postgres
    fi
    if [[ -L $PG && ! -d $PG ]]; then
        echo "services.sh: $PG pointed to a folder that is gone; starting a new cluster" >&2
        rm -f "$PG"
    fi
    if [[ ! -e $PG ]]; then
        # DIR is ours: granting traversal (not listing) is enough for postgres.
        runuser -u postgres -- test -x "$DIR" || chmod o+x "$DIR" 2>/dev/null || true
        if runuser -u postgres -- test -x "$DIR"; then
            mkdir -p "$PG"
        else
            local real
            real=$(mktemp -d /var/tmp/shopd-pg.XXXXXX)
            chmod 755 "$real"
            ln -s "$real" "$PG"
            echo "services.sh: postgres cannot reach $DIR; PostgreSQL data lives in $real" >&2
        fi
    fi
    PG=$(readlink -f "$PG")
    chown -R postgres: "$PG"
}

pg_start() {
    if pg_running; then
        return
    fi
    pg_prepare_dir
    local port
    port=$(pick_port "${PGPORT_WANTED:-}" "$PG/port")
    if [[ ! -f $PG/data/PG_VERSION ]]; then
        rm -rf "$PG/data"
        as_pg mkdir -p "$PG/data" "$PG/sock"
        as_pg "$PGBIN/initdb" -D "$PG/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
            >"$PG/initdb.log" 2>&1 || {
            cat "$PG/initdb.log" >&2
            die "initdb failed"
        }
        echo "include_if_exists = 'shopd.conf'" | as_pg tee -a "$PG/data/postgresql.conf" >/dev/null
    fi
    as_pg mkdir -p "$PG/sock"
    local fsync=on sync=on fpw=on
    if [[ ${SHOPD_TEST_FAST:-0} == 1 ]]; then
        fsync=off sync=off fpw=off
    fi
    # Rewritten on every start so the port and the test knobs follow this run.
    as_pg tee "$PG/data/shopd.conf" >/dev/null <<EOF
# written by scripts/services.sh on every start
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG/sock'
max_connections = 200
fsync = $fsync
synchronous_commit = $sync
full_page_writes = $fpw
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    echo "$port" | as_pg tee "$PG/port" >/dev/null
    if ! as_pg "$PGBIN/pg_ctl" -D "$PG/data" -l "$PG/postgres.log" -w -t 60 start >/dev/null; then
        tail -n 20 "$PG/postgres.log" >&2 || true
        die "PostgreSQL did not start (log: $PG/postgres.log)"
    fi
    local psql=(env PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1
        -h 127.0.0.1 -p "$port" -U postgres)
    "${psql[@]}" -d postgres >/dev/null <<'EOF'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd') THEN
    CREATE ROLE shopd SUPERUSER LOGIN;
  END IF;
END $$;
SELECT 'CREATE DATABASE shopd OWNER shopd'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'shopd') \gexec
EOF
    "${psql[@]}" -d shopd >/dev/null <<'EOF'
SELECT 'CREATE EXTENSION IF NOT EXISTS pg_trgm'
 WHERE EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_trgm') \gexec
EOF
}

pg_stop() {
    if pg_running; then
        as_pg "$PGBIN/pg_ctl" -D "$PG/data" -m fast -w -t 60 stop >/dev/null
    fi
}

pg_kill() {
    if pg_running; then
        as_pg "$PGBIN/pg_ctl" -D "$PG/data" -m immediate -w stop >/dev/null
    fi
}

# ---- Redis -------------------------------------------------------------------

redis_start() {
    if redis_running; then
        return
    fi
    mkdir -p "$REDIS"
    local port
    port=$(pick_port "${REDISPORT_WANTED:-}" "$REDIS/port")
    cat >"$REDIS/redis.conf" <<EOF
# written by scripts/services.sh on every start
bind 127.0.0.1
port $port
protected-mode yes
daemonize yes
pidfile $REDIS/redis.pid
logfile $REDIS/redis.log
dir $REDIS
appendonly yes
appendfsync everysec
save ""
EOF
    echo "$port" >"$REDIS/port"
    rm -f "$REDIS/redis.pid"
    redis-server "$REDIS/redis.conf" || die "redis-server did not start (log: $REDIS/redis.log)"
    for _ in $(seq 1 100); do
        redis_running && return
        sleep 0.1
    done
    tail -n 20 "$REDIS/redis.log" >&2 || true
    die "redis-server did not answer PING (log: $REDIS/redis.log)"
}

redis_wait_gone() {
    local pid=$1
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

redis_stop() {
    local pid
    pid=$(redis_pid) || return 0
    redis-cli -h 127.0.0.1 -p "$(<"$REDIS/port")" shutdown nosave >/dev/null 2>&1 || true
    if ! redis_wait_gone "$pid"; then
        kill "$pid" 2>/dev/null || true
        redis_wait_gone "$pid" || kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$REDIS/redis.pid"
}

redis_kill() {
    local pid
    pid=$(redis_pid) || return 0
    kill -9 "$pid" 2>/dev/null || true
    redis_wait_gone "$pid" || true
    rm -f "$REDIS/redis.pid"
}

write_env() {
    cat >"$DIR/env.tmp" <<EOF
# written by scripts/services.sh; source it
export SHOPD_DATABASE_URL=postgresql://shopd@127.0.0.1:$(<"$PG/port")/shopd
export SHOPD_REDIS_URL=redis://127.0.0.1:$(<"$REDIS/port")/0
EOF
    mv "$DIR/env.tmp" "$DIR/env"
}

# ---- main ----------------------------------------------------------------------

case $ACTION in
start)
    [[ $WHAT == redis ]] || pg_start
    [[ $WHAT == pg ]] || redis_start
    if [[ -s $PG/port && -s $REDIS/port ]]; then
        write_env
    fi
    echo "services.sh: running in $DIR (source $DIR/env)"
    ;;
stop)
    [[ $WHAT == pg ]] || redis_stop
    [[ $WHAT == redis ]] || pg_stop
    ;;
kill)
    [[ $WHAT == pg ]] || redis_kill
    [[ $WHAT == redis ]] || pg_kill
    ;;
reset)
    # A clean slate between test suites that share one DIR.
    pg_running || die "PostgreSQL is not running in $DIR"
    redis_running || die "Redis is not running in $DIR"
    port=$(<"$PG/port")
    env PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$port" -U postgres -d postgres >/dev/null <<'EOF'
DROP DATABASE IF EXISTS shopd WITH (FORCE);
CREATE DATABASE shopd OWNER shopd;
EOF
    env PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$port" -U postgres -d shopd >/dev/null <<'EOF'
SELECT 'CREATE EXTENSION IF NOT EXISTS pg_trgm'
 WHERE EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_trgm') \gexec
EOF
    redis-cli -h 127.0.0.1 -p "$(<"$REDIS/port")" flushall >/dev/null
    ;;
destroy)
    redis_stop
    pg_stop
    if [[ $PG == /var/tmp/shopd-pg.* ]]; then
        rm -rf "$PG"
    fi
    rm -rf "$DIR"
    ;;
status)
    rc=0
    if pg_running; then echo "postgresql: running on port $(<"$PG/port")"; else
        echo "postgresql: stopped"
        rc=1
    fi
    if redis_running; then echo "redis: running on port $(<"$REDIS/port")"; else
        echo "redis: stopped"
        rc=1
    fi
    exit $rc
    ;;
*)
    usage
    ;;
esac
