#!/usr/bin/env bash
# Starts `rocketkv serve` on a free loopback port and runs the openai-client test suite against it.
# Usage: tests/server/run.sh [PYTHON]   (a python with openai and httpx; .ci/run makes one)
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${1:-python3}"
bin=.build/release/rocketkv
[ -x "$bin" ] || swift build -c release --product rocketkv
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="test-key-$RANDOM"
log=$(mktemp)
"$bin" serve --port "$port" --parallel 4 --queue 32 --cache-ram 64 --api-key "$key" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 600); do
    "$python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health')" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.2
done
ROCKETKV_URL="http://127.0.0.1:$port" ROCKETKV_PID=$pid ROCKETKV_API_KEY="$key" ROCKETKV_MODEL=smollm2-135m \
ROCKETKV_BIN="$bin" "$python" -m unittest -v tests/server/test_server.py || { echo "--- server log"; cat "$log"; exit 1; }
