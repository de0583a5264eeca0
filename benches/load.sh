#!/usr/bin/env bash
# Load benchmark (design.md section 5): smproxy against nginx, same origin, pages and snippet,
# in one run, on a 2-core machine.
#
#   bash benches/load.sh                          # REPEATS=3 DURATION=10
#   DURATION=2 REPEATS=1 bash benches/load.sh     # smoke run
#
# Needs Debian's nginx and wrk (`apt-get install -y nginx-light wrk`), python3, taskset, curl,
# and a Rust toolchain (smproxy is built with `cargo build --release`; SMPROXY_BIN=path skips
# the build and measures that binary).
#
# Servers under test, each its own process with its own temp prefix, all on 127.0.0.1:
#   direct           nginx serving the corpus from a temp dir (the origin's config, own process)
#   nginx-proxy      nginx proxy_pass to the origin
#   nginx-subfilter  nginx proxy_pass + sub_filter '</head>' '<snippet></head>'
#   smproxy-pass     smproxy, `inject: enabled: false`
#   smproxy-inject   smproxy, injecting
# Workloads: the median-size corpus page; a round-robin rotation over all pages; 1,000
# concurrent connections (wrk -c 1000 for throughput, plus 1,000 idle keep-alive connections
# held open by benches/load/hold.py for memory).
#
# CPU placement: the server under test runs on CPU 1 alone; wrk and the origin nginx share
# CPU 0. The "direct" row is a second nginx with the origin's config pinned to CPU 1, so that
# every row measures a server on the same otherwise idle core.
#
# Beacons: POSTs of the tracker's page-view beacon to smproxy's collect endpoint (SQLite store
# on, `collect.rate_per_minute: 0`) beside nginx `return 204` with a `Set-Cookie` (in the
# sub_filter server's config). Every beacon must be answered 2xx, and afterwards the store
# must hold exactly one event per accepted beacon.
#
# Floor: the cheapest answer each server gives without an origin or a store, as the bound on
# what any endpoint of it can reach: smproxy's `304 Not Modified` for the tracker
# (`If-None-Match` with its ETag), nginx's `return 204` (the beacon counterpart, as a GET).
#
#   WORKLOADS="beacon" bash benches/load.sh       # only some workloads (default: all of
#                                                 # median rotation c1000 hold beacon floor)
#   SMPROXY_BIN_BASE=path bash benches/load.sh    # also measure that binary as smproxy-base,
#                                                 # in the same run (A/B of a change)
#   BASE_INJECT=false ...                         # smproxy-base with injection off (A/B of the
#                                                 # passthrough path, against smproxy-pass)
set -euo pipefail

DURATION=${DURATION:-10}   # seconds per measured wrk run
REPEATS=${REPEATS:-3}      # runs per (server, workload); the table shows medians
CONNS=${CONNS:-64}         # wrk connections for the throughput workloads
MEM_CONNS=${MEM_CONNS:-1000}
ALL_WORKLOADS="median rotation c1000 hold beacon floor"
WORKLOADS=${WORKLOADS:-$ALL_WORKLOADS}
WARMUP=${WARMUP:-1}        # seconds of unmeasured load before each measured run
CLIENT_ID=benchclient
ADMIN_TOKEN=load-benchmark-admin-token
SUT_CPU=1                  # server under test
GEN_CPU=0                  # wrk, the origin nginx, the python helpers

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
corpus=${SMPROXY_CORPUS:-$repo/../shared/corpus/pages}
helpers=$here/load
results_dir=$here/results
# The command as typed, with the settings that were given in the environment.
command_line="bash benches/load.sh"
for v in SMPROXY_BIN SMPROXY_BIN_BASE BASE_INJECT WORKLOADS CARGO_TARGET_DIR SMPROXY_CORPUS WARMUP MEM_CONNS CONNS DURATION REPEATS; do
    if [ -n "${!v+x}" ]; then command_line="$v=${!v} $command_line"; fi
done

log() { printf '[load] %s\n' "$*" >&2; }
die() { printf '[load] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------------
for tool in nginx wrk python3 taskset curl cargo getconf; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y nginx-light wrk)"
done
for w in $WORKLOADS; do
    case " $ALL_WORKLOADS " in *" $w "*) ;; *) die "unknown workload $w (known: $ALL_WORKLOADS)" ;; esac
