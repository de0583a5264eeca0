#!/usr/bin/env bash
# Fleet benchmark: beacons per second into PostgreSQL through two smproxy instances, beside
# one instance on SQLite, in one run.
#
#   bash benches/pg_fleet.sh                        # REPEATS=3 DURATION=10
#   DURATION=3 REPEATS=1 bash benches/pg_fleet.sh   # smoke run
#
# Needs Debian's postgresql (initdb, pg_ctl; run as root, the server runs as the postgres
# user) and wrk, python3, taskset, curl, and a Rust toolchain (SMPROXY_BIN=path skips the
# build). It starts its own PostgreSQL on a free loopback port in a temp dir and removes it.
#
# Setups, each measured REPEATS times, alternating so that background load hits both alike:
#   sqlite    one smproxy, store.sqlite
#   pg-fleet  two smproxy instances, one PostgreSQL database; one wrk per instance, at once
# The load is the tracker's first-visit page-view beacon (benches/load/wrk.lua, WRK_BEACON=1):
# no cookie, so every beacon is a new visitor. smproxy runs on CPU 1 (both instances share
# it), wrk and PostgreSQL on CPU 0.
#
# Per run: acknowledged beacons per second (wrk), events committed per second while the load
# ran (smproxy_events_written_total from /metrics), events dropped because the queue was full,
# and the p99 latency. Medians go to benches/results/pg-fleet.md.
set -euo pipefail

DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
CONNS=${CONNS:-64}        # wrk connections per instance
SUT_CPU=1
GEN_CPU=0

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
command_line="bash benches/pg_fleet.sh"
for v in SMPROXY_BIN CARGO_TARGET_DIR CONNS DURATION REPEATS; do
    if [ -n "${!v+x}" ]; then command_line="$v=${!v} $command_line"; fi
done

