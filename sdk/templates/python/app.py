"""{{name}}: answers "hello" with a greeting and counts greetings per contact; `/count` says
how many, `/help` lists the commands (meow_commands.py, the SDK's command helper).

Built into a component by `meow plugin build` with componentize-py; the `wit_world` package is
generated from the meow:bot WIT at build time (`componentize-py -d wit -w bot bindings .` writes
it next to this file for your editor).
"""

import wit_world
from wit_world.imports import kv, log, messaging, types

from meow_commands import Commands


def greetings(sender: str) -> int:
    return int((kv.get(f"greeted/{sender}") or b"0").decode())


def count(sender: str) -> int:
    n = greetings(sender) + 1
    kv.set(f"greeted/{sender}", str(n).encode())
    return n


COMMANDS = Commands().command(
    "count", "", "how often you said hello", lambda msg, args: f"{msg.sender} said hello {greetings(msg.sender)} times"
)


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        COMMANDS.configure(config)
        log.log(types.Level.INFO, "{{name}} ready")

    def handle(self, event: types.Event) -> None:
        if not isinstance(event, types.Event_Message):
            return
        msg = event.value
        if COMMANDS.handle(msg) or (msg.text or "").strip() != "hello":
            return
        messaging.reply(msg.id, f"hello {msg.sender}, from python (#{count(msg.sender)})")
