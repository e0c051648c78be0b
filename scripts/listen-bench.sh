#!/usr/bin/env bash
# How far behind a `stagehook listen` is: a staging stagehook on a free loopback port, a local app
# that answers 200 at once, and a listener between them (`--json`, whose lines carry
# `received_at_ms`, when staging stored the event, and `answered_at_ms`, when the app answered).
#
# 1. Live: EVENTS events (1000) sent one at a time, each by a `stagehook send` of its own (so
#    they arrive spaced, as a provider's do), while the listener follows; prints the p50, p99
#    and max of answered_at_ms - received_at_ms.
# 2. Catch-up: the listener stopped, GAP events (10000) sent, the listener started again; prints
#    the time until it has delivered all of them and the rate.
#
#   STAGEHOOK=target/release/stagehook bash scripts/listen-bench.sh   # EVENTS=1000 GAP=10000
#
# Needs bash and python3 (the app and the figures are python3's standard library).
set -euo pipefail

bin=${STAGEHOOK:-target/release/stagehook}
bin=$(realpath -m -- "$bin")
EVENTS=${EVENTS:-1000}
GAP=${GAP:-10000}
while read -r name; do unset "$name"; done < <(compgen -e | grep '^STAGEHOOK_' || true)
unset STRIPE_WEBHOOK_SECRET TWILIO_AUTH_TOKEN

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
staging_port=$(free_port)
app_port=$(free_port)
token=bench-token-0123456789abcdef0123

cat > "$work/staging.toml" <<EOF
[server]
bind = "127.0.0.1:$staging_port"
data_dir = "$work/data"
admin_token = "$token"

[limits]
rate_limit_per_minute = 0

[providers.stripe]
secret = "whsec_staging_bench"
EOF
cat > "$work/app.toml" <<EOF
[providers.stripe]
secret = "whsec_local_bench"
EOF

python3 - "$app_port" > /dev/null 2>&1 <<'EOF' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
EOF
pids+=($!)
"$bin" serve --config "$work/staging.toml" > "$work/staging.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$staging_port/healthz" 2>/dev/null && break
    sleep 0.1
done

listen() {
    STAGEHOOK_TOKEN=$token "$bin" listen "http://127.0.0.1:$staging_port" --config "$work/app.toml" \
        --forward-to "http://127.0.0.1:$app_port/webhooks" --state "$work/listen.state" --json \
        >> "$work/lines.ndjson" 2> "$work/listen.log" &
    listener=$!
    pids+=("$listener")
}
lines() { if [[ -f $work/lines.ndjson ]]; then wc -l < "$work/lines.ndjson"; else echo 0; fi; }
wait_lines() {
    local want=$1 deadline=$((SECONDS + 600))
    while (($(lines) < want)); do
        ((SECONDS < deadline)) || { echo "only $(lines) of $want lines; listen said:" >&2; tail "$work/listen.log" >&2; exit 1; }
        sleep 0.05
    done
}

listen
sleep 1
echo "== live: $EVENTS events sent one at a time (a \`stagehook send\` each) while the listener follows"
for _ in $(seq "$EVENTS"); do "$bin" send stripe --config "$work/staging.toml" > /dev/null; done
wait_lines "$EVENTS"
python3 - "$work/lines.ndjson" <<'EOF'
import json, sys
lags = sorted(l["answered_at_ms"] - l["received_at_ms"] for l in map(json.loads, open(sys.argv[1])) if l["ok"])
pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
print(f"-- {len(lags)} events delivered: arrival to the app's answer p50 {pick(0.5)} ms, p99 {pick(0.99)} ms, max {lags[-1]} ms")
EOF

echo "== catch-up: the listener stopped, $GAP events stored, the listener started again"
kill "$listener"; wait "$listener" 2>/dev/null || true
"$bin" send stripe --config "$work/staging.toml" --count "$GAP" > /dev/null
start=$(date +%s.%N)
listen
wait_lines $((EVENTS + GAP))
end=$(date +%s.%N)
python3 - "$start" "$end" "$GAP" "$work/lines.ndjson" <<'EOF'
import json, sys
start, end, gap = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
lines = [json.loads(l) for l in open(sys.argv[4])]
ids = [l["id"] for l in lines]
assert len(ids) == len(set(ids)), "an event was delivered twice"
assert ids == sorted(ids), "not in arrival order"
print(f"-- {gap} events caught up in {end - start:.1f} s: {gap / (end - start):.0f} events/s (none twice, in arrival order)")
EOF
