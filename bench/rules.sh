#!/usr/bin/env bash
# Kernel data path, rule programming: with 1,000 services x 10 endpoints (and
# one published port each) programmed, the time of one endpoint change (a pod
# unready or ready again -> the rule change in the kernel), its UDP conntrack
# flush (done right after), a full resync of the whole table (what a
# restarted agent does) and the Go heap the programmed state holds.
# Each run is one `go test -bench` in a network namespace of its own
# (unshare -n), the way the agent runs: no OS thread locked to a namespace.
#
# Usage: bench/rules.sh [--quick] [RUNS] [ITERATIONS]   (root)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
RUNS="${1:-5}"
ITER="${2:-20}"
if [ "$QUICK" = 1 ]; then RUNS=1; ITER=3; fi
TMP="$(mktemp -d /tmp/dev-bench-rules.XXXX)"
trap 'rm -rf "$TMP"' EXIT
go test -c -o "$TMP/proxy.test" ./proxy/
go build -o "$TMP/record" ./bench/record

change=(); worst=(); flush=(); full=(); heap=()
for _ in $(seq 1 "$RUNS"); do
	out=$(unshare -n env DEV_BENCH_OWN_NETNS=1 "$TMP/proxy.test" -test.run '^$' \
		-test.bench 'BenchmarkNFTables' -test.benchtime "${ITER}x")
	metric() { awk -v b="$1" -v m="$2" '$1 ~ b { for (i = 2; i < NF; i++) if ($(i+1) == m) print $i }' <<<"$out"; }
	change+=("$(metric EndpointChange ms/op)")
	worst+=("$(metric EndpointChange max-ms)")
	flush+=("$(metric EndpointChange flush-ms/op)")
	full+=("$(metric FullResync ms/op)")
	heap+=("$(metric FullResync MB-state)")
done
echo "one endpoint change (ms, mean of $ITER): ${change[*]}; slowest: ${worst[*]}; then its UDP flush: ${flush[*]}"
echo "full resync of the table (ms): ${full[*]}; programmed state: ${heap[*]} MB"
C="1,000 services x 10 endpoints"
"$TMP/record" -measure "rules: endpoint change" -case "$C, mean" -unit ms "${change[@]}"
"$TMP/record" -measure "rules: endpoint change" -case "$C, slowest of $ITER" -unit ms "${worst[@]}"
"$TMP/record" -measure "rules: endpoint change" -case "$C, UDP conntrack flush after it" -unit ms "${flush[@]}"
"$TMP/record" -measure "rules: full resync" -case "$C" -unit ms "${full[@]}"
"$TMP/record" -measure memory -case "programmed rules, $C" -unit MB "${heap[@]}"
