#!/usr/bin/env bash
# run-demo.sh — what `make run` starts after the set-up: the Ministry-bus
# simulator (it declares the bus and sends downward traffic for Shanghai),
# the city-bus simulator (dispatch orders down, receipts for feedback), the
# hub, a few demo filings upward and a demo dispatch order answered with
# feedback, so that a newcomer sees messages flow both ways on both buses.
# Ctrl-C stops everything it started.
#
# Variables: BIN (default bin/zhianhub), KEYS_DIR (var/keys), DEMO_PEERS_DIR
# (var/demo-peers), SIM_RATE (downward messages per second, default 0.5),
# CITY_RATE (dispatch orders per second, default 0.05).
set -euo pipefail

BIN=${BIN:-bin/zhianhub}
KEYS_DIR=${KEYS_DIR:-var/keys}
DEMO_PEERS_DIR=${DEMO_PEERS_DIR:-var/demo-peers}
SIM_RATE=${SIM_RATE:-0.5}
CITY_RATE=${CITY_RATE:-0.05}
CITY_CONTROL=${CITY_CONTROL:-127.0.0.1:8092}
HTTP_ADDR=${ZHIANHUB_HTTP_ADDR:-127.0.0.1:8080}
export ZHIANHUB_KEYS_DIR=$KEYS_DIR
export ZHIANHUB_CITY_BUS_ENABLED=${ZHIANHUB_CITY_BUS_ENABLED:-true}

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

echo "run-demo: starting the city-bus simulator (keys $DEMO_PEERS_DIR/310000000001, $CITY_RATE orders/s, control http://$CITY_CONTROL)"
"$BIN" sim city --keys "$DEMO_PEERS_DIR/310000000001" --rate "$CITY_RATE" --control "$CITY_CONTROL" &
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

# A demo dispatch order from the city bureau to two units, and each unit's
# feedback through the API (the development identity): two feedback.dispatch
# messages go to the city bureau and come back with receipts.
if command -v curl >/dev/null; then
	order=$(curl -fsS -X POST "http://$CITY_CONTROL/send" -d '{"title":"演示：外滩区域加强巡逻","targetUnits":["310101000000","310104000000"]}' |
		sed -n 's/.*"orderNo":"\([0-9]*\)".*/\1/p')
	echo "run-demo: the city bureau sent dispatch order $order to 310101000000 and 310104000000"
	sleep 3
	for unit in 310101000000 310104000000; do
		echo "run-demo: unit $unit reports its feedback on $order"
		curl -fsS -X POST "http://$HTTP_ADDR/api/v1/dispatch/orders/$order/feedback" \
			-H "X-Dev-User: demo-$unit" -H "X-Dev-Unit: $unit" -H "X-Dev-Roles: officer" \
			-H 'Content-Type: application/json' \
			-d '{"officer":"123456","result":"done","detail":"已到场处置完毕（演示）。"}' || echo "run-demo: feedback refused (see above)"
		echo
	done
	echo "run-demo: the city simulator's receipts: curl http://$CITY_CONTROL/stats ; feedback: curl http://$CITY_CONTROL/feedback"
fi

echo "run-demo: traffic flows both ways; Ctrl-C to stop"
wait "$hub"
