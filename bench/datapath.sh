#!/usr/bin/env bash
# Data path: HTTP requests/s and p99 latency straight at one pod IP, through
# the service VIP (node proxy) and through the published port (node proxy on
# 0.0.0.0), same load (bench/httpload, keep-alive connections), same pod,
# RUNS times each; cluster DNS queries/s; the agent's resident memory idle
# and with 100 services / 200 pods (a node's /24 pod subnet holds at most
# 253 pods, so 300 do not fit on this one node). Figures are printed and appended as
# records to bench/out (see bench/results) for bench/report.
#
# Usage: bench/datapath.sh [--quick] [RUNS] [DURATION] [CONNS]   (root; a Docker Engine)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
RUNS="${1:-5}"
DUR="${2:-5s}"
CONNS="${3:-16}"
SERVICES=100
REPLICAS=2
if [ "$QUICK" = 1 ]; then RUNS=1; DUR=1s; SERVICES=5; REPLICAS=1; fi
DATA="$(mktemp -d /tmp/dev-bench-dp.XXXX)"
BIN="$DATA/bin"
mkdir -p "$BIN"
AGENT_PID=""
cleanup() {
	DEV_HOST="unix://$DATA/dev.sock" "$BIN/dev" down -p benchdp >/dev/null 2>&1 || true
	DEV_HOST="unix://$DATA/dev.sock" "$BIN/dev" down -p bench100 >/dev/null 2>&1 || true
	if [ -n "$AGENT_PID" ]; then kill "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; fi
	docker network rm devbench >/dev/null 2>&1 || true
	rm -rf "$DATA"
}
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$BIN/dev" ./cmd/dev
go build -o "$BIN/httpload" ./bench/httpload
go build -o "$BIN/record" ./bench/record
go run ./bench/mkimage dev-testapp:bench

"$BIN/dev" agent --data-dir "$DATA" --node-name devbench --advertise-addr 127.0.0.1 --raft-port 17948 --gossip-port 17949 --api-port 17950 \
	--network devbench --bridge devbench0 --cluster-cidr 10.217.0.0/16 --service-cidr 10.218.0.0/16 \
	--dns-addr 127.0.0.1:17953 >"$DATA/agent.log" 2>&1 &
AGENT_PID=$!
export DEV_HOST="unix://$DATA/dev.sock"
for _ in $(seq 1 100); do "$BIN/dev" ps >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$AGENT_PID/status"; }
sleep 2
IDLE=$(rss)
echo "agent RSS idle: $IDLE MB"
"$BIN/record" -measure memory -case "agent idle" -unit MB "$IDLE"

"$BIN/dev" up -d -f bench/testdata/datapath/compose.yaml >/dev/null
POD_IP=$("$BIN/dev" ps -p benchdp -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["ip"])')
VIP=$("$BIN/dev" services -p benchdp -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["vip"])')
echo "pod $POD_IP, vip $VIP; $CONNS keep-alive connections, $DUR per run, $RUNS runs"
for path in "direct pod IP|http://$POD_IP:8080/" "service VIP|http://$VIP:8080/" "published port|http://127.0.0.1:18880/"; do
	label="${path%%|*}"; url="${path#*|}"
	rps=(); p99=()
	for _ in $(seq 1 "$RUNS"); do
		read -r r p < <("$BIN/httpload" -rps -c "$CONNS" -d "$DUR" -url "$url")
		rps+=("$r"); p99+=("$p")
	done
	echo "$label: req/s ${rps[*]}; p99 µs ${p99[*]}"
	"$BIN/record" -measure "datapath req/s" -case "$label" -unit req/s -higher "${rps[@]}"
	"$BIN/record" -measure "datapath p99" -case "$label" -unit µs "${p99[@]}"
done
"$BIN/dev" down -p benchdp >/dev/null

BT=3s
[ "$QUICK" = 1 ] && BT=200ms
qps=()
for _ in $(seq 1 "$RUNS"); do
	q=$(go test -run '^$' -bench BenchmarkClusterQueryUDP -benchtime "$BT" ./dns/ | awk '/BenchmarkClusterQueryUDP/ {for (i=1;i<=NF;i++) if ($(i+1)=="qps") print $i}')
	qps+=("$q")
done
echo "cluster DNS qps: ${qps[*]}"
"$BIN/record" -measure dns -case "A queries, 100 services, 32 clients" -unit qps -higher "${qps[@]}"

# $SERVICES services of $REPLICAS pods each.
COMPOSE="$DATA/bench100.yaml"
{
	echo "name: bench100"
	echo "services:"
	for i in $(seq 1 "$SERVICES"); do
		printf '  s%d:\n    image: dev-testapp:bench\n    command: ["sleep"]\n    expose: ["8080"]\n    deploy:\n      replicas: %d\n' "$i" "$REPLICAS"
	done
} >"$COMPOSE"
t0=$(date +%s.%N)
"$BIN/dev" up -d --timeout 10m -f "$COMPOSE" >/dev/null
t1=$(date +%s.%N)
sleep 3
LOADED=$(rss)
echo "$SERVICES services / $((SERVICES * REPLICAS)) pods up in $(echo "$t1 - $t0" | bc | xargs printf '%.1f')s; agent RSS: $LOADED MB"
"$BIN/record" -measure memory -case "agent, $SERVICES services / $((SERVICES * REPLICAS)) pods" -unit MB "$LOADED"
