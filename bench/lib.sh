# bench/lib.sh: helpers the bench scripts share. Source it after defining
# die (each script prefixes its messages with its own name):
#
#   source "$ROOT/bench/lib.sh"
#
# free_port    prints a TCP port in 40000-59999 nobody listens on
# wait_http U  waits up to 20 s for U to answer 2xx, else dies

free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((40000 + RANDOM % 20000))
        if ! ss -Htan "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return
        fi
    done
    die "no free port"
}

wait_http() {
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    die "$1 did not answer"
}
