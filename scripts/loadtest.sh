#!/usr/bin/env bash
# The end-to-end load benchmark: stagehook's whole pipeline (guards, signature, validation, dedup,
# durable record and queued delivery, then the 200) against two floors on the same stack, a bare
# warp server that only reads the body and a durable floor that checks the signature and commits
# the body to sled before its 200, and against Debian's `webhook` (adnanh/webhook: an HMAC check
# and a command run, nothing stored) when it can be installed, all driven by wrk over loopback
# with the same uniquely signed events, at 1, 8, 16 and 64 connections. Prints throughput, p50/p99
# latency, CPU per request and stagehook's peak RSS, stagehook's ratio to each of the others (to
# the durable floor for p50 and p99 too), and writes the tables into docs/performance.md and
# README.md.
#
# Then the million-events phase: MILLION freshly signed unique events, each sent exactly once at
# 64 connections into a fresh data folder, every one of which must be stored; it reports the
# ingest rate, stagehook's peak RSS, the data folder's size on disk against the raw payload bytes,
# the time a restart on those events takes until the server answers HTTP, and the latency of
# /stats and of the first page of /events with them stored. MILLION=0 skips it.
#
#   bash scripts/loadtest.sh   # DURATION=10s CONNS="1 8 16 64" COUNT=300000 BODY_BYTES=1024 MILLION=1000000
#   BASELINE=/path/to/older/stagehook CONNS=64 MILLION=0 bash scripts/loadtest.sh   # before and after
#   REDIS=1 CONNS=64 MILLION=0 bash scripts/loadtest.sh   # the Redis backends beside the default
#   SCRAPE=1 CONNS=64 MILLION=0 bash scripts/loadtest.sh  # the default with /metrics scraped every second
#
# REDIS=1 starts a redis-server of its own (no persistence, on a free loopback port, stopped at
# exit) and, at each connection count, drives right after the default stagehook a second one
# with limits.backend and dedup.backend on redis, then prints the ratio of the two. Both then
# run the limiter, with a limit wrk never reaches (RATE_LIMIT): with the limiter off, the shared
# limiter would never be called. Such a run writes its own table into docs/performance.md,
# between its own markers, and leaves the default tables alone.
#
# SCRAPE=1 drives, right after the default stagehook at each connection count, the same build again
# while a loop fetches /metrics every second, as Prometheus would, and prints the ratio of the two.
#
# The load generator and the server share this machine's cores, as they do on a small staging VM.
# The binaries are built into $CARGO_TARGET_DIR when it is set, else into target/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${CARGO_TARGET_DIR:-target}/release"

DURATION=${DURATION:-10s}
CONNS=${CONNS:-"1 8 16 64"}
COUNT=${COUNT:-300000}
BODY_BYTES=${BODY_BYTES:-1024}
MILLION=${MILLION:-1000000}
# Another stagehook binary (an earlier build, say) to drive right after this one at each
# connection count, for a before-and-after from one run, beside the durable floor. Such a run
# leaves docs/performance.md alone.
BASELINE=${BASELINE:-}
REDIS=${REDIS:-}
SCRAPE=${SCRAPE:-}
# The rate limit of both stagehooks in a REDIS run: far above what wrk sends in a minute.
RATE_LIMIT=${RATE_LIMIT:-1000000000}
SECRET="whsec_loadtest_0123456789abcdef0123456789"
if ! [[ $MILLION =~ ^[0-9]+$ ]]; then
    echo "MILLION must be a whole number of events (0 skips the phase), not '$MILLION'" >&2
    exit 2
fi

# Installs Debian's package $1 when the command $2 is missing.
need() {
    command -v "$2" >/dev/null && return 0
    echo "== installing $1"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$1"
}
need wrk wrk
if [ -n "$SCRAPE" ] && { [ -n "$BASELINE" ] || [ -n "$REDIS" ]; }; then
    echo "SCRAPE, REDIS and BASELINE are three comparisons: run one at a time" >&2
    exit 2
fi
if [ -n "$REDIS" ]; then
    if [ -n "$BASELINE" ]; then
        echo "REDIS and BASELINE are two comparisons: run one at a time" >&2
        exit 2
    fi
    need redis-server redis-server
    need redis-tools redis-cli
fi

echo "== building (release)"
cargo build --release --bin stagehook --example floor --example durable_floor --example presign

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT


# Starts a server in the background, waits for its "listening on" line, and sets $pid and
# $port (servers bind port 0, so no port is picked here and then taken by someone else).
start() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do
        if grep -q "listening on" "$log"; then
            port=$(grep -o 'listening on http://[^ ]*' "$log" | head -1 | sed 's/.*://')
            return 0
        fi
        sleep 0.05
    done
    echo "server did not start: $(cat "$log")" >&2
    exit 1
}

stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# $1 / $2 with two decimals, or "-" when $2 was not measured.
share() {
    if [ -z "$2" ] || [ "$2" = 0 ]; then
        echo "-"
    else
        awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'
    fi
}

# The command that reproduces this run: the settings that differ from the defaults, then the script.
command_line() {
    local s=""
    [ "$CONNS" = "1 8 16 64" ] || s+="CONNS=\"$CONNS\" "
    [ "$DURATION" = 10s ] || s+="DURATION=$DURATION "
    [ "$COUNT" = 300000 ] || s+="COUNT=$COUNT "
    [ "$BODY_BYTES" = 1024 ] || s+="BODY_BYTES=$BODY_BYTES "
    [ "$MILLION" = 1000000 ] || s+="MILLION=$MILLION "
    echo "${s}bash scripts/loadtest.sh"
}

