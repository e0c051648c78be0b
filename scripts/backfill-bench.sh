#!/usr/bin/env bash
# The backfill rate and the server's peak memory: a fake Stripe events API on loopback with N
# events (examples/fake_stripe_api.rs), a release stagehook reading it, and `stagehook backfill`
# over the whole window, timed. Prints events/s and the server's peak RSS (VmHWM) before and
# after the run.
#
#   N=10000 bash scripts/backfill-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
T=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin stagehook --example fake_stripe_api
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
$T/release/examples/fake_stripe_api "$N" >"$dir/api" &
for _ in $(seq 100); do [ -s "$dir/api" ] && break; sleep 0.1; done
base=$(head -1 "$dir/api")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/staging.toml" <<TOML
[server]
bind = "127.0.0.1:$port"
data_dir = "$dir/data"

[providers.stripe]
secret = "whsec_bench_0123456789abcdef0123456789abcdef"
api_key = "sk_test_fakeprovider0123456789"   # the key the fake takes
api_base = "$base"
TOML
$T/release/stagehook serve --config "$dir/staging.toml" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
before=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
start=$(date +%s.%N)
$T/release/stagehook backfill stripe --config "$dir/staging.toml" --since 2d
end=$(date +%s.%N)
after=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
python3 - "$N" "$start" "$end" "$before" "$after" <<'PY'
import sys
n, start, end, before, after = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(f"backfilled {n} events in {end - start:.2f} s: {n / (end - start):.0f} events/s")
print(f"server peak RSS: {before / 1024:.1f} MiB before the run, {after / 1024:.1f} MiB after")
PY
