#!/usr/bin/env bash
# Chat bot example: a bot lists itself in the directory; a user finds it, starts a contact from
# its entry, and chats with its plugins. Run from anywhere: ./examples/chat-bot/run.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
cargo build --release -q -p meow-cli
meow="$repo/target/release/meow"
"$meow" plugin build plugins/echo plugins/responder plugins/directory-bot --out target/plugins >/dev/null
work="$(mktemp -d /tmp/meow-chatbot-XXXX)"
export MEOW_PASSWORD=example
trap 'kill "$bot_pid" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

MEOW_HOME="$work/bot" "$meow" -q init --name catbot --kdf-memory-mib 8 --kdf-passes 1 >/dev/null 2>&1
MEOW_HOME="$work/user" "$meow" -q init --name you --kdf-memory-mib 8 --kdf-passes 1 >/dev/null 2>&1
sed -e "s|PORT|$port|" -e "s|PLUGINS|$repo/target/plugins|" "$repo/examples/chat-bot/meow.yaml" > "$work/meow.yaml"
MEOW_HOME="$work/bot" "$meow" run --config "$work/meow.yaml" 2>"$work/bot.log" & bot_pid=$!
until [ -S "$work/bot/control.sock" ]; do kill -0 "$bot_pid" 2>/dev/null || { cat "$work/bot.log"; exit 1; }; sleep 0.1; done
until grep -q "directory entry published" "$work/bot.log"; do sleep 0.1; done

card=$(MEOW_HOME="$work/bot" "$meow" servers list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["card"])')
MEOW_HOME="$work/user" "$meow" servers add "$card" >/dev/null
echo "== the user searches the directory for 'cats'"
MEOW_HOME="$work/user" "$meow" directory search cats
entry=$(MEOW_HOME="$work/user" "$meow" directory search cats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["card"])')
MEOW_HOME="$work/user" "$meow" accept "$entry" --name catbot 2>/dev/null
echo "== the bot greets its new contact"
MEOW_HOME="$work/user" "$meow" inbox --wait 5
for command in help ping stats uptime; do
  echo "== you: $command"
  MEOW_HOME="$work/user" "$meow" send catbot "$command" 2>/dev/null
  sleep 1
  MEOW_HOME="$work/user" "$meow" inbox --wait 3
done
echo "(homes in $work, password \"$MEOW_PASSWORD\"; the bot's log: $work/bot.log)"
