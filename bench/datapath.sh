#!/usr/bin/env bash
# Data path: HTTP requests/s and latency straight at one pod IP, through the
# service VIP (node proxy), and through the published port (node proxy on
# 0.0.0.0), same load (bench/httpload, keep-alive connections), same pod.
# Then DNS queries/s for cluster names and the agent's resident memory idle
# and with 100 services.
#
# Usage: bench/datapath.sh [DURATION] [CONNS]    (root; a Docker Engine)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-5s}"
CONNS="${2:-16}"
DATA="$(mktemp -d /tmp/dev-bench-dp.XXXX)"
BIN="$DATA/bin"
mkdir -p "$BIN"
AGENT_PID=""
cleanup() {
	DEV_HOST="unix://$DATA/dev.sock" "$BIN/dev" down -p benchdp >/dev/null 2>&1 || true
	DEV_HOST="unix://$DATA/dev.sock" "$BIN/dev" down -p bench100 >/dev/null 2>&1 || true
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
	docker network rm devbench >/dev/null 2>&1 || true
	rm -rf "$DATA"
}
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$BIN/dev" ./cmd/dev
go build -o "$BIN/httpload" ./bench/httpload
go run ./bench/mkimage dev-testapp:bench

"$BIN/dev" agent --data-dir "$DATA" --raft-addr 127.0.0.1:17948 --network devbench --bridge devbench0 \
	--cluster-cidr 10.217.0.0/16 --service-cidr 10.218.0.0/16 --dns-addr 127.0.0.1:17953 >"$DATA/agent.log" 2>&1 &
AGENT_PID=$!
export DEV_HOST="unix://$DATA/dev.sock"
for _ in $(seq 1 100); do "$BIN/dev" ps >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$AGENT_PID/status"; }
sleep 2
echo "agent RSS idle: $(rss)"

"$BIN/dev" up -d -f bench/testdata/datapath/compose.yaml >/dev/null
POD_IP=$("$BIN/dev" ps -p benchdp -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["ip"])')
VIP=$("$BIN/dev" services -p benchdp -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["vip"])')
echo "pod $POD_IP, vip $VIP; $CONNS keep-alive connections, $DUR each"
"$BIN/httpload" -label "direct pod IP" -c "$CONNS" -d "$DUR" -url "http://$POD_IP:8080/"
"$BIN/httpload" -label "service VIP" -c "$CONNS" -d "$DUR" -url "http://$VIP:8080/"
"$BIN/httpload" -label "published port" -c "$CONNS" -d "$DUR" -url "http://127.0.0.1:18880/"
"$BIN/dev" down -p benchdp >/dev/null

go test -run '^$' -bench BenchmarkClusterQueryUDP -benchtime 3s ./dns/ | grep -E 'Benchmark|qps' || true

# 100 services of one pod each.
COMPOSE="$DATA/bench100.yaml"
{
	echo "name: bench100"
	echo "services:"
	for i in $(seq 1 100); do
		printf '  s%d:\n    image: dev-testapp:bench\n    command: ["sleep"]\n    expose: ["8080"]\n' "$i"
	done
} >"$COMPOSE"
t0=$(date +%s.%N)
"$BIN/dev" up -d -f "$COMPOSE" >/dev/null
t1=$(date +%s.%N)
sleep 3
echo "100 services / 100 pods up in $(echo "$t1 - $t0" | bc | xargs printf '%.1f')s; agent RSS: $(rss)"
