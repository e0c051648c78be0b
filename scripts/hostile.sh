#!/usr/bin/env bash
# Hostile clients against a release build of stagehook, one attack per phase, with genuine signed
# Stripe events (50 a second, each on a new connection) sent beside each attack:
#
#   - none: the genuine traffic alone, for comparison;
#   - idle half-sent requests: IDLE (20 000) connections attempted at once, each sending half a
#     request head and a header line every 5 s, and opening a new one at the next 5 s round
#     when the server has closed one (as slowloris does);
#   - slow bodies: 2 000 requests at a time declaring 1 MiB and sending a byte a second, each
#     from a spoofed address through the trusted proxy;
#   - slow-body flood past max_connections: 12 000 slow bodies at a time (twice the 6 000
#     connections allowed) from 200 addresses (127.0.0.2 to 127.0.0.201), half declaring 1 000
#     bytes and sending one, half declaring 1 MiB and sending 16 KiB, then a byte a second each,
#     starting again a second after each is closed; its row also gives the RSS before the phase
#     and 30 s after it;
#   - huge headers: 64 connections at a time sending requests with ~60 KB of headers, every tenth
#     over the 64 KiB limit;
#   - spoofed-IP flood: 64 connections at a time sending badly signed requests, each from a new
#     spoofed IPv4 or IPv6 address through the trusted proxy.
#
# For each it prints the genuine requests' success rate, p50 and p99, stagehook's peak RSS and
# open descriptors, and what stagehook counted (evictions, refusals, timeouts), and writes the
# table into docs/security.md. Everything runs on this machine, over loopback (127.0.0.0/8).
#
#   bash scripts/hostile.sh          # PHASE_SECONDS=20 IDLE=20000
#   PHASES=slow-body-flood bash scripts/hostile.sh                     # some phases only
#   STAGEHOOK=/path/to/older/stagehook PHASES=slow-body-flood bash scripts/hostile.sh  # another build
#
# A run with PHASES or STAGEHOOK leaves docs/security.md alone. The binaries are built into
# $CARGO_TARGET_DIR when it is set, else into target/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${CARGO_TARGET_DIR:-target}/release"

PHASE_SECONDS=${PHASE_SECONDS:-20}
IDLE=${IDLE:-20000}
PHASES=${PHASES:-}
STAGEHOOK=${STAGEHOOK:-}
SECRET="whsec_hostile_0123456789abcdef0123456789"

echo "== building (release)"
cargo build --release --bin stagehook --example hostile
server="${STAGEHOOK:-$bin/stagehook}"

work=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    # The server's log stays for a look: hostile-stagehook.log in the target folder.
    [ -f "$work/stderr.log" ] && cp "$work/stderr.log" "${CARGO_TARGET_DIR:-target}/hostile-stagehook.log"
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/staging.toml" <<EOF
[server]
bind = "127.0.0.1:0"
data_dir = "$work/data"
# The genuine events and the spoofing attacks come through a proxy on loopback.
trusted_proxies = ["127.0.0.0/8"]
EOF

# Defaults everywhere else: the limits under test are the shipped ones.
STRIPE_WEBHOOK_SECRET=$SECRET RUST_LOG=info "$server" serve --config "$work/staging.toml" \
    >"$work/stdout.log" 2>"$work/stderr.log" &
pid=$!
for _ in $(seq 200); do
    grep -q "listening on" "$work/stdout.log" && break
    sleep 0.05
done
grep -q "listening on" "$work/stdout.log" || { echo "stagehook did not start: $(cat "$work/stderr.log")" >&2; exit 1; }
# It binds port 0 and says which port it got.
port=$(grep -o 'listening on http://[^ ]*' "$work/stdout.log" | head -1 | sed 's/.*://')
echo "== $server ($pid) on 127.0.0.1:$port (open-file limit $(ulimit -n)); $PHASE_SECONDS s a phase"

table=$(PHASES=$PHASES "$bin/examples/hostile" "127.0.0.1:$port" "$pid" "$SECRET" "$PHASE_SECONDS" "$IDLE" | tee /dev/stderr)

kill -TERM "$pid"
wait "$pid" || true
pid=""
log_lines=$(wc -l <"$work/stderr.log")
log_bytes=$(wc -c <"$work/stderr.log")
echo "== stagehook's log over the whole run: $log_lines lines, $log_bytes bytes"

if [ -n "$PHASES" ] || [ -n "$STAGEHOOK" ]; then
    echo "== PHASES or STAGEHOOK set: docs/security.md left as it is"
    exit 0
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
header="Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($cpu) with \`bash scripts/hostile.sh\` (${PHASE_SECONDS} s of genuine traffic per attack, after 3 s of attack alone; default limits; attackers, genuine client and stagehook on the same cores; stagehook's log over the whole run: $log_lines lines):"
python3 - "$header" "$table" <<'PY'
import re, sys
header, table = sys.argv[1], sys.argv[2]
path = "docs/security.md"
text = open(path).read()
block = "<!-- hostile:begin -->\n" + header + "\n\n" + table.strip() + "\n<!-- hostile:end -->"
new, n = re.subn(r"<!-- hostile:begin -->.*?<!-- hostile:end -->", lambda m: block, text, flags=re.S)
if n:
    open(path, "w").write(new)
    print("docs/security.md: table replaced")
else:
    print("docs/security.md has no hostile markers; table not written", file=sys.stderr)
PY