done
# wants WORKLOAD: whether it was selected.
wants() { case " $WORKLOADS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
pages_wanted() { wants median || wants rotation || wants c1000 || wants hold; }
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (server under test on CPU 1, load on CPU 0)"
[ -d "$corpus" ] || die "corpus not found at $corpus (set SMPROXY_CORPUS)"
# wrk -c 1000, 1,000 held connections, and a proxy's upstream connections need descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 4096 ] || die "open-file limit $(ulimit -n) is too low for $MEM_CONNS connections"
CLK_TCK=$(getconf CLK_TCK)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $load_at_start"

# ---------------------------------------------------------------------------------------------
# Build smproxy, and copy the binary so a rebuild during the run cannot swap it.
# ---------------------------------------------------------------------------------------------
# SMPROXY_BIN=path skips the build and measures that binary instead.
if [ -n "${SMPROXY_BIN:-}" ]; then
    built=$SMPROXY_BIN
    log "using SMPROXY_BIN=$built (not built by this run)"
else
    log "cargo build --release"
    (cd "$repo" && cargo build --release --bin smproxy) >&2
    target_dir=${CARGO_TARGET_DIR:-target}
    case $target_dir in /*) ;; *) target_dir=$repo/$target_dir ;; esac
    built=$target_dir/release/smproxy
fi
[ -x "$built" ] || die "no smproxy binary at $built"

tmp=$(mktemp -d /tmp/smproxy-load.XXXXXX)
chmod 755 "$tmp"
cp "$built" "$tmp/smproxy"
smproxy_bin=$tmp/smproxy
if [ -n "${SMPROXY_BIN_BASE:-}" ]; then
    [ -x "$SMPROXY_BIN_BASE" ] || die "no smproxy binary at SMPROXY_BIN_BASE=$SMPROXY_BIN_BASE"
    cp "$SMPROXY_BIN_BASE" "$tmp/smproxy-base-bin"
fi

# ---------------------------------------------------------------------------------------------
# Server bookkeeping: every process we start is recorded here and stopped by the trap.
# ---------------------------------------------------------------------------------------------
declare -A PID=()       # name -> process we started (nginx master, smproxy)
declare -A WORK_PID=()  # name -> process doing the work (nginx worker, smproxy itself)
declare -A PORT=()
declare -A ADMIN_PORT=()

stop_server() {
    local name=$1 pid=${PID[$1]:-}
    [ -n "$pid" ] || return 0
    # nginx: SIGTERM is its fast shutdown. smproxy (Pingora): SIGINT is the fast shutdown,
    # SIGTERM would wait for the grace period.
    case $name in smproxy*) kill -INT "$pid" 2>/dev/null || true ;; *) kill -TERM "$pid" 2>/dev/null || true ;; esac
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PID[$name]" "WORK_PID[$name]"
}

cleanup() {
    local rc=$?
    for name in "${!PID[@]}"; do stop_server "$name"; done
    if [ "$rc" -ne 0 ]; then
        log "failed; logs kept in $tmp"
    elif [ -z "${KEEP_TMP:-}" ]; then
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until the server answers /probe.html; shows its log if it died or never answered.
wait_ready() {
    local name=$1 logfile=$2
    for _ in $(seq 100); do
        if ! kill -0 "${PID[$name]}" 2>/dev/null; then
            cat "$logfile" >&2 || true
            die "$name exited during start-up"
        fi
        curl -sf -o /dev/null "http://127.0.0.1:${PORT[$name]}/probe.html" && return 0
        sleep 0.1
    done
    cat "$logfile" >&2 || true
    die "$name did not answer on port ${PORT[$name]}"
}

# start_nginx NAME CPU ROLE   (ROLE: static | proxy | subfilter)
start_nginx() {
    local name=$1 cpu=$2 role=$3
    local prefix=$tmp/$name port
    port=$(free_port)
    PORT[$name]=$port
    mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/tmp"

    local location upstream="" user="" beacon_location=""
    # nginx started as root would run its worker as nobody, who cannot read the temp dir.
    if [ "$(id -u)" = 0 ]; then user="user root;"; fi
    case $role in
        static) location="root $tmp/www;" ;;
        proxy|subfilter)
            # Upstream keep-alive, as smproxy pools its origin connections.
            upstream="upstream origin {
        server 127.0.0.1:${PORT[origin]};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }"
            location="proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";"
            if [ "$role" = subfilter ]; then
                # The origin must send identity for sub_filter to see the text.
                location="$location
            proxy_set_header Accept-Encoding \"\";
            sub_filter '</head>' \"$snippet_nginx</head>\";
            sub_filter_once on;"
                # The beacon workload's counterpart: a bare 204 with a visitor cookie.
                beacon_location="location = /_sm/collect {
            add_header Set-Cookie \"smuuid=0b7c2f7e-3f7a-4c59-9d0e-6f1a2b3c4d5e; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly\" always;
            return 204;
        }"
            fi ;;
    esac

    # One worker, no access log; keep-alive limits raised so that neither nginx nor smproxy
    # closes wrk's connections during a run (nginx closes after 1000 requests by default).
    cat >"$prefix/conf/nginx.conf" <<EOF
daemon off;
worker_processes 1;
$user
pid logs/nginx.pid;
error_log logs/error.log warn;
worker_rlimit_nofile $(ulimit -n);
events { worker_connections 16384; }
http {
    access_log off;
    types { text/html html; }
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    $upstream
    server {
        listen 127.0.0.1:$port;
        location / {
            $location
        }
        $beacon_location
    }
}
EOF
    taskset -c "$cpu" nginx -p "$prefix/" -c conf/nginx.conf -e logs/error.log \
        >"$prefix/logs/stdout" 2>&1 &
    PID[$name]=$!
    wait_ready "$name" "$prefix/logs/error.log"
    WORK_PID[$name]=$(pgrep -P "${PID[$name]}" | head -n1)
    [ -n "${WORK_PID[$name]}" ] || die "$name: no nginx worker process"
}

# start_smproxy NAME CPU INJECT(true|false) [BINARY]
start_smproxy() {
    local name=$1 cpu=$2 inject=$3 bin=${4:-$smproxy_bin}
    local prefix=$tmp/$name port admin
    port=$(free_port)
    admin=$(free_port)
    PORT[$name]=$port
    ADMIN_PORT[$name]=$admin
    mkdir -p "$prefix"
    # A fresh store for every start: the beacon check compares the file with this process's
    # counters.
    rm -f "$prefix"/smproxy.db*
    cat >"$prefix/smproxy.yaml" <<EOF
listen: "127.0.0.1:$port"
client_id: "$CLIENT_ID"
threads: 1
grace_period_seconds: 0
sites:
  - name: bench
    hosts: ["*"]
    upstream: "127.0.0.1:${PORT[origin]}"
inject:
  enabled: $inject
collect:
  rate_per_minute: 0
admin:
  listen: "127.0.0.1:$admin"
  token: "$ADMIN_TOKEN"
store:
  sqlite: "$prefix/smproxy.db"
EOF
    (cd "$prefix" && exec taskset -c "$cpu" "$bin" -c smproxy.yaml) >"$prefix/stderr.log" 2>&1 &
    PID[$name]=$!
    wait_ready "$name" "$prefix/stderr.log"
    WORK_PID[$name]=${PID[$name]}
}

start_server() {
    case $1 in
        direct)          start_nginx direct "$SUT_CPU" static ;;
        nginx-proxy)     start_nginx nginx-proxy "$SUT_CPU" proxy ;;
        nginx-subfilter) start_nginx nginx-subfilter "$SUT_CPU" subfilter ;;
        smproxy-pass)    start_smproxy smproxy-pass "$SUT_CPU" false ;;
        smproxy-inject)  start_smproxy smproxy-inject "$SUT_CPU" true ;;
        smproxy-base)    start_smproxy smproxy-base "$SUT_CPU" "${BASE_INJECT:-true}" "$tmp/smproxy-base-bin" ;;
        *) die "unknown server $1" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Measuring helpers
# ---------------------------------------------------------------------------------------------

# utime + stime of a process (all its threads), in clock ticks. Field 2 (comm) may contain
# spaces, so count fields after its closing parenthesis.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# wait_stored NAME: for smproxy, waits until its event writer has committed every event it
# accepted (`written + abandoned = enqueued` on /metrics; an empty queue is not enough, the last
# batch may still be committing), so that the CPU time of a beacon run includes storing its
# beacons, not only answering them. Nothing to wait for with nginx.
wait_stored() {
    local name=$1 state=""
    [ -n "${ADMIN_PORT[$name]:-}" ] || return 0
    for _ in $(seq 600); do
        state=$(curl -sf -H "Authorization: Bearer $ADMIN_TOKEN" \
            "http://127.0.0.1:${ADMIN_PORT[$name]}/metrics" | awk '
                $1 == "smproxy_events_enqueued_total" {e = $2}
                $1 == "smproxy_events_written_total" {w = $2}
                $1 == "smproxy_events_abandoned_total" {a = $2}
                END {print (e != "" && w + a == e) ? "settled" : e " accepted, " w " written"}')
        [ "$state" = settled ] && return 0
        sleep 0.1
    done
    die "$name: the event writer did not settle ($state)"
}

# run_wrk NAME WORKLOAD REPEAT: one warm-up and one measured wrk run; appends to runs.tsv.
run_wrk() {
    local name=$1 workload=$2 rep=$3
    local wpid=${WORK_PID[$name]} url conns paths="" header=""
    case $workload in
        median)   conns=$CONNS;     url="http://127.0.0.1:${PORT[$name]}$median_path" ;;
        rotation) conns=$CONNS;     url="http://127.0.0.1:${PORT[$name]}/"; paths=$tmp/paths.txt ;;
        c1000)    conns=$MEM_CONNS; url="http://127.0.0.1:${PORT[$name]}$median_path" ;;
        beacon)   conns=$CONNS;     url="http://127.0.0.1:${PORT[$name]}/_sm/collect" ;;
        floor)    conns=$CONNS
            case $name in
                nginx-*) url="http://127.0.0.1:${PORT[$name]}/_sm/collect" ;;
                *)  url="http://127.0.0.1:${PORT[$name]}/_sm/sm.js"
                    local etag
                    etag=$(curl -sfI "$url" | tr -d '\r' | awk 'tolower($1) == "etag:" {print $2}')
                    [ -n "$etag" ] || die "$name: no ETag on the tracker"
                    header="If-None-Match: $etag" ;;
            esac ;;
    esac
    local beacon=""
    [ "$workload" = beacon ] && beacon=1
    local wrk_cmd=(taskset -c "$GEN_CPU" wrk -t 1 -c "$conns" --timeout 10s --latency -s "$helpers/wrk.lua")

    local warm
    warm=$(WRK_PATHS=$paths WRK_BEACON=$beacon WRK_HEADER=$header "${wrk_cmd[@]}" -d "${WARMUP}s" "$url")
    # Reset the peak RSS (VmHWM) so that it reflects this run only.
    echo 5 >"/proc/$wpid/clear_refs" 2>/dev/null || true
    local t0 t1 out
    # Beacons: the CPU time from a settled writer to a settled writer again, so that a writer
    # lagging behind the answers neither hides the cost of this run nor adds the warm-up's.
    if [ -n "$beacon" ]; then wait_stored "$name"; fi
    t0=$(cpu_ticks "$wpid")
    out=$(WRK_PATHS=$paths WRK_BEACON=$beacon WRK_HEADER=$header "${wrk_cmd[@]}" -d "${DURATION}s" "$url")
    if [ -n "$beacon" ]; then wait_stored "$name"; fi
    t1=$(cpu_ticks "$wpid")
    printf '%s\n' "$out" >"$tmp/logs/wrk-$name-$workload-$rep.txt"

    local line
    line=$(grep '^WRK ' <<<"$out") || die "no summary from wrk ($name $workload): $out"
    # requests= duration_us= bytes= connect= read= write= status= timeout= p50_us= p99_us=
    local requests duration_us bytes connect read write status timeout p50_us p99_us
    eval "$(sed 's/^WRK //' <<<"$line")"
    [ "$requests" -gt 0 ] || die "$name $workload: no requests completed"
    local errors=$((connect + read + write + status + timeout))
    if [ "$errors" -ne 0 ]; then
        local what="$name $workload: wrk errors: connect $connect, read $read, write $write, timeout $timeout, non-2xx/3xx $status"
        # Only the 1,000-connection run may see socket errors (listen backlog, limits);
        # a wrong status is never acceptable.
        if [ "$workload" != c1000 ] || [ "$status" -ne 0 ]; then die "$what"; fi
        log "note: $what"
    fi
    local peak_kb rps cpu_us bpr
    peak_kb=$(status_kb "$wpid" VmHWM)
    rps=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN {printf "%.1f", r * 1e6 / d}')
    cpu_us=$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v r="$requests" 'BEGIN {printf "%.2f", t * 1e6 / hz / r}')
    bpr=$(awk -v b="$bytes" -v r="$requests" 'BEGIN {printf "%.0f", b / r}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$name" "$workload" \
        "$requests" "$rps" "$p50_us" "$p99_us" "$cpu_us" "$peak_kb" "$bpr" "$errors" >>"$tmp/runs.tsv"
    log "$(printf '%-16s %-8s %10s req/s  p50 %6.2f ms  p99 %7.2f ms  %7s CPU us/req  errors %s' \
        "$name" "$workload" "$rps" "$(awk -v x="$p50_us" 'BEGIN{print x/1000}')" \
        "$(awk -v x="$p99_us" 'BEGIN{print x/1000}')" "$cpu_us" "$errors")"
    if [ "$workload" = beacon ] && [ -n "${ADMIN_PORT[$name]:-}" ]; then
        # Every answered beacon stored exactly once (a fast wrong answer must not win).
        local warm_requests answered check
        warm_requests=$(grep '^WRK ' <<<"$warm" | sed 's/.* requests=\([0-9]*\).*/\1/')
        answered=$((warm_requests + requests))
        check=$(python3 "$helpers/beacons.py" --admin "127.0.0.1:${ADMIN_PORT[$name]}" \
            --token "$ADMIN_TOKEN" --db "$tmp/$name/smproxy.db" --answered "$answered" \
            --in-flight $((2 * conns))) || die "$name: $check"
        log "$name: $check"
    fi
}

