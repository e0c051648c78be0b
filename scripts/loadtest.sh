#!/usr/bin/env bash
# The end-to-end load benchmark: stagehook's whole pipeline (guards, signature, validation, dedup,
# durable record and queued delivery, then the 200) against a bare warp server that only reads
# the body, both driven by wrk over loopback with uniquely signed Stripe events, at 1, 16 and 64
# connections. Prints throughput, p50/p99 latency and stagehook's peak RSS, the ratio to the
# floor, and writes the table into README.md.
#
#   bash scripts/loadtest.sh            # DURATION=10s CONNS="1 16 64" COUNT=300000 BODY_BYTES=1024
#
# The load generator and the server share this machine's cores, as they do on a small staging VM.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-"1 16 64"}
COUNT=${COUNT:-300000}
BODY_BYTES=${BODY_BYTES:-1024}
SECRET="whsec_loadtest_0123456789abcdef0123456789"

if ! command -v wrk >/dev/null; then
    echo "== installing wrk"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk
fi

echo "== building (release)"
cargo build --release --bin stagehook --example floor --example presign

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a server in the background, waits for its "listening on" line, and sets $pid.
start() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do
        grep -q "listening on" "$log" && return 0
        sleep 0.05
    done
    echo "server did not start: $(cat "$log")" >&2
    exit 1
}

stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Milliseconds from a wrk latency figure such as 812.00us, 1.20ms or 2.01s.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { printf "%s", v } }'
}

# Runs wrk against $1 with $2 connections; sets rps, p50, p99, non2xx, wrapped.
drive() {
    local url=$1 conns=$2 threads=$(( $2 < 2 ? $2 : 2 ))
    local out="$work/wrk.out"
    wrk -t "$threads" -c "$conns" -d "$DURATION" --latency -s scripts/presigned.lua "$url" -- "$work/events.tsv" "$threads" >"$out"
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    non2xx=$(awk -F'[= ]' '/^LOADTEST/ {print $3}' "$out")
    wrapped=$(awk -F'[= ]' '/^LOADTEST/ {print $5}' "$out")
}

echo "== signing $COUNT events of $BODY_BYTES bytes"
target/release/examples/presign "$COUNT" "$SECRET" "$work/events.tsv" "$BODY_BYTES"

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
machine="$(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM"
rows=()
for c in $CONNS; do
    port=$(free_port)
    start "$work/floor.log" target/release/examples/floor "127.0.0.1:$port"
    drive "http://127.0.0.1:$port/staging/webhooks/stripe" "$c"
    stop "$pid"
    floor_rps=$rps floor_p50=$p50 floor_p99=$p99

    port=$(free_port)
    data="$work/data-$c"
    cat >"$work/staging.toml" <<EOF
[server]
bind = "127.0.0.1:$port"
data_dir = "$data"
[limits]
rate_limit_per_minute = 0
[providers.stripe]
secret = "$SECRET"
EOF
    # One log line per request would measure the terminal; warnings only.
    start "$work/stagehook.log" env RUST_LOG=warn target/release/stagehook serve --config "$work/staging.toml"
    drive "http://127.0.0.1:$port/staging/webhooks/stripe" "$c"
    rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    stored=$(curl -s "http://127.0.0.1:$port/staging/webhooks/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_events"])')
    stop "$pid"
    disk=$(du -sk "$data" | cut -f1)
    ratio=$(awk -v a="$rps" -v b="$floor_rps" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
    echo "-- $c connections: stagehook $rps req/s (p50 $p50 ms, p99 $p99 ms, peak RSS $((rss_kb / 1024)) MB, $stored stored, $disk KB on disk, non-2xx $non2xx, wrapped $wrapped); floor $floor_rps req/s (p50 $floor_p50 ms, p99 $floor_p99 ms); ratio $ratio"
    rows+=("| $c | $rps | $p50 | $p99 | $((rss_kb / 1024)) | $stored | $floor_rps | $floor_p50 | $floor_p99 | **$ratio** |")
done

table=$(
    echo "Measured $(date -u +%Y-%m-%d) on $machine with \`bash scripts/loadtest.sh\` (wrk, $DURATION per run, $BODY_BYTES-byte Stripe events, each uniquely signed; durable acks on; load generator on the same cores):"
    echo
    echo "| connections | stagehook req/s | p50 ms | p99 ms | peak RSS MB | events stored | floor req/s | floor p50 ms | floor p99 ms | ratio |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
)
echo
echo "$table"

# The README keeps the latest table between its markers.
if grep -q '<!-- loadtest:begin -->' README.md; then
    python3 - "$table" <<'PY'
import re, sys
path = "README.md"
text = open(path).read()
new = "<!-- loadtest:begin -->\n" + sys.argv[1] + "\n<!-- loadtest:end -->"
text = re.sub(r"<!-- loadtest:begin -->.*?<!-- loadtest:end -->", lambda _: new, text, flags=re.S)
open(path, "w").write(text)
PY
    echo "README.md updated."
fi
