"""Commands for chat bots, as the Rust SDK's `Commands` and Lua's `meow.commands` have them.

`/name args…` goes to a handler; `/help` is generated from the commands the sender may run;
roles come from the instance's configuration (`owner`, `admins`: names, comma-separated or a
list); `/ban` and `/unban` keep bans in the key-value store (capability `kv`); a rate limit per
contact says "slow down" once per window, then stays quiet.

    COMMANDS = (Commands()
        .command("ping", "", "answers pong", lambda msg, args: "pong")
        .admin("say", "<contact> <text>", "sends text to a contact", say)
        .bans()
        .rate_limit(10, 60_000))

    def init(self, config: str) -> None:
        COMMANDS.configure(config)

    def handle(self, event) -> None:
        if isinstance(event, types.Event_Message) and COMMANDS.handle(event.value):
            return
"""

import json

from wit_world.imports import kv, messaging, node

ANYONE, ADMIN, OWNER = 0, 1, 2


def _names(value) -> list:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [n.strip() for n in str(value or "").split(",") if n.strip()]


def _line(name: str, usage: str, help: str) -> str:
    return f"/{name} {usage} - {help}" if usage else f"/{name} - {help}"


class Commands:
    """A bot's commands: declare them, then hand every message to `handle`."""

    def __init__(self) -> None:
        self._commands = []
        self._owner = None
        self._admins = []
        self._limit = None
        self._bans = False
        self._windows = {}

    def configure(self, config: str) -> "Commands":
        """Takes the roles from the instance's configuration (the JSON `init` receives)."""
        try:
            values = json.loads(config) if config else {}
        except ValueError:
            values = {}
        owner = str(values.get("owner") or "").strip()
        self._owner = owner or None
        self._admins = _names(values.get("admins"))
        return self

    def _add(self, role: int, name: str, usage: str, help: str, handler) -> "Commands":
        self._commands.append((name, usage, help, role, handler))
        return self

    def command(self, name: str, usage: str, help: str, handler) -> "Commands":
        """A command anyone may run; `handler(msg, args)` returns the answer ("" for none)."""
        return self._add(ANYONE, name, usage, help, handler)

    def admin(self, name: str, usage: str, help: str, handler) -> "Commands":
        """A command for admins and the owner."""
        return self._add(ADMIN, name, usage, help, handler)

    def owner(self, name: str, usage: str, help: str, handler) -> "Commands":
        """A command for the owner alone."""
        return self._add(OWNER, name, usage, help, handler)

    def bans(self) -> "Commands":
        """Adds `/ban <contact>` and `/unban <contact>` for admins."""
        self._bans = True
        return self

    def rate_limit(self, count: int, window_ms: int) -> "Commands":
        """At most `count` commands per contact every `window_ms`."""
        self._limit = (count, window_ms)
        return self

    def role_of(self, contact: str) -> int:
        if contact == self._owner:
            return OWNER
        return ADMIN if contact in self._admins else ANYONE

    def help(self, role: int) -> str:
        """The `/help` text for a contact of `role`."""
        lines = ["commands:", "/help - this list"]
        lines += [_line(n, u, h) for (n, u, h, r, _) in self._commands if r <= role]
        if self._bans and role >= ADMIN:
            lines += [
                _line("ban", "<contact>", "ignore a contact's messages"),
                _line("unban", "<contact>", "hear a contact again"),
            ]
        return "\n".join(lines)

    def _admit(self, contact: str, now_ms: int):
        """True to go on, a text to say once, or None to stay quiet."""
        if self._limit is None:
            return True
        count, window_ms = self._limit
        self._windows = {c: w for c, w in self._windows.items() if now_ms - w[0] < window_ms}
        start, used, warned = self._windows.get(contact, (now_ms, 0, False))
        used += 1
        if used <= count:
            self._windows[contact] = (start, used, warned)
            return True
        self._windows[contact] = (start, used, True)
        if warned:
            return None
        secs = -(-(window_ms - (now_ms - start)) // 1000)
        return f"slow down: {count} commands per {window_ms // 1000} s; try again in {secs} s"

    def _answer(self, msg, role: int, text: str) -> str:
        words = text.strip()[1:].split()
        if not words:
            return ""
        name, args = words[0], words[1:]
        if name == "help":
            return self.help(role)
        if self._bans and name in ("ban", "unban"):
            if role < ADMIN:
                return f"/{name} is for admins"
            if len(args) != 1:
                return f"usage: /{name} <contact>"
            key = f"bans/{args[0]}"
            try:
                if name == "ban":
                    kv.set(key, b"1")
                    return f"{args[0]} is banned"
                kv.delete(key)
                return f"{args[0]} is heard again"
            except Exception as e:  # the host's error (no kv capability, a quota)
                return f"cannot {name}: {e}"
        for (n, _, _, needed, handler) in self._commands:
            if n == name:
                if role < needed:
                    return f"/{name} is for " + ("the owner" if needed == OWNER else "admins")
                return handler(msg, args) or ""
        return f"unknown command /{name}: /help lists them"

    def handle(self, msg) -> bool:
        """Answers `msg` if it is a command (a text starting with `/`), or says why not.
        Returns whether it was one (a banned contact's messages count as handled)."""
        if self._bans:
            try:
                if kv.get(f"bans/{msg.sender}") is not None:
                    return True
            except Exception:
                pass  # without the kv capability there are no bans (and /ban says why)
        text = (msg.text or "").lstrip()
        if not text.startswith("/"):
            return False
        verdict = self._admit(msg.sender, node.info().now)
        if verdict is True:
            answer = self._answer(msg, self.role_of(msg.sender), text)
        else:
            answer = verdict or ""
        if answer:
            messaging.reply(msg.id, answer)
        return True