# Milliseconds from a wrk latency figure such as 812.00us, 1.20ms or 2.01s.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { printf "%s", v } }'
}

# Reads a wrk report $1; sets rps, p50, p99 and, from presigned.lua's LOADTEST line, non2xx,
# wrapped, answered, duration_us, socket_errors.
report() {
    local out=$1
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    read -r non2xx wrapped answered duration_us socket_errors < <(awk -F'[= ]' '/^LOADTEST/ {print $3, $5, $7, $9, $11}' "$out")
}

# The CPU time, in clock ticks, that the threads of process $1 have used so far: "handlers writer
# all", where the handlers are tokio's workers and the writer is stagehook's store thread (the
# durable floor's writer is not named apart: its ticks are only in all).
cpu_ticks() {
    cat /proc/"$1"/task/*/stat 2>/dev/null | awk '{
        from = index($0, "("); to = index($0, ") ")
        comm = substr($0, from + 1, to - from - 1)
        split(substr($0, to + 2), f, " ")
        t = f[12] + f[13]   # utime and stime, the stat fields 14 and 15
        all += t
        if (comm ~ /^tokio-(runtime-w|rt-worker)/) handlers += t
        else if (comm == "stagehook-store") writer += t
    } END {printf "%d %d %d\n", handlers, writer, all}'
}
clk_tck=$(getconf CLK_TCK)

# Microseconds of CPU per answered request between two cpu_ticks readings $1 and $2 (quoted);
# sets cpu_handlers, cpu_writer and cpu_all ("-" when nothing was answered).
cpu_per_request() {
    local h0 w0 a0 h1 w1 a1
    read -r h0 w0 a0 <<<"$1"
    read -r h1 w1 a1 <<<"$2"
    read -r cpu_handlers cpu_writer cpu_all < <(awk -v n="$answered" -v hz="$clk_tck" \
        -v h=$((h1 - h0)) -v w=$((w1 - w0)) -v a=$((a1 - a0)) 'BEGIN {
            if (n > 0) printf "%.1f %.1f %.1f\n", h * 1e6 / hz / n, w * 1e6 / hz / n, a * 1e6 / hz / n
            else print "- - -" }')
}

# Runs wrk against $1 with $2 connections for $DURATION; sets what `report` sets.
drive() {
    local url=$1 conns=$2 threads=$(( $2 < 2 ? $2 : 2 ))
    local out="$work/wrk.out" before
    before=$(cpu_ticks "$pid")
    # $3, `hub`: each event also carries its GitHub-style signature (only the webhook peer reads
    # it; the others would only store it).
    wrk -t "$threads" -c "$conns" -d "$DURATION" --latency -s scripts/presigned.lua "$url" -- "$work/events.tsv" "$threads" ${3:-} >"$out"
    report "$out"
    # The server's CPU over the run, per answered request: the threads still there at its end.
    cpu_per_request "$before" "$(cpu_ticks "$pid")"
}

# Writes a stagehook config for port $1 and data folder $2 to $3. The limiter is off, but for a
# REDIS run: the Redis row needs it on, and the default row runs it too, to compare like with like.
config() {
    cat >"$3" <<EOF
[server]
bind = "127.0.0.1:$1"
data_dir = "$2"
[limits]
rate_limit_per_minute = $([ -n "$REDIS" ] && echo "$RATE_LIMIT" || echo 0)
[providers.stripe]
secret = "$SECRET"
EOF
}

# stagehook's total_events from /stats on port $1.
# curl and sed, not a Python start-up: the million phase asks ten times a second, on the cores
# the ingest runs on.
total_events() {
    curl -sf "http://127.0.0.1:$1/staging/webhooks/stats" | sed -n 's/.*"total_events": *\([0-9]*\).*/\1/p'
}

