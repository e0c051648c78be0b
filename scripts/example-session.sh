#!/usr/bin/env bash
# docs/delivery.md's "An example session", run for real: stagehook on a free port and a fresh data folder,
# a stand-in app that answers `500 boom` and then recovers, three events sent with
# `stagehook send`, their retries, the dead letters, the open breaker, the replays and
# `/recovery/stats`. Each command is printed after `$ ` and followed by its real output;
# docs/delivery.md's excerpts are this output (tests/it/example_session.rs compares them, with ids,
# times and ports masked on both sides).
#
#   scripts/example-session.sh                       # uses `stagehook` from PATH
#   STAGEHOOK=target/release/stagehook scripts/example-session.sh
#
# Needs bash, curl and python3 (the stand-in app and the JSON pretty-printer are python3's
# standard library, so nothing beyond a bare Debian with python3 and curl).
set -euo pipefail

bin=${STAGEHOOK:-stagehook}
if [[ $bin == */* ]]; then bin=$(realpath -m -- "$bin"); fi
# Only this session's settings count: nothing inherited from the caller's environment.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^STAGEHOOK_' || true)
unset TWILIO_AUTH_TOKEN STRIPE_WEBHOOK_SECRET

work=$(mktemp -d)
server_pid=
app_pid=
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
    [[ -n $app_pid ]] && kill "$app_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# The commands print `stagehook ...`, and this is what they run.
stagehook() { "$bin" "$@"; }

fail() {
    echo "example-session: $*" >&2
    echo "--- stagehook's log (last 40 lines) ---" >&2
    tail -n 40 serve.log >&2 2>/dev/null || true
    exit 1
}

# Prints the command, runs it, prints its output (one newline at the end, as a terminal shows
# curl's answers) and keeps it in $out.
run() {
    printf '$ %s\n' "$1"
    out=$(eval "$1") || fail "command failed: $1"
    [[ -n $out ]] && printf '%s\n' "$out"
    return 0
}

# Polls until a Python condition on the JSON at a URL holds: 30 s at most, so a stagehook that
# never gets there fails the run instead of hanging it. Prints nothing: the output must not
# depend on how long the wait took.
wait_until() {
    local what=$1 url=$2 cond=$3 deadline=$((SECONDS + 30))
    until curl -sf "$url" | python3 -c "import json, sys; d = json.load(sys.stdin); sys.exit(0 if ($cond) else 1)" 2>/dev/null; do
        ((SECONDS < deadline)) || fail "gave up waiting until $what"
        sleep 0.1
    done
}

# Two free loopback ports, one for stagehook and one for the app.
read -r port app_port < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
base=http://127.0.0.1:$port/staging/webhooks

# The app under test: checks Stripe's signature with the same secret, answers `500 boom` while
# the file `app-down` exists and `200 ok` once it is gone. `python3 -m http.server` answers POST
# with 501, and stagehook cannot be the app (it would answer 2xx to every signed delivery), so
# it is a few lines of python3's http.server.
cat > app.py <<'EOF'
import hashlib, hmac, http.server, os, sys

SECRET = os.environ["STRIPE_WEBHOOK_SECRET"].encode()

class App(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        parts = dict(p.split("=", 1) for p in self.headers.get("Stripe-Signature", "").split(",") if "=" in p)
        expected = hmac.new(SECRET, parts.get("t", "").encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            status, answer = 400, b"bad signature"
        elif os.path.exists("app-down"):
            status, answer = 500, b"boom"
        else:
            status, answer = 200, b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
EOF

# Short retry delays (the five attempts of a series take 1.5 s) and no jitter, so the session
# runs in seconds and every run prints the same; a breaker that opens after ten failures (two
# dead letters) and whose own probe would come only after ten minutes, so every delivery after
# it opens is the replay's doing.
cat > staging.toml <<EOF
[server]
bind = "127.0.0.1:$port"

[retry]
base_delay = "100ms"
max_delay = "1s"
jitter = 0.0

[circuit_breaker]
failure_threshold = 10
recovery_timeout = "10m"

[providers.stripe]
forward_to = ["http://127.0.0.1:$app_port/webhooks/stripe"]
EOF

export STRIPE_WEBHOOK_SECRET=whsec_ZXhhbXBsZS1zZXNzaW9uLXNlY3JldC0wMTIzNDU2Nzg5
touch app-down
python3 app.py "$app_port" &
app_pid=$!

run 'cat staging.toml'

printf '$ %s\n' 'stagehook serve --config staging.toml &'
# The binary itself, not the function: `$!` must be stagehook's own pid for the signal below.
"$bin" serve --config staging.toml > serve.out 2> serve.log &
server_pid=$!
deadline=$((SECONDS + 30))
until grep -q 'listening on' serve.out 2>/dev/null; do
    kill -0 "$server_pid" 2>/dev/null || fail "stagehook serve exited"
    ((SECONDS < deadline)) || fail "stagehook did not start listening"
    sleep 0.1
done
cat serve.out
deadline=$((SECONDS + 30))
# Any answer will do (a GET is 501): the app is listening.
until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$app_port/" || true) != 000 ]]; do
    ((SECONDS < deadline)) || fail "the app did not start"
    sleep 0.1
done

id_of() { python3 -c 'import json, sys; print(json.loads(sys.stdin.read().splitlines()[-1])["id"])' <<< "$1"; }

# The first event: five attempts, each answered 500, then a dead letter.
run 'stagehook send stripe --config staging.toml'
first=$(id_of "$out")
wait_until "the first event is failed" "$base/events/$first" 'd["status"] == "failed"'
run "curl -s '$base/events?provider=stripe&status=failed' | python3 -m json.tool"
run "curl -s $base/events/$first | python3 -m json.tool"

# The second event fails the same way; its fifth failure is the breaker's tenth.
run 'stagehook send stripe --config staging.toml'
second=$(id_of "$out")
wait_until "the second event is failed" "$base/events/$second" 'd["status"] == "failed"'
wait_until "stripe's breaker is open" "$base/recovery/stats" 'd["providers"]["stripe"]["breaker"]["state"] == "open"'

# The third waits behind the open breaker: received, no attempt.
run 'stagehook send stripe --config staging.toml'
third=$(id_of "$out")
wait_until "the third event is listed" "$base/events/$third" 'd["status"] == "received"'
run "curl -s '$base/events?provider=stripe' | python3 -m json.tool"
run "curl -s $base/recovery/stats | python3 -m json.tool"

# The app is fixed. The replay goes out at once as the breaker's probe; the breaker closes and
# the third event follows.
run 'rm app-down'
run "curl -s -X POST -H 'Content-Type: application/json' $base/events/$first/replay"
wait_until "the first event is delivered" "$base/events/$first" 'd["status"] == "processed"'
wait_until "the third event is delivered" "$base/events/$third" 'd["status"] == "processed"'
run "curl -s -X POST -H 'Content-Type: application/json' $base/replay -d '{\"status\":\"failed\"}'"
wait_until "the second event is delivered" "$base/events/$second" 'd["status"] == "processed"'
wait_until "the queue is empty" "$base/recovery/stats" 'd["queue_depth"] == 0 and d["in_flight"] == 0'
run "curl -s '$base/events?provider=stripe' | python3 -m json.tool"
run "curl -s $base/events/$first | python3 -m json.tool"
run "curl -s $base/recovery/stats | python3 -m json.tool"

# Stop stagehook with SIGTERM (a background job of a script ignores SIGINT, Ctrl-C's signal),
# bounded like every other wait here.
kill -TERM "$server_pid"
deadline=$((SECONDS + 30))
while kill -0 "$server_pid" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "stagehook did not stop"
    sleep 0.1
done
wait "$server_pid" || fail "stagehook serve exited with an error"
server_pid=
