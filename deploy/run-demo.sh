#!/usr/bin/env bash
# run-demo.sh — what `make run` starts after the set-up: the Ministry-bus
# simulator (it declares the bus and sends downward traffic for Shanghai),
# the hub, and a few demo filings upward, so that a newcomer sees messages
# flow both ways. Ctrl-C stops everything it started.
#
# Variables: BIN (default bin/zhianhub), KEYS_DIR (var/keys), DEMO_PEERS_DIR
# (var/demo-peers), SIM_RATE (downward messages per second, default 0.5).
set -euo pipefail

BIN=${BIN:-bin/zhianhub}
KEYS_DIR=${KEYS_DIR:-var/keys}
DEMO_PEERS_DIR=${DEMO_PEERS_DIR:-var/demo-peers}
SIM_RATE=${SIM_RATE:-0.5}
HTTP_ADDR=${ZHIANHUB_HTTP_ADDR:-127.0.0.1:8080}
export ZHIANHUB_KEYS_DIR=$KEYS_DIR

pids=()
cleanup() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	echo "run-demo: stopped"
}
trap cleanup EXIT INT TERM

echo "run-demo: starting the Ministry-bus simulator (keys $DEMO_PEERS_DIR/000000000000, $SIM_RATE msg/s)"
"$BIN" sim mps --keys "$DEMO_PEERS_DIR/000000000000" --rate "$SIM_RATE" &
pids+=($!)

echo "run-demo: starting the hub on http://$HTTP_ADDR"
"$BIN" serve &
hub=$!
pids+=($hub)

# Wait until the hub is ready (the simulator declares the bus first).
ready() {
	if command -v curl >/dev/null; then
		curl -fsS "http://$HTTP_ADDR/readyz" >/dev/null 2>&1
	else
		(exec 3<>"/dev/tcp/${HTTP_ADDR%:*}/${HTTP_ADDR##*:}") 2>/dev/null
	fi
}
for _ in $(seq 1 60); do
	ready && break
	sleep 1
done
if ! ready; then
	echo "run-demo: the hub is not ready after 60 s; see its log above" >&2
	exit 1
fi
echo "run-demo: hub ready — health http://$HTTP_ADDR/healthz, metrics http://$HTTP_ADDR/metrics, API http://$HTTP_ADDR/api/v1/openapi.json"

# Demo filings upward: one fictitious person per run (fresh numbers), its
# control and a change of residence. The hub seals, publishes and resends
# them until the simulator's receipts arrive.
day=$(date +%Y%m%d)
serial=$(printf '%06d' $(((RANDOM << 15 | RANDOM) % 1000000)))
person="310104${day}${serial}"
control="310104${day}$(printf '%06d' $(((10#$serial + 500000) % 1000000)))"
demo=$(mktemp -d)
for f in deploy/demo/*.json; do
	sed -e "s/@PERSON@/$person/g" -e "s/@CONTROL@/$control/g" -e "s/@SERIAL@/${serial: -4}/g" "$f" >"$demo/$(basename "$f")"
done
for f in "$demo"/*.json; do
	kind=$(basename "$f" .json)
	kind=${kind#*-}
	echo "run-demo: filing $kind for demo person $person"
	"$BIN" file "$kind" "$f" || echo "run-demo: filing $kind refused (see above)"
	sleep 2
done
rm -rf "$demo"

echo "run-demo: traffic flows both ways; Ctrl-C to stop"
wait "$hub"
