"""{{name}}: answers "hello" with a greeting and counts greetings per contact.

Built into a component by `meow plugin build` with componentize-py; the `wit_world` package is
generated from the meow:bot WIT at build time (`componentize-py -d wit -w bot bindings .` writes
it next to this file for your editor).
"""

import wit_world
from wit_world.imports import kv, log, messaging, types


def count(sender: str) -> int:
    key = f"greeted/{sender}"
    n = int((kv.get(key) or b"0").decode()) + 1
    kv.set(key, str(n).encode())
    return n


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        log.log(types.Level.INFO, "{{name}} ready")

    def handle(self, event: types.Event) -> None:
        if not isinstance(event, types.Event_Message):
            return
        msg = event.value
        if (msg.text or "").strip() != "hello":
            return
        messaging.reply(msg.id, f"hello {msg.sender}, from python (#{count(msg.sender)})")