log() { printf '[pg-fleet] %s\n' "$*" >&2; }
die() { printf '[pg-fleet] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in wrk python3 taskset curl runuser; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y wrk postgresql)"
done
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$pg_bin/pg_ctl" ] || die "no PostgreSQL binaries in /usr/lib/postgresql/*/bin"
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL runs as the postgres user)"
ulimit -n 65536 2>/dev/null || true
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

if [ -n "${SMPROXY_BIN:-}" ]; then
    built=$SMPROXY_BIN
else
    log "cargo build --release"
    (cd "$repo" && cargo build --release --bin smproxy) >&2
    target_dir=${CARGO_TARGET_DIR:-target}
    case $target_dir in /*) ;; *) target_dir=$repo/$target_dir ;; esac
    built=$target_dir/release/smproxy
fi
[ -x "$built" ] || die "no smproxy binary at $built"

tmp=$(mktemp -d /tmp/smproxy-pgfleet.XXXXXX)
chmod 755 "$tmp"
cp "$built" "$tmp/smproxy"

declare -A PID=()
pg_dir=$tmp/pg
as_postgres() { runuser -u postgres -- "$@"; }

stop_smproxy() {
    local name=$1 pid=${PID[$1]:-}
    [ -n "$pid" ] || return 0
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PID[$name]"
}

cleanup() {
    local rc=$?
    for name in "${!PID[@]}"; do stop_smproxy "$name"; done
    as_postgres "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
    if [ "$rc" -ne 0 ]; then
        rm -rf "$pg_dir"
        log "failed; logs kept in $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# PostgreSQL: Debian's defaults, except durability as a production server has it (fsync on).
pg_port=$(free_port)
mkdir -p "$pg_dir"
chown postgres:postgres "$pg_dir"
as_postgres "$pg_bin/initdb" -D "$pg_dir/data" -U smproxy --auth=trust -E UTF8 >/dev/null
as_postgres taskset -c "$GEN_CPU" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir" start >/dev/null
pg_url="postgres://smproxy@127.0.0.1:$pg_port/postgres"
psql_c() { "$pg_bin/psql" -X -q -At -d "$pg_url" -c "$1"; }
log "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port (CPU $GEN_CPU)"

declare -A PORT=() ADMIN=()

# start_smproxy NAME STORE_YAML
start_smproxy() {
    local name=$1 store=$2 prefix=$tmp/$1
    PORT[$name]=$(free_port)
    ADMIN[$name]=$(free_port)
    mkdir -p "$prefix"
    cat >"$prefix/smproxy.yaml" <<EOF
listen: "127.0.0.1:${PORT[$name]}"
client_id: "benchclient"
threads: 1
grace_period_seconds: 0
sites:
  - name: bench
    hosts: ["*"]
    upstream: "127.0.0.1:9"
collect:
  rate_per_minute: 0
cookies:
  secret: "bench-secret-bench-secret-bench-secret-01"
admin:
  listen: "127.0.0.1:${ADMIN[$name]}"
  token: "bench-admin-token-0123456789"
$store
EOF
    (cd "$prefix" && exec taskset -c "$SUT_CPU" "$tmp/smproxy" -c smproxy.yaml) >"$prefix/stderr.log" 2>&1 &
    PID[$name]=$!
    for _ in $(seq 100); do
        curl -sf -o /dev/null -H 'Authorization: Bearer bench-admin-token-0123456789' \
            "http://127.0.0.1:${ADMIN[$name]}/readyz" && return 0
        kill -0 "${PID[$name]}" 2>/dev/null || { cat "$prefix/stderr.log" >&2; die "$name exited"; }
        sleep 0.1
    done
    cat "$prefix/stderr.log" >&2
    die "$name never became ready"
}

# metric NAME COUNTER: one counter of the instance's /metrics.
metric() {
    curl -sf -H 'Authorization: Bearer bench-admin-token-0123456789' \
        "http://127.0.0.1:${ADMIN[$1]}/metrics" | awk -v k="smproxy_$2" '$1 == k {print $2}'
}

# wait_drained NAME: until everything accepted is written (or abandoned).
wait_drained() {
    for _ in $(seq 600); do
        local e w a
        e=$(metric "$1" events_enqueued_total)
        w=$(metric "$1" events_written_total)
        a=$(metric "$1" events_abandoned_total)
        [ "$e" -le $((w + a)) ] && return 0
        sleep 0.1
    done
    die "$1: the writer did not drain its queue"
}

printf 'repeat\tsetup\tinstances\tacked\twritten\tdropped\tabandoned\tduration_us\tp99_us\terrors\n' >"$tmp/runs.tsv"

# run_setup SETUP REPEAT NAME...: wrk on every instance at once, then the counters.
run_setup() {
    local setup=$1 rep=$2
    shift 2
    local names=("$@") name
    declare -A w0=() d0=()
    # Warm-up, then let the writers catch up so that the measured window starts drained.
    # (`wait` on the wrk processes only: the smproxy instances are children too.)
    local wrks=()
    for name in "${names[@]}"; do
        WRK_BEACON=1 taskset -c "$GEN_CPU" wrk -t 1 -c "$CONNS" -d 1s -s "$here/load/wrk.lua" \
            "http://127.0.0.1:${PORT[$name]}/_sm/collect" >/dev/null &
        wrks+=($!)
    done
    wait "${wrks[@]}"
    for name in "${names[@]}"; do
        wait_drained "$name"
        w0[$name]=$(metric "$name" events_written_total)
        d0[$name]=$(metric "$name" events_dropped_total)
    done
    wrks=()
    for name in "${names[@]}"; do
        WRK_BEACON=1 taskset -c "$GEN_CPU" wrk -t 1 -c "$CONNS" -d "${DURATION}s" --timeout 10s \
            --latency -s "$here/load/wrk.lua" "http://127.0.0.1:${PORT[$name]}/_sm/collect" \
            >"$tmp/wrk-$setup-$rep-$name.txt" &
        wrks+=($!)
    done
    wait "${wrks[@]}"
    local acked=0 written=0 dropped=0 abandoned=0 dur=0 p99=0 errors=0
    for name in "${names[@]}"; do
        # Written while the load ran: the store's pace, not the queue's.
        written=$((written + $(metric "$name" events_written_total) - ${w0[$name]}))
        dropped=$((dropped + $(metric "$name" events_dropped_total) - ${d0[$name]}))
        local line requests duration_us bytes connect read write status timeout p50_us p99_us
        line=$(grep '^WRK ' "$tmp/wrk-$setup-$rep-$name.txt") || die "no wrk summary for $name"
        eval "$(sed 's/^WRK //' <<<"$line")"
        acked=$((acked + requests))
        errors=$((errors + connect + read + write + status + timeout))
        [ "$duration_us" -gt "$dur" ] && dur=$duration_us
        [ "$p99_us" -gt "$p99" ] && p99=$p99_us
    done
    for name in "${names[@]}"; do
        wait_drained "$name"
        abandoned=$((abandoned + $(metric "$name" events_abandoned_total)))
    done
    [ "$errors" -eq 0 ] || die "$setup: $errors wrk errors or non-2xx answers"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$setup" "${#names[@]}" "$acked" \
        "$written" "$dropped" "$abandoned" "$dur" "$p99" "$errors" >>"$tmp/runs.tsv"
    log "$(printf '%-8s repeat %s: %8.0f beacons/s acknowledged, %8.0f events/s written, %s dropped, p99 %.1f ms' \
        "$setup" "$rep" "$(awk -v n="$acked" -v d="$dur" 'BEGIN{print n*1e6/d}')" \
        "$(awk -v n="$written" -v d="$dur" 'BEGIN{print n*1e6/d}')" "$dropped" \
        "$(awk -v x="$p99" 'BEGIN{print x/1000}')")"
}

for rep in $(seq "$REPEATS"); do
    log "repeat $rep/$REPEATS (load average $(cut -d' ' -f1-3 /proc/loadavg))"

    rm -f "$tmp/sqlite.db"*
    start_smproxy sqlite "store:
  sqlite: \"$tmp/sqlite.db\""
    run_setup sqlite "$rep" sqlite
    stop_smproxy sqlite

    # A fresh database per repeat, so every repeat writes into the same amount of data.
    psql_c "DROP DATABASE IF EXISTS fleet WITH (FORCE)"
    psql_c "CREATE DATABASE fleet"
    fleet_url="postgres://smproxy@127.0.0.1:$pg_port/fleet"
    start_smproxy pg-a "store:
  postgres: \"$fleet_url\""
    start_smproxy pg-b "store:
  postgres: \"$fleet_url\""
    run_setup pg-fleet "$rep" pg-a pg-b
    stored=$("$pg_bin/psql" -X -q -At -d "$fleet_url" -c "SELECT count(*) FROM events")
    stop_smproxy pg-a
    stop_smproxy pg-b
    log "pg-fleet repeat $rep: $stored rows in the database"
done
load_at_end=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$here/results"
{
    echo "# Fleet benchmark: beacons into PostgreSQL through two instances, beside SQLite"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- command: \`$command_line\`"
    echo "- machine: nproc $(nproc), $(lscpu | sed -n 's/^Model name: *//p' | head -n1); shared with other builds, so noisy: compare the ratio"
    echo "- load average at start: $load_at_start; at end: $load_at_end"
    echo "- smproxy $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo '?'), threads: 1 per instance, on CPU $SUT_CPU (both instances share it); wrk -t 1 -c $CONNS per instance and PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') (Debian defaults, fsync on) on CPU $GEN_CPU"
    echo "- load: the tracker's first-visit page-view beacon (benches/load/wrk.lua, WRK_BEACON=1), ${DURATION}s per run after a 1 s warm-up"
    echo
    python3 - "$tmp/runs.tsv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def med(setup, f):
    return statistics.median([f(r) for r in rows if r["setup"] == setup])
per_s = lambda k: (lambda r: int(r[k]) * 1e6 / int(r["duration_us"]))
n = len({r["repeat"] for r in rows})
print(f"Medians of {n} run(s).")
print()
print("| setup | beacons/s acknowledged | events/s written | dropped (queue full) per run | abandoned | p99 ms |")
print("|---|---:|---:|---:|---:|---:|")
names = {"sqlite": "one instance, SQLite", "pg-fleet": "two instances, one PostgreSQL"}
for s in ("sqlite", "pg-fleet"):
    print(f"| {names[s]} | {med(s, per_s('acked')):,.0f} | {med(s, per_s('written')):,.0f} | "
          f"{med(s, lambda r: int(r['dropped'])):,.0f} | {med(s, lambda r: int(r['abandoned'])):,.0f} | "
          f"{med(s, lambda r: int(r['p99_us']) / 1000):.1f} |")
print()
a = med("pg-fleet", per_s("acked")) / med("sqlite", per_s("acked"))
w = med("pg-fleet", per_s("written")) / med("sqlite", per_s("written"))
print(f"Ratios (two instances on PostgreSQL ÷ one on SQLite): acknowledged {a:.2f}×, written {w:.2f}×.")
print()
print("Raw runs:")
print()
print("| repeat | setup | acknowledged | written | dropped | abandoned | seconds |")
print("|---|---|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['repeat']} | {r['setup']} | {int(r['acked']):,} | {int(r['written']):,} | "
          f"{int(r['dropped']):,} | {r['abandoned']} | {int(r['duration_us']) / 1e6:.1f} |")
EOF
} >"$here/results/pg-fleet.md"
cp "$tmp/runs.tsv" "$here/results/pg-fleet-runs.tsv"
cat "$here/results/pg-fleet.md"
log "written to benches/results/pg-fleet.md"
