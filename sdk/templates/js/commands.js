// Commands for chat bots, as the Rust SDK's `Commands`, Lua's `meow.commands` and Python's
// meow_commands.py have them: `/name args…` goes to a handler, `/help` is generated from the
// commands the sender may run, roles come from the instance's configuration (`owner`,
// `admins`), `/ban` and `/unban` keep bans in the key-value store (capability `kv`), and a rate
// limit per contact says "slow down" once per window.
//
//   const commands = new Commands()
//     .command('ping', '', 'answers pong', (msg, args) => 'pong')
//     .bans()
//     .rateLimit(10, 60000);
//   export function start(config) { commands.configure(config); }
//   export function handle(event) { if (event.tag === 'message' && commands.handle(event.val)) return; … }

import { reply } from 'meow:bot/messaging@0.2.1';
import { get, set, delete as remove } from 'meow:bot/kv@0.2.1';
import { info } from 'meow:bot/node@0.2.1';

const ANYONE = 0, ADMIN = 1, OWNER = 2;

const names = (v) => (Array.isArray(v) ? v : String(v ?? '').split(','))
  .map((n) => String(n).trim()).filter((n) => n);
const line = (name, usage, help) => (usage ? `/${name} ${usage} - ${help}` : `/${name} - ${help}`);

export class Commands {
  constructor() {
    this.commands = [];
    this.owner = null;
    this.admins = [];
    this.limit = null;
    this.withBans = false;
    this.windows = new Map();
  }

  /** Takes the roles from the instance's configuration (the JSON `start` receives). */
  configure(config) {
    let values = {};
    try { values = JSON.parse(config || '{}'); } catch (e) { values = {}; }
    this.owner = String(values.owner ?? '').trim() || null;
    this.admins = names(values.admins);
    return this;
  }

  add(role, name, usage, help, handler) {
    this.commands.push({ role, name, usage, help, handler });
    return this;
  }
  /** A command anyone may run; `handler(msg, args)` returns the answer ('' for none). */
  command(name, usage, help, handler) { return this.add(ANYONE, name, usage, help, handler); }
  /** A command for admins and the owner. */
  admin(name, usage, help, handler) { return this.add(ADMIN, name, usage, help, handler); }
  /** A command for the owner alone. */
  ownerOnly(name, usage, help, handler) { return this.add(OWNER, name, usage, help, handler); }
  /** Adds `/ban <contact>` and `/unban <contact>` for admins. */
  bans() { this.withBans = true; return this; }
  /** At most `count` commands per contact every `windowMs`. */
  rateLimit(count, windowMs) { this.limit = { count, windowMs }; return this; }

  roleOf(contact) {
    if (contact === this.owner) return OWNER;
    return this.admins.includes(contact) ? ADMIN : ANYONE;
  }

  /** The `/help` text for a contact of `role`. */
  help(role) {
    const lines = ['commands:', '/help - this list'];
    for (const c of this.commands) if (c.role <= role) lines.push(line(c.name, c.usage, c.help));
    if (this.withBans && role >= ADMIN) {
      lines.push(line('ban', '<contact>', "ignore a contact's messages"), line('unban', '<contact>', 'hear a contact again'));
    }
    return lines.join('\n');
  }

  /** true to go on, a text to say once, or null to stay quiet. */
  admit(contact, now) {
    if (!this.limit) return true;
    const { count, windowMs } = this.limit;
    for (const [c, w] of this.windows) if (now - w.start >= windowMs) this.windows.delete(c);
    const w = this.windows.get(contact) ?? { start: now, used: 0, warned: false };
    w.used += 1;
    this.windows.set(contact, w);
    if (w.used <= count) return true;
    if (w.warned) return null;
    w.warned = true;
    const secs = Math.ceil((windowMs - (now - w.start)) / 1000);
    return `slow down: ${count} commands per ${Math.floor(windowMs / 1000)} s; try again in ${secs} s`;
  }

  answer(msg, role, text) {
    const [name, ...args] = text.trim().slice(1).split(/\s+/).filter((w) => w);
    if (!name) return '';
    if (name === 'help') return this.help(role);
    if (this.withBans && (name === 'ban' || name === 'unban')) {
      if (role < ADMIN) return `/${name} is for admins`;
      if (args.length !== 1) return `usage: /${name} <contact>`;
      try {
        if (name === 'ban') { set(`bans/${args[0]}`, new TextEncoder().encode('1')); return `${args[0]} is banned`; }
        remove(`bans/${args[0]}`);
        return `${args[0]} is heard again`;
      } catch (e) {
        return `cannot ${name}: ${e}`;
      }
    }
    const c = this.commands.find((c) => c.name === name);
    if (!c) return `unknown command /${name}: /help lists them`;
    if (role < c.role) return `/${name} is for ${c.role === OWNER ? 'the owner' : 'admins'}`;
    return c.handler(msg, args) || '';
  }

  /** Answers `msg` if it is a command (a text starting with `/`), or says why not; returns
   *  whether it was one (a banned contact's messages count as handled). */
  handle(msg) {
    if (this.withBans) {
      let banned = false;
      try { banned = get(`bans/${msg.sender}`) !== undefined; } catch (e) { banned = false; } // no kv: no bans
      if (banned) return true;
    }
    const text = (msg.text ?? '').trimStart();
    if (!text.startsWith('/')) return false;
    const verdict = this.admit(msg.sender, Number(info().now));
    const said = verdict === true ? this.answer(msg, this.roleOf(msg.sender), text) : (verdict ?? '');
    if (said) reply(msg.id, said);
    return true;
  }
}