redis_port=""
if [ -n "$REDIS" ]; then
    # A free port, then a server on it; one that another process took meanwhile fails the start.
    redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
        --loglevel warning >"$work/redis.log" 2>&1 &
    pids+=("$!")
    for _ in $(seq 200); do
        [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
        sleep 0.05
    done
    if [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" != PONG ]; then
        echo "redis-server did not start on port $redis_port: $(cat "$work/redis.log")" >&2
        exit 1
    fi
    echo "== redis-server $(redis-server --version | grep -o 'v=[^ ]*' | cut -c3-) on port $redis_port"
fi

# Fails the run unless every answer was a 2xx and every answered event was stored: the requests
# still in flight when wrk stopped (at most one per connection) may be stored without an answer.
# Repeats after a wrap are duplicates, so then only the answers are checked, unless $4 says that
# the server stores repeats too (the durable floor does not deduplicate). $1 names the server,
# $2 is the connection count, $3 the events it stored.
check_stored() {
    local counted=$wrapped
    [ -z "${4:-}" ] || counted=0
    if [ "$non2xx" != 0 ] || { [ "$counted" = 0 ] && { [ "$3" -lt "$answered" ] || [ "$3" -gt $((answered + $2)) ]; }; }; then
        echo "FAILED: $1 at $2 connections: $answered answered, $non2xx non-2xx, $socket_errors socket errors (connect, read, write, timeout), $3 stored" >&2
        exit 1
    fi
}

echo "== signing $COUNT events of $BODY_BYTES bytes"
"$bin"/examples/presign "$COUNT" "$SECRET" "$work/events.tsv" "$BODY_BYTES"

# The peer: adnanh/webhook with one hook at the path presigned.lua posts to, whose rule checks the
# events' GitHub-style signature with the same secret and then runs /bin/true. It stores nothing.
# webhook 2.8 answers a signature that does not match with a 500 ("Error occurred while evaluating
# hook rules."), and a request without one with the rule's mismatch code, a 200 unless set: 400.
cat >"$work/hooks.json" <<EOF
[
  {
    "id": "stripe",
    "execute-command": "/bin/true",
    "command-working-directory": "$work",
    "response-message": "{\"received\":true}",
    "trigger-rule-mismatch-http-response-code": 400,
    "trigger-rule": {
      "match": {
        "type": "payload-hmac-sha256",
        "secret": "$SECRET",
        "parameter": { "source": "header", "name": "X-Hub-Signature-256" }
      }
    }
  }
]
EOF

# Starts webhook on a free loopback port and waits until it answers HTTP; sets $pid and $port.
# Fails (status 1) when it exits or does not answer within 10 s. webhook prints its address only
# when verbose, and a verbose one logs every request, so the port is picked here.
start_webhook() {
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    webhook -hooks "$work/hooks.json" -ip 127.0.0.1 -port "$port" -urlprefix staging/webhooks >"$1" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# The HTTP status of a POST of body $1 with header $2 (none when empty) to webhook on $port.
post_status() {
    local header=()
    [ -z "$2" ] || header=(-H "$2")
    curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' "${header[@]}" \
        --data-binary "$1" "http://127.0.0.1:$port/staging/webhooks/stripe"
}

# Its figures count only if it accepts the events as signed and refuses them otherwise: the first
# event with its own signature, then signed with another secret, with its body changed, and with no
# signature at all.
webhook_version=""
if need webhook webhook && start_webhook "$work/webhook-check.log"; then
    IFS=$'\t' read -r _ hub body < <(head -1 "$work/events.tsv")
    other=$(printf '%s' "$body" | python3 -c 'import hashlib, hmac, sys; print("sha256=" + hmac.new(b"another secret", sys.stdin.buffer.read(), hashlib.sha256).hexdigest())')
    signed=$(post_status "$body" "X-Hub-Signature-256: $hub")
    wrong_secret=$(post_status "$body" "X-Hub-Signature-256: $other")
    changed=$(post_status "${body/payment_intent/payment_xntent}" "X-Hub-Signature-256: $hub")
    unsigned=$(post_status "$body" "")
    stop "$pid"
    echo "== webhook peer: signed $signed, signed with another secret $wrong_secret, body changed $changed, unsigned $unsigned"
    if [[ $signed == 2?? && $wrong_secret != 2?? && $changed != 2?? && $unsigned != 2?? ]]; then
        webhook_version=$(webhook -version | awk '{print $NF}')
    else
        echo "webhook does not check the signatures as expected: going on without it" >&2
    fi
else
    echo "webhook (Debian's package) could not be installed or started: going on without it" >&2
    [ ! -s "$work/webhook-check.log" ] || cat "$work/webhook-check.log" >&2
fi

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
machine="$(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM"
rows=()
durable_rows=()
baseline_rows=()
peer_rows=()
readme_rows=()
redis_rows=()
for c in $CONNS; do
    start "$work/floor.log" "$bin"/examples/floor "127.0.0.1:0"
    drive "http://127.0.0.1:$port/staging/webhooks/stripe" "$c"
    stop "$pid"
    floor_rps=$rps floor_p50=$p50 floor_p99=$p99
    echo "-- $c connections: bare floor $floor_rps req/s (p50 $floor_p50 ms, p99 $floor_p99 ms, non-2xx $non2xx)"
    if [ "$non2xx" != 0 ]; then
        echo "FAILED: bare floor at $c connections: $answered answered, $non2xx non-2xx" >&2
        exit 1
    fi

    # The durable floor in a plain run and beside a BASELINE, the peer in a plain run only: the
    # other comparison runs (REDIS, SCRAPE) compare stagehooks, and would only take longer.
    durable_rps="" durable_p50="" durable_p99="" durable_stored="" durable_cpu=""
    webhook_rps="" webhook_p50="" webhook_p99=""
    if [ -z "$REDIS$SCRAPE" ]; then
        # The durable floor stores every request it answers, repeats included, so its count is
        # checked even after a wrap.
        start "$work/durable.log" "$bin"/examples/durable_floor "127.0.0.1:0" "$SECRET" "$work/durable-$c"
        drive "http://127.0.0.1:$port/staging/webhooks/stripe" "$c"
        durable_stored=$(curl -sf "http://127.0.0.1:$port/count")
        stop "$pid"
        durable_rps=$rps durable_p50=$p50 durable_p99=$p99 durable_cpu=$cpu_all
        echo "-- $c connections: durable floor $durable_rps req/s (p50 $durable_p50 ms, p99 $durable_p99 ms, $durable_stored stored, non-2xx $non2xx; CPU per request: handlers $cpu_handlers µs, all threads $cpu_all µs)"
        check_stored "durable floor" "$c" "$durable_stored" repeats
        rm -rf "$work/durable-$c"
    fi
    if [ -z "$BASELINE$REDIS$SCRAPE" ]; then
        if [ -n "$webhook_version" ]; then
            if start_webhook "$work/webhook.log"; then
                drive "http://127.0.0.1:$port/staging/webhooks/stripe" "$c" hub
                stop "$pid"
                webhook_rps=$rps webhook_p50=$p50 webhook_p99=$p99
                echo "-- $c connections: webhook $webhook_version $webhook_rps req/s (p50 $webhook_p50 ms, p99 $webhook_p99 ms, non-2xx $non2xx)"
                # A refusal would count as an answer in its rate: every event must pass its check.
                if [ "$non2xx" != 0 ] || [ "$answered" = 0 ]; then
                    echo "FAILED: webhook at $c connections: $answered answered, $non2xx non-2xx, $socket_errors socket errors" >&2
                    exit 1
                fi
            else
                echo "webhook did not start at $c connections: going on without it: $(cat "$work/webhook.log")" >&2
            fi
        fi
    fi

    data="$work/data-$c"
    config 0 "$data" "$work/staging.toml"
    # One log line per request would measure the terminal; warnings only.
    start "$work/stagehook.log" env RUST_LOG=warn "$bin"/stagehook serve --config "$work/staging.toml"
    drive "http://127.0.0.1:$port/staging/webhooks/stripe" "$c"
    rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    stored=$(total_events "$port")
    stop "$pid"
    disk=$(du -sk "$data" | cut -f1)
    ratio=$(share "$rps" "$floor_rps")
    durable_ratio=$(share "$rps" "$durable_rps")
    webhook_ratio=$(share "$rps" "$webhook_rps")
    p50_ratio=$(share "$p50" "$durable_p50")
    p99_ratio=$(share "$p99" "$durable_p99")
    echo "-- $c connections: stagehook $rps req/s (p50 $p50 ms, p99 $p99 ms, peak RSS $((rss_kb / 1024)) MB, $stored stored, $disk KB on disk, non-2xx $non2xx, wrapped $wrapped; CPU per request: handlers $cpu_handlers µs, writer $cpu_writer µs, all threads $cpu_all µs)"
    echo "-- $c connections: stagehook / durable floor $durable_ratio (p50 $p50_ratio, p99 $p99_ratio of the floor's), stagehook / bare floor $ratio, stagehook / webhook $webhook_ratio"
    echo "PEERS conns=$c stagehook_rps=$rps durable_floor_rps=$durable_rps floor_rps=$floor_rps webhook_rps=${webhook_rps:--} durable_floor_ratio=$durable_ratio floor_ratio=$ratio webhook_ratio=$webhook_ratio"
    check_stored stagehook "$c" "$stored"
    [ -z "$durable_rps" ] || durable_rows+=("| $c | $rps | $p50 | $p99 | $durable_rps | $durable_p50 | $durable_p99 | **$durable_ratio** | $p50_ratio | $p99_ratio | $cpu_all | $durable_cpu |")
    new_rps=$rps new_p50=$p50 new_p99=$p99 new_cpu="$cpu_handlers $cpu_writer $cpu_all"
    rows+=("| $c | $rps | $p50 | $p99 | $((rss_kb / 1024)) | $stored | **$durable_ratio** | **$ratio** | $webhook_ratio |")
    peer_rows+=("| $c | bare floor | $floor_rps | $floor_p50 | $floor_p99 | none |")
    [ -z "$durable_rps" ] || peer_rows+=("| $c | durable floor | $durable_rps | $durable_p50 | $durable_p99 | $durable_stored |")
    [ -z "$webhook_rps" ] || peer_rows+=("| $c | webhook $webhook_version | $webhook_rps | $webhook_p50 | $webhook_p99 | none |")
    if [ "$c" = 64 ]; then
        readme_rows=(
            "| stagehook: verify, validate, deduplicate, store, queue the delivery | $rps | |"
            "| durable floor: verify, store | $durable_rps | **$durable_ratio** |"
            "| bare floor: read the body | $floor_rps | **$ratio** |"
        )
        [ -z "$webhook_rps" ] || readme_rows+=("| adnanh/webhook $webhook_version: verify, run \`/bin/true\`, store nothing | $webhook_rps | $webhook_ratio |")
    fi
    if [ -n "$BASELINE" ]; then
        # The same run against another build, to compare a change with what it changes.
        config 0 "$work/data-baseline-$c" "$work/staging.toml"
        start "$work/baseline.log" env RUST_LOG=warn "$BASELINE" serve --config "$work/staging.toml"
        drive "http://127.0.0.1:$port/staging/webhooks/stripe" "$c"
        stop "$pid"
        over_baseline=$(awk -v a="$new_rps" -v b="$rps" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')
        echo "-- $c connections: baseline $rps req/s (p50 $p50 ms, p99 $p99 ms; CPU per request: handlers $cpu_handlers µs, writer $cpu_writer µs, all threads $cpu_all µs); this build / baseline $over_baseline"
        read -r new_handlers new_writer new_all <<<"$new_cpu"
        baseline_rows+=("| $c | $new_rps | $new_p50 | $new_p99 | $new_handlers / $new_writer / $new_all | $rps | $p50 | $p99 | $cpu_handlers / $cpu_writer / $cpu_all | **$over_baseline** | $(share "$rps" "$durable_rps") |")
    fi
    if [ -n "$SCRAPE" ]; then
        # The same events again, to a fresh data folder, while /metrics is fetched every second.
        default_rps=$rps
        config 0 "$work/data-scrape-$c" "$work/staging.toml"
        start "$work/stagehook-scrape.log" env RUST_LOG=warn "$bin"/stagehook serve --config "$work/staging.toml"
        (while curl -sf -o "$work/metrics.txt" "http://127.0.0.1:$port/metrics"; do sleep 1; done) &
        scraper=$!
        pids+=("$scraper")
        drive "http://127.0.0.1:$port/staging/webhooks/stripe" "$c"
        stored=$(total_events "$port")
        kill "$scraper" 2>/dev/null || true
        stop "$pid"
        check_stored "stagehook scraped" "$c" "$stored"
        if ! grep -q '^stagehook_events_received_total' "$work/metrics.txt"; then
            echo "FAILED: stagehook scraped at $c connections: no scrape of /metrics succeeded" >&2
            exit 1
        fi
        ratio=$(awk -v a="$rps" -v b="$default_rps" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')
        echo "-- $c connections: stagehook with /metrics scraped every second $rps req/s (p50 $p50 ms, p99 $p99 ms); / stagehook $default_rps req/s: $ratio"
        echo "SCRAPE conns=$c default_rps=$default_rps scraped_rps=$rps ratio=$ratio"
    fi
    if [ -n "$REDIS" ]; then
        # The same events again, to a fresh data folder and an emptied Redis: all new to both.
        default_rps=$rps default_p50=$p50 default_p99=$p99
        redis-cli -p "$redis_port" flushall >/dev/null
        config 0 "$work/data-redis-$c" "$work/staging.toml"
        start "$work/stagehook-redis.log" env RUST_LOG=warn STAGEHOOK_LIMITS_BACKEND=redis STAGEHOOK_DEDUP_BACKEND=redis \
            STAGEHOOK_REDIS_URL="redis://127.0.0.1:$redis_port/0" "$bin"/stagehook serve --config "$work/staging.toml"
        drive "http://127.0.0.1:$port/staging/webhooks/stripe" "$c"
        rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
        stored=$(total_events "$port")
        # Both backends on and Redis up to the end: else the row would be the instance alone.
        redis_state=$(curl -sf "http://127.0.0.1:$port/staging/webhooks/stats" |
            python3 -c 'import json,sys; r = json.load(sys.stdin)["redis"] or {}; print(r.get("state"), r.get("limits"), r.get("dedup"))')
        stop "$pid"
        check_stored "stagehook + redis" "$c" "$stored"
        # Each stored event left its committed claim, and the limiter its sorted set.
        keys=$(redis-cli -p "$redis_port" dbsize)
        if [ "$redis_state" != "up True True" ] || [ "$keys" -le "$stored" ]; then
            echo "FAILED: stagehook + redis at $c connections: redis $redis_state, $keys keys for $stored events" >&2
            exit 1
        fi
        ratio=$(awk -v a="$rps" -v b="$default_rps" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')
        echo "-- $c connections: stagehook + redis $rps req/s (p50 $p50 ms, p99 $p99 ms, peak RSS $((rss_kb / 1024)) MB, $stored stored, $keys Redis keys, non-2xx $non2xx); / stagehook $default_rps req/s: $ratio"
        echo "REDIS conns=$c default_rps=$default_rps redis_rps=$rps ratio=$ratio"
        redis_rows+=("| $c | $default_rps | $default_p50 | $default_p99 | $rps | $p50 | $p99 | **$ratio** |")
    fi
done

# Replaces what the file $3 (docs/performance.md by default) holds between `<!-- $1:begin -->` and
# `<!-- $1:end -->` with $2; fails (changing nothing) when the file has no such markers.
between_markers() {
    local file=${3:-docs/performance.md}
    grep -q "<!-- $1:begin -->" "$file" || return 1
    python3 - "$1" "$2" "$file" <<'PY'
import re, sys
marker, table, path = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
new = f"<!-- {marker}:begin -->\n{table}\n<!-- {marker}:end -->"
text = re.sub(rf"<!-- {marker}:begin -->.*?<!-- {marker}:end -->", lambda _: new, text, flags=re.S)
open(path, "w").write(text)
PY
}

# Milliseconds since $1, an earlier $EPOCHREALTIME.
# Starts stagehook on the million phase's folder, its log in $1, and sets pid, startup_ms and
# startup_status: the time from the exec of stagehook to its first HTTP answer, and the answer's
# status.
timed_start() {
    # The poller runs first, so its own start is not counted, and the exec is timed by the process
    # that becomes stagehook, on the same monotonic clock.
    rm -f "$work/poller.ready" "$work/exec.t0"
    python3 - "$port" "$work/exec.t0" "$work/poller.ready" >"$work/startup.out" <<'PY' &
import http.client, sys, time
port, t0_path, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3]
open(ready, "w").close()
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        c.request("GET", "/staging/webhooks/test")
        status = c.getresponse().status
        break
    except OSError:
        time.sleep(0.0002)
t1 = time.monotonic()
with open(t0_path) as f:
    t0 = float(f.read())
print(f"{(t1 - t0) * 1000:.1f} {status}")
PY
    poller=$!
    pids+=("$poller")
    until [ -e "$work/poller.ready" ]; do sleep 0.01; done
    RUST_LOG=warn python3 -c '
import os, sys, time
with open(sys.argv[1], "w") as f:
    f.write(repr(time.monotonic()))
os.execv(sys.argv[2], sys.argv[2:])' "$work/exec.t0" "$bin"/stagehook serve --config "$work/million.toml" >"$1" 2>&1 &
    pid=$!
    pids+=("$pid")
    while kill -0 "$poller" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "stagehook did not restart: $(cat "$1")" >&2
            exit 1
        fi
        sleep 0.05
    done
    wait "$poller"
    read -r startup_ms startup_status <"$work/startup.out"
}

since_ms() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.0f", (b - a) * 1000}'; }

million_row=""
if [ "$MILLION" -gt 0 ]; then
    echo
    echo "== $MILLION events, each sent once at 64 connections"
    # The sweep's events and data folders are done with.
    rm -rf "$work"/data-* "$work/events.tsv"
    # The signed events take about BODY_BYTES + 400 bytes each, and the data folder a few times
    # the raw bytes.
    need_kb=$(( MILLION * (BODY_BYTES + 400) * 5 / 1024 ))
    avail_kb=$(df -Pk "$work" | awk 'NR == 2 {print $4}')
    if [ "$avail_kb" -lt "$need_kb" ]; then
        echo "not enough disk in $work: $((avail_kb / 1024)) MB free, about $((need_kb / 1024)) MB needed" >&2
        exit 1
    fi

    # The disk alone, just before: 256 KB appended and fdatasync'ed again and again for 10 s, so a
    # commit stall below can be told from a stall of the disk itself.
    python3 - "$work/fsync.probe" <<'PY'
import os, statistics, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
chunk, times, end = os.urandom(256 * 1024), [], time.monotonic() + 10
while time.monotonic() < end:
    t = time.monotonic()
    os.write(fd, chunk)
    os.fdatasync(fd)
    times.append((time.monotonic() - t) * 1000)
os.close(fd)
os.unlink(sys.argv[1])
times.sort()
print(f"-- the disk alone: {len(times)} appends of 256 KB each fdatasync'ed in 10 s: p50 {times[len(times) // 2]:.2f} ms, p99 {times[len(times) * 99 // 100]:.2f} ms, max {times[-1]:.2f} ms")
PY

    data="$work/data-million"
    config 0 "$data" "$work/million.toml"

    # Stripe's tolerance is 300 s: signed just before they are sent, and all of them must arrive
    # within it (a late one is refused, which the checks below catch).
    signed_at=$EPOCHREALTIME
    "$bin"/examples/presign "$MILLION" "$SECRET" "$work/million.tsv" "$BODY_BYTES"
    echo "-- signed in $(since_ms "$signed_at") ms"
    start "$work/million.log" env RUST_LOG=warn "$bin"/stagehook serve --config "$work/million.toml"
    url="http://127.0.0.1:$port"
    # The restart below listens on the same port, which the poller watches before it starts.
    config "$port" "$data" "$work/million.toml"
    # The disk beside the ingest: 4 KB appended and fdatasync'ed every 20 ms into a file of its
    # own on the same disk, each timed, so a slow commit can be laid beside what the disk did at
    # that moment (a few dozen syncs a second, against the store's thousands).
    python3 - "$work/beside.probe" >"$work/beside.out" <<'PY' &
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
fd, chunk = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), os.urandom(4096)
while True:
    t, m = time.time(), time.monotonic()
    os.write(fd, chunk)
    os.fdatasync(fd)
    print(f"{t:.6f} {(time.monotonic() - m) * 1000:.3f}", flush=True)
    time.sleep(0.02)
PY
    probe_pid=$!
    pids+=("$probe_pid")
    # Once mode: each event exactly once. wrk cannot tell when the last answer came (presigned.lua
    # says why it does not count them), so the count of stored events is watched every 100 ms;
    # when all are stored, wrk gets a second to read the last answers and is then ended, and its
    # count of answered requests is checked below. -d only bounds a run in which some event is
    # never stored. The ingest's time is from the first poll that saw an event stored to the one
    # that saw them all: wrk's own duration leaves out what its first thread sends while the
    # next one is still formatting its events, and wrk's start would count that formatting.
    threads=$(( MILLION < 2 ? 1 : 2 ))
    wrk -t "$threads" -c 64 -d 600s --latency -s scripts/presigned.lua "$url/staging/webhooks/stripe" \
        -- "$work/million.tsv" "$threads" once >"$work/wrk-million.out" &
    wrk_pid=$!
    ingest_from="" ingest_ms=""
    while kill -0 "$wrk_pid" 2>/dev/null; do
        seen=$(total_events "$port" || true)
        seen=${seen:-0}
        [ -n "$ingest_from" ] || [ "$seen" = 0 ] || ingest_from=$EPOCHREALTIME
        if [ "$seen" -ge "$MILLION" ]; then
            ingest_ms=$(since_ms "$ingest_from")
            sleep 1
            kill -INT "$wrk_pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    wait "$wrk_pid" || true
    kill "$probe_pid" 2>/dev/null || true
    wait "$probe_pid" 2>/dev/null || true
    rm -f "$work/beside.probe"
    report "$work/wrk-million.out"
    [ -n "$ingest_ms" ] || ingest_ms=$((duration_us / 1000))
    window_s=$(( $(since_ms "$signed_at") / 1000 ))
    ingest_rps=$(awk -v n="$MILLION" -v ms="$ingest_ms" 'BEGIN {printf "%.0f", (ms > 0 ? n / (ms / 1e3) : 0)}')
    rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    stored=$(total_events "$port")
    # From /metrics: the store's commits someone waited for, and each request's time from its
    # arrival to its hand-over to the store; how many, and how long. What is left of a request's
    # latency is the wait for its commit to start, and everything outside stagehook.
    spread() {
        curl -sf "$url/metrics" | python3 -c '
import sys
name, b, n = sys.argv[1], [], 0
for line in sys.stdin:
    if line.startswith(name + "_bucket"):
        le = line.split("le=\"")[1].split("\"")[0]
        b.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    elif line.startswith(name + "_count"):
        n = float(line.split()[-1])
def at(q):
    return next((le for le, c in b if c >= q * n), float("inf")) * 1000
over = n - next((c for le, c in b if le >= 0.0327), n)
print(f"{n:.0f}, p50 under {at(0.5):.1f} ms, p99 under {at(0.99):.1f} ms, {over:.0f} over 33 ms")' "$1"
    }
    commit_line=$(spread stagehook_store_commit_duration_seconds)
    handover_line=$(spread stagehook_ingest_processing_seconds)
    stopped_at=$EPOCHREALTIME
    stop "$pid"
    shutdown_ms=$(since_ms "$stopped_at")
    disk_kb=$(du -sk "$data" | cut -f1)
    raw_bytes=$(LC_ALL=C awk -F'\t' '{n += length($3)} END {printf "%.0f", n}' "$work/million.tsv")
    echo "-- ingest: $answered answered, all stored in $ingest_ms ms ($ingest_rps req/s, p50 $p50 ms, p99 $p99 ms), non-2xx $non2xx, socket errors $socket_errors, $stored stored; all sent $window_s s after signing; peak RSS $((rss_kb / 1024)) MB; shutdown $shutdown_ms ms"
    # The writer logs every commit of 100 ms or more with where its time went: how many, and the
    # slowest, say whether the tail is the commits'. Beside them, what the disk did: the probe's
    # spread, and for each slow commit the slowest probe sync that overlapped it (a commit's log
    # line is written when it ends).
    python3 - "$work/million.log" "$work/beside.out" "$commit_line" "$handover_line" <<'PY'
import re, sys
from datetime import datetime
log, beside_out, commit_line, handover_line = sys.argv[1:]
slow = []
for line in open(log):
    if "slow store commit" in line:
        took = sum(float(v) for v in re.findall(r"(?:log|apply)_ms=([0-9.]+)", line))
        end = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
        slow.append((took, end, line.rstrip("\n")))
worst = max(slow, default=None)
print(f"-- store commits: {commit_line}; of 100 ms or more: {len(slow)}, the slowest {worst[0] if worst else 0:.0f} ms")
print(f"-- arrival to hand-over to the store, per event: {handover_line}")
if worst:
    print(f"   {worst[2]}")
probes = [tuple(map(float, l.split())) for l in open(beside_out) if len(l.split()) == 2]
if probes:
    ms = sorted(p[1] for p in probes)
    print(f"-- the disk beside the ingest: {len(ms)} syncs of 4 KB, p50 {ms[len(ms) // 2]:.2f} ms, p99 {ms[len(ms) * 99 // 100]:.2f} ms, max {ms[-1]:.2f} ms, {sum(m >= 100 for m in ms)} of 100 ms or more")
    for took, end, line in slow:
        start = end - took / 1000
        beside = [m for t, m in probes if t < end and t + m / 1000 > start]
        said = f"the slowest probe sync beside it {max(beside):.1f} ms" if beside else "no probe sync beside it"
        print(f"   slow commit of {took:.0f} ms ending {line.split()[0]}: {said}")
PY

    timed_start "$work/restart.log"

    # 20 sequential requests each, on one keep-alive connection, the first ones cold.
    read -r restored stats_p50 stats_max page_events page_p50 page_max < <(python3 - "$port" <<'PY'
import http.client, json, statistics, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=600)
def timed(path):
    times = []
    for _ in range(20):
        t = time.monotonic()
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        times.append((time.monotonic() - t) * 1000)
        if r.status != 200:
            sys.exit(f"GET {path}: {r.status} {body[:200]!r}")
    return json.loads(body), f"{statistics.median(times):.2f} {max(times):.2f}"
stats, stats_ms = timed("/staging/webhooks/stats")
page, page_ms = timed("/staging/webhooks/events?limit=50")
print(stats["total_events"], stats_ms, len(page["events"]), page_ms)
PY
    )
    rss_after_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

    # SIGKILL mid-ingest, and the start after it, which applies the log's groups the database had
    # not written: 64 connections of new events for 2 s, then the kill while they arrive.
    "$bin"/examples/presign 200000 "$SECRET" "$work/kill.tsv" "$BODY_BYTES"
    wrk -t "$threads" -c 64 -d 10s -s scripts/presigned.lua "$url/staging/webhooks/stripe" -- "$work/kill.tsv" "$threads" >"$work/kill.wrk" 2>&1 &
    kill_wrk=$!
    pids+=("$kill_wrk")
    sleep 2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    kill -INT "$kill_wrk" 2>/dev/null || true
    wait "$kill_wrk" 2>/dev/null || true
    clean_startup_ms=$startup_ms
    timed_start "$work/kill-restart.log"
    kill_startup_ms=$startup_ms
    recovered=$(grep -o 'groups=[0-9]*' "$work/kill-restart.log" | head -1 | cut -d= -f2)
    recovered=${recovered:-0}
    stop "$pid"
    startup_ms=$clean_startup_ms

    disk_mb=$(awk -v k="$disk_kb" 'BEGIN {printf "%.0f", k / 1024}')
    raw_mb=$(awk -v b="$raw_bytes" 'BEGIN {printf "%.0f", b / 1048576}')
    disk_ratio=$(awk -v k="$disk_kb" -v b="$raw_bytes" 'BEGIN {printf "%.2f", k * 1024 / b}')
    echo "-- restart: HTTP $startup_status after $startup_ms ms, $restored events; RSS $((rss_after_kb / 1024)) MB after the reads below"
    echo "-- restart after SIGKILL mid-ingest: HTTP $startup_status after $kill_startup_ms ms, $recovered groups of the log applied first"
    echo "-- GET /stats p50 $stats_p50 ms, max $stats_max ms; GET /events?limit=50 ($page_events events) p50 $page_p50 ms, max $page_max ms"
    echo "-- disk $disk_mb MB for $raw_mb MB of raw payloads: $disk_ratio x"
    echo "MILLION events=$MILLION stored=$stored restored=$restored non2xx=$non2xx ingest_rps=$ingest_rps peak_rss_mb=$((rss_kb / 1024)) disk_mb=$disk_mb raw_mb=$raw_mb disk_raw=$disk_ratio startup_ms=$startup_ms kill_startup_ms=$kill_startup_ms recovered_groups=$recovered stats_p50_ms=$stats_p50 stats_max_ms=$stats_max page_p50_ms=$page_p50 page_max_ms=$page_max"
    if [ "$stored" != "$MILLION" ] || [ "$restored" != "$MILLION" ] || [ "$answered" != "$MILLION" ] || [ "$non2xx" != 0 ]; then
        echo "FAILED: $MILLION events sent, $answered answered, $non2xx non-2xx, $stored stored, $restored after the restart" >&2
        exit 1
    fi
    million_row="| $MILLION | $ingest_rps | $p50 | $p99 | $((rss_kb / 1024)) | $disk_mb | $raw_mb | **$disk_ratio** | $startup_ms | $kill_startup_ms ($recovered) | $stats_p50 / $stats_max | $page_p50 / $page_max |"
fi

table=$(
    echo "Measured $(date -u +%Y-%m-%d) on $machine with \`$(command_line)\` (wrk, $DURATION per run, $BODY_BYTES-byte Stripe events, each uniquely signed; durable acks on; load generator on the same cores):"
    echo
    if [ ${#durable_rows[@]} -gt 0 ]; then
        echo "| connections | stagehook req/s | p50 ms | p99 ms | durable floor req/s | p50 ms | p99 ms | req/s / floor's | p50 / floor's | p99 / floor's | CPU µs per request | floor's CPU µs |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${durable_rows[@]}"
        echo
    fi
    echo "| connections | stagehook req/s | p50 ms | p99 ms | peak RSS MB | events stored | / durable floor | / bare floor | / webhook |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "The others on the same events in the same run, driven in this order before stagehook at each connection count:"
    echo
    echo "| connections | server | req/s | p50 ms | p99 ms | stored |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${peer_rows[@]}"
    if [ -n "$million_row" ]; then
        echo
        echo "$MILLION events, each sent once at 64 connections into a fresh data folder and all stored; then a restart on them, and one after a SIGKILL mid-ingest:"
        echo
        echo "| events | ingest req/s | p50 ms | p99 ms | peak RSS MB | disk MB | raw MB | disk/raw | startup ms | after SIGKILL ms (groups applied) | /stats p50 / max ms | first page p50 / max ms |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
        echo "$million_row"
    fi
)
echo
if [ -n "$BASELINE" ]; then
    # A comparison run prints its own table: this build, the baseline, the durable floor.
    echo "This build against $BASELINE and the durable floor, each driven in turn at each connection count ($DURATION per run; CPU per request in µs: handlers / writer / all threads):"
    echo
    echo "| connections | this build req/s | p50 ms | p99 ms | CPU µs | baseline req/s | p50 ms | p99 ms | CPU µs | this build / baseline | baseline / durable floor |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${baseline_rows[@]}"
    echo
fi
echo "$table"

if [ -n "$REDIS" ]; then
    redis_table=$(
        echo "Measured $(date -u +%Y-%m-%d) on $machine with \`REDIS=1 CONNS=\"$CONNS\" DURATION=$DURATION MILLION=0 bash scripts/loadtest.sh\` (wrk, $BODY_BYTES-byte Stripe events, each uniquely signed; durable acks on; the rate limiter on in both, at $RATE_LIMIT a minute; redis-server, wrk and stagehook on the same cores):"
        echo
        echo "| connections | stagehook req/s | p50 ms | p99 ms | stagehook + redis req/s | p50 ms | p99 ms | ratio |"
        echo "|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${redis_rows[@]}"
    )
    echo
    echo "$redis_table"
    if between_markers loadtest-redis "$redis_table"; then
        echo "docs/performance.md updated (the Redis table)."
    fi
fi

# docs/performance.md keeps the latest table between its markers; a comparison run (BASELINE,
# SCRAPE, or REDIS, whose stagehooks run the limiter) leaves it alone.
if [ -z "$BASELINE" ] && [ -z "$REDIS" ] && [ -z "$SCRAPE" ] && between_markers loadtest "$table"; then
    echo "docs/performance.md updated."
fi

# README.md shows the 64-connection figures of the same run, when it had them.
if [ -z "$BASELINE" ] && [ -z "$REDIS" ] && [ -z "$SCRAPE" ] && [ ${#readme_rows[@]} -gt 0 ]; then
    readme_table=$(
        echo "Measured $(date -u +%Y-%m-%d) on $machine with \`$(command_line)\` (64 connections, wrk on the same cores; [all figures](docs/performance.md#end-to-end)):"
        echo
        echo "| server | req/s | stagehook / it |"
        echo "|---|---|---|"
        printf '%s\n' "${readme_rows[@]}"
    )
    echo
    echo "$readme_table"
    if between_markers loadtest-peers "$readme_table" README.md; then
        echo "README.md updated."
    fi
fi