# run_hold NAME REPEAT: RSS growth of the working process with 1,000 idle keep-alive
# connections (one full request each). Run on a freshly started server, before any load, so
# that the idle RSS is not inflated by buffers kept from earlier runs.
run_hold() {
    local name=$1 rep=$2 out
    out=$(taskset -c "$GEN_CPU" python3 "$helpers/hold.py" --addr "127.0.0.1:${PORT[$name]}" \
        --path "$median_path" --pid "${WORK_PID[$name]}" --conns "$MEM_CONNS")
    local conns alive idle_kb held_kb closed_kb
    eval "$(grep '^HOLD ' <<<"$out" | sed 's/^HOLD //')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$name" "$conns" "$alive" "$idle_kb" "$held_kb" "$closed_kb" >>"$tmp/mem.tsv"
    log "$(printf '%-16s hold     %s conns (%s still open): RSS %s kB idle, %s kB held, %s kB after closing' \
        "$name" "$conns" "$alive" "$idle_kb" "$held_kb" "$closed_kb")"
}

# ---------------------------------------------------------------------------------------------
# The corpus, served by the origin from a temp dir
# ---------------------------------------------------------------------------------------------
mkdir -p "$tmp/www/p" "$tmp/logs"
cp "$corpus"/*.html "$tmp/www/p/"
chmod -R a+rX "$tmp/www"
# A tiny page, not part of the corpus: readiness checks, and reading the exact snippet.
probe='<!doctype html><html><head><title>probe</title></head><body></body></html>'
printf '%s\n' "$probe" >"$tmp/www/probe.html"
(cd "$tmp/www/p" && ls -- *.html) | sort | sed 's|^|/p/|' >"$tmp/paths.txt"
sed "s|^\(/p/\(.*\)\)$|\1\t$tmp/www/p/\2|" "$tmp/paths.txt" >"$tmp/pages.tsv"
n_pages=$(wc -l <"$tmp/paths.txt")
# The median-size page (the lower median when the count is even).
median_file=$(cd "$tmp/www/p" && ls -S -r -- *.html | sed -n "$(( (n_pages + 1) / 2 ))p")
median_path=/p/$median_file
median_size=$(stat -c %s "$tmp/www/p/$median_file")
log "corpus: $n_pages pages from $corpus; median page $median_file ($median_size bytes)"

printf 'repeat\tserver\tworkload\trequests\trps\tp50_us\tp99_us\tcpu_us_per_req\tpeak_rss_kb\tbytes_per_req\terrors\n' >"$tmp/runs.tsv"
printf 'repeat\tserver\tconns\talive\tidle_kb\theld_kb\tclosed_kb\n' >"$tmp/mem.tsv"

# The origin runs for the whole benchmark, on the load generator's CPU.
snippet_nginx=""
start_nginx origin "$GEN_CPU" static
log "origin nginx on 127.0.0.1:${PORT[origin]} (CPU $GEN_CPU)"

# ---------------------------------------------------------------------------------------------
# The exact snippet: whatever smproxy puts into the probe page (the same text as
# smproxy::snippet::Snippet::new(client_id, &tracker.src("/_sm/sm.js")).html()).
# ---------------------------------------------------------------------------------------------
start_server smproxy-inject
curl -sf "http://127.0.0.1:${PORT[smproxy-inject]}/probe.html" >"$tmp/probe.out"
python3 - "$tmp/www/probe.html" "$tmp/probe.out" "$tmp/snippet.html" <<'EOF'
import sys
src, out = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
anchor = src.index(b"</head>")
head, tail = src[:anchor], src[anchor:]
assert out.startswith(head) and out.endswith(tail), "probe page: no snippet before </head>"
snippet = out[len(head):len(out) - len(tail)]
assert snippet.startswith(b"<script") and b"_smid" in snippet, snippet
open(sys.argv[3], "wb").write(snippet)
EOF
snippet=$(cat "$tmp/snippet.html")
# The snippet goes into an nginx double-quoted string: `"`, `\` and `$` (variables) would
# change its meaning; smproxy's snippet has none of them.
case $snippet in *'"'* | *'\'* | *'$'* | *$'\n'*) die "snippet cannot be put in nginx.conf as is" ;; esac
snippet_nginx=$snippet
log "snippet: ${#snippet} bytes, client_id $CLIENT_ID"

# ---------------------------------------------------------------------------------------------
# Correctness first: a benchmark of a proxy that breaks pages would be meaningless.
# ---------------------------------------------------------------------------------------------
# (Beacons are checked after each beacon run: see run_wrk.)
if pages_wanted; then
    log "checking every corpus page"
    start_server smproxy-pass
    start_server nginx-proxy
    start_server nginx-subfilter
    check_out=$(python3 "$helpers/check.py" --pages "$tmp/pages.tsv" --snippet "$tmp/snippet.html" \
        --inject "127.0.0.1:${PORT[smproxy-inject]}" --subfilter "127.0.0.1:${PORT[nginx-subfilter]}" \
        --passthrough "smproxy passthrough=127.0.0.1:${PORT[smproxy-pass]}" \
        --passthrough "nginx proxy_pass=127.0.0.1:${PORT[nginx-proxy]}") || {
        printf '%s\n' "$check_out" >&2
        die "correctness check failed"
    }
    printf '%s\n' "$check_out" >&2
    for name in smproxy-pass nginx-proxy nginx-subfilter; do stop_server "$name"; done
else
    check_out="CHECK pages not checked: WORKLOADS=$WORKLOADS has no page workload"
fi
stop_server smproxy-inject

# ---------------------------------------------------------------------------------------------
# Measurements. Each repeat restarts every server (independent samples, fresh idle RSS) and
# goes through the servers in turn, so slow drifts in background load hit all of them alike.
# ---------------------------------------------------------------------------------------------
servers=()
pages_wanted && servers+=(direct nginx-proxy)
servers+=(nginx-subfilter)
pages_wanted && servers+=(smproxy-pass)
servers+=(smproxy-inject)
[ -n "${SMPROXY_BIN_BASE:-}" ] && servers+=(smproxy-base)
for rep in $(seq "$REPEATS"); do
    log "repeat $rep/$REPEATS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    for name in "${servers[@]}"; do
        start_server "$name"
        # A few requests first, so lazily built state (upstream pool, parser tables) is in the
        # idle RSS rather than counted as per-connection memory.
        for _ in 1 2 3; do curl -sf -o /dev/null "http://127.0.0.1:${PORT[$name]}$median_path"; done
        if wants hold; then run_hold "$name" "$rep"; fi
        for workload in median rotation c1000; do
            if wants "$workload"; then run_wrk "$name" "$workload" "$rep"; fi
        done
        case $name in
            nginx-subfilter|smproxy-inject|smproxy-base)
                for workload in beacon floor; do
                    if wants "$workload"; then run_wrk "$name" "$workload" "$rep"; fi
                done ;;
        esac
        stop_server "$name"
    done
done
load_at_end=$(cut -d' ' -f1-3 /proc/loadavg)

# nginx warns when a proxied response did not fit its memory buffers and went to a temp file.
temp_file_warnings=$(cat "$tmp"/nginx-*/logs/error.log 2>/dev/null | grep -c 'temporary file' || true)
# smproxy logs one ERROR per request that wrk cuts off when a run ends ("Downstream
# ConnectionClosed" / "Downstream WriteError"); anything else is worth a look.
smproxy_errors=$(cat "$tmp"/smproxy-*/stderr.log 2>/dev/null | grep -c 'ERROR' || true)
smproxy_other_errors=$(cat "$tmp"/smproxy-*/stderr.log 2>/dev/null | grep 'ERROR' | grep -vc 'Fail to proxy: Downstream' || true)

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
table=$(python3 "$helpers/report.py" "$tmp/runs.tsv" "$tmp/mem.tsv")
mkdir -p "$results_dir"
# A run of some workloads only does not replace the full table.
result_name=latest
[ "$WORKLOADS" = "$ALL_WORKLOADS" ] || result_name=latest-$(tr ' ' '-' <<<"$WORKLOADS")
{
    echo "# smproxy load benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- command: \`$command_line\`"
    echo "- machine: nproc $(nproc), $(lscpu | sed -n 's/^Model name: *//p' | head -n1)"
    echo "- load average at start: $load_at_start; at end: $load_at_end"
    echo "- smproxy: $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$repo" && [ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] && echo ' (with uncommitted changes)'), \`cargo build --release\`, threads: 1; $(nginx -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1; $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)${SMPROXY_BIN_BASE:+; smproxy-base: $SMPROXY_BIN_BASE}"
    echo "- runs: REPEATS=$REPEATS DURATION=${DURATION}s (after ${WARMUP}s warm-up), wrk -t 1 -c $CONNS; 1,000-connection runs: wrk -c $MEM_CONNS, and $MEM_CONNS held keep-alive connections"
    echo "- corpus: $n_pages pages; median page $median_path ($median_size bytes); snippet ${#snippet} bytes"
    echo
    echo "Correctness (every corpus page, before measuring):"
    echo
    sed 's/^CHECK /- /' <<<"$check_out"
    echo
    echo "$table"
    echo
    echo "Logs: nginx 'buffered to a temporary file' warnings: $temp_file_warnings. smproxy ERROR lines: $smproxy_errors, of which $((smproxy_errors - smproxy_other_errors)) are requests cut off by wrk at the end of a run (Downstream ConnectionClosed/WriteError) and $smproxy_other_errors others."
} >"$results_dir/$result_name.md"
cp "$tmp/runs.tsv" "$results_dir/$result_name-runs.tsv"
cp "$tmp/mem.tsv" "$results_dir/$result_name-mem.tsv"

echo
cat "$results_dir/$result_name.md"
echo
log "written to benches/results/$result_name.md (raw runs: $result_name-runs.tsv, $result_name-mem.tsv)"
