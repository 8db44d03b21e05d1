#!/usr/bin/env bash
# Times `dev up -d` against `docker-compose up -d` on the hello example, on
# this machine's Docker Engine, from local images, RUNS times each, and
# prints every run and the median. Both tools wait for the same thing only
# approximately: `dev up -d` returns once every pod runs and is healthy;
# docker-compose 1.29 returns once containers are started (it has no --wait),
# so this script then polls until docker reports them healthy.
#
# docker-compose cannot run the file as is: two replicas of web cannot both
# publish host port 8080 (dev publishes through its node proxy instead), so
# both tools get a copy without `ports:`.
#
# Usage: bench/up-vs-compose.sh [RUNS]   (needs bin/dev: make build example-bins)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
DATA="$(mktemp -d /tmp/dev-bench.XXXX)"
WORK="$(mktemp -d /tmp/dev-bench-proj.XXXX)"
export DEV_DATA_DIR="$DATA"
AGENT_PID=""
cleanup() {
	./bin/dev down -p hellobench -f "$WORK/compose.yaml" >/dev/null 2>&1 || true
	docker-compose -p hellobenchdc -f "$WORK/compose.yaml" down -v >/dev/null 2>&1 || true
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
	docker volume rm hellobench_data >/dev/null 2>&1 || true
	rm -rf "$DATA" "$WORK"
}
trap cleanup EXIT

cp -r examples/hello/. "$WORK/"
sed -i '/^    ports:/,/^      - "8080:8080"/d' "$WORK/compose.yaml"

# Images first, so neither tool builds inside the timed runs.
./bin/dev agent --data-dir "$DATA" --raft-addr 127.0.0.1:17947 --network devbench --bridge devbench0 \
	--cluster-cidr 10.216.0.0/16 >"$DATA/agent.log" 2>&1 &
AGENT_PID=$!
export DEV_HOST="unix://$DATA/dev.sock"
for _ in $(seq 1 100); do ./bin/dev ps >/dev/null 2>&1 && break; sleep 0.1; done
./bin/dev up -d --build -p hellobench -f "$WORK/compose.yaml" >/dev/null
./bin/dev down -p hellobench -f "$WORK/compose.yaml" >/dev/null
docker tag hellobench-web hellobenchdc_web >/dev/null
docker tag hellobench-backend hellobenchdc_backend >/dev/null

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }

healthy_dc() {
	for _ in $(seq 1 600); do
		local n
		n=$(docker ps --filter label=com.docker.compose.project=hellobenchdc --filter health=healthy -q | wc -l)
		[ "$n" -ge 3 ] && return 0
		sleep 0.05
	done
	return 1
}

dev_times=(); dc_times=()
for i in $(seq 1 "$RUNS"); do
	t0=$(now); ./bin/dev up -d -p hellobench -f "$WORK/compose.yaml" >/dev/null; t1=$(now)
	dev_times+=("$(echo "$t1 - $t0" | bc)")
	./bin/dev down -p hellobench -f "$WORK/compose.yaml" >/dev/null

	t0=$(now); docker-compose -p hellobenchdc -f "$WORK/compose.yaml" up -d >/dev/null 2>&1; healthy_dc; t1=$(now)
	dc_times+=("$(echo "$t1 - $t0" | bc)")
	docker-compose -p hellobenchdc -f "$WORK/compose.yaml" down >/dev/null 2>&1
	echo "run $i: dev up -d ${dev_times[-1]}s   docker-compose up -d (+ wait healthy) ${dc_times[-1]}s"
done
echo "median over $RUNS runs: dev up -d $(printf '%s\n' "${dev_times[@]}" | median)s   docker-compose up -d $(printf '%s\n' "${dc_times[@]}" | median)s"
