#!/usr/bin/env bash
# IoT sensor example: a sensor reports temperatures to a hub; the hub's sensor-alert recipe tells
# the owner when it gets hot. Run from anywhere: ./examples/iot-sensor/run.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
cargo build --release -q -p meow-cli
meow="$repo/target/release/meow"
work="$(mktemp -d /tmp/meow-iot-XXXX)"
export MEOW_PASSWORD=example
trap 'kill "$hub_pid" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

for who in hub sensor owner; do
  MEOW_HOME="$work/$who" "$meow" -q init --name "$who" --kdf-memory-mib 8 --kdf-passes 1 >/dev/null 2>&1
done

# 1. The hub runs with its embedded server; the sensor and the owner become its contacts.
printf 'version: 1\nserver:\n  listen: 127.0.0.1:%s\npoll_wait: 1s\n' "$port" > "$work/meow.yaml"
MEOW_HOME="$work/hub" "$meow" -q run --config "$work/meow.yaml" 2>"$work/hub.log" & hub_pid=$!
until [ -S "$work/hub/control.sock" ]; do kill -0 "$hub_pid" 2>/dev/null || { cat "$work/hub.log"; exit 1; }; sleep 0.1; done
card=$(MEOW_HOME="$work/hub" "$meow" servers list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["card"])')
for who in sensor owner; do
  MEOW_HOME="$work/$who" "$meow" servers add "$card" >/dev/null
  MEOW_HOME="$work/hub" "$meow" invite "$who" --out "$work/$who.meowcard" 2>/dev/null >/dev/null
  MEOW_HOME="$work/$who" "$meow" accept "$work/$who.meowcard" --name hub 2>/dev/null >/dev/null
done
both='import json,sys; c=json.load(sys.stdin)["contacts"]; sys.exit(0 if {"sensor","owner"} <= {x["name"] for x in c} else 1)'
until MEOW_HOME="$work/hub" "$meow" contacts --json | python3 -c "$both"; do sleep 0.2; done
kill "$hub_pid"; wait "$hub_pid" || true

# 2. Restart the hub with the alert recipe (it names the contacts, so they come first).
printf 'recipes: [%s/recipes/sensor-alert.yaml]\n' "$repo" >> "$work/meow.yaml"
MEOW_HOME="$work/hub" "$meow" run --config "$work/meow.yaml" 2>"$work/hub.log" & hub_pid=$!
until [ -S "$work/hub/control.sock" ]; do kill -0 "$hub_pid" 2>/dev/null || { cat "$work/hub.log"; exit 1; }; sleep 0.1; done

# 3. Twelve readings, one a second; readings 4 to 7 are over 30 °C.
echo "== the sensor reports (compact JSON, one 176-byte envelope each)"
MEOW_HOME="$work/sensor" "$meow" sensor --to hub --every 1s --count 12 --hot-at 4
sleep 1
echo "== what the owner received"
MEOW_HOME="$work/owner" "$meow" inbox --wait 3
echo "== the recipe's trace"
MEOW_HOME="$work/hub" "$meow" recipe trace sensor-alert
echo "(homes in $work, password \"$MEOW_PASSWORD\")"
