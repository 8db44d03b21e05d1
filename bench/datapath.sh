#!/usr/bin/env bash
# Data path: HTTP requests/s and p99 latency straight at one pod IP, through
# the service VIP and through the published port (kernel DNAT; on localhost
# and on the host's address), and, as the peer, the same image published by
# Docker itself (`docker run -p`: docker-proxy on localhost, iptables DNAT on
# the host's address); same load (bench/httpload, keep-alive connections),
# RUNS runs, each measuring every path in turn; cluster DNS queries/s; the agent's resident memory idle
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
	docker rm -f devbench-peer >/dev/null 2>&1 || true
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
# The host's own address (not loopback): a published port's other door.
HOST_IP=$(ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}')
# The peer: the same image published by Docker itself (docker-proxy for
# localhost, its iptables DNAT for the host's address).
docker rm -f devbench-peer >/dev/null 2>&1 || true
docker run -d --name devbench-peer -p 18881:8080 dev-testapp:bench serve >/dev/null
PEER_IP=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' devbench-peer)
for _ in $(seq 1 50); do "$BIN/httpload" -rps -c 1 -d 100ms -warmup 0 -url "http://127.0.0.1:18881/" >/dev/null 2>&1 && break; sleep 0.1; done
echo "pod $POD_IP, vip $VIP, host $HOST_IP, docker peer $PEER_IP; $CONNS keep-alive connections, $DUR per run, $RUNS runs"
paths=(
	"direct pod IP|http://$POD_IP:8080/"
	"service VIP|http://$VIP:8080/"
	"published port, localhost|http://127.0.0.1:18880/"
	"published port, host address|http://$HOST_IP:18880/"
	"docker -p: container IP|http://$PEER_IP:8080/"
	"docker -p: localhost (docker-proxy)|http://127.0.0.1:18881/"
	"docker -p: host address|http://$HOST_IP:18881/"
)
declare -A RPS P99
# Each run measures every path in turn, so that a slow moment of the
# machine does not fall on one path only.
for _ in $(seq 1 "$RUNS"); do
	for path in "${paths[@]}"; do
		label="${path%%|*}"; url="${path#*|}"
		read -r r p < <("$BIN/httpload" -rps -c "$CONNS" -d "$DUR" -url "$url")
		RPS[$label]+="$r "; P99[$label]+="$p "
	done
done
for path in "${paths[@]}"; do
	label="${path%%|*}"
	echo "$label: req/s ${RPS[$label]}; p99 µs ${P99[$label]}"
	tool=dev
	case "$label" in docker*) tool=docker ;; esac
	# shellcheck disable=SC2086
	"$BIN/record" -measure "datapath req/s" -case "$label" -tool "$tool" -unit req/s -higher ${RPS[$label]}
	# shellcheck disable=SC2086
	"$BIN/record" -measure "datapath p99" -case "$label" -tool "$tool" -unit µs ${P99[$label]}
done
docker rm -f devbench-peer >/dev/null 2>&1 || true
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
