// {{name}}: answers "hello" with a greeting and counts greetings per contact; `/count` says how
// many, `/help` lists the commands (commands.js, the SDK's command helper).
// Built into a component by `meow plugin build` with componentize-js (StarlingMonkey), or with
// `--js-engine quickjs` by componentize-qjs. It targets meow:bot 0.2 (export `start`).

import { reply } from 'meow:bot/messaging@0.2.1';
import { get, set } from 'meow:bot/kv@0.2.1';
import { log } from 'meow:bot/log@0.2.1';
import { Commands } from './commands.js';

function greetings(sender) {
  const old = get(`greeted/${sender}`);
  return old === undefined ? 0 : Number(new TextDecoder().decode(old));
}

function count(sender) {
  const n = greetings(sender) + 1;
  set(`greeted/${sender}`, new TextEncoder().encode(String(n)));
  return n;
}

const commands = new Commands().command('count', '', 'how often you said hello',
  (msg) => `${msg.sender} said hello ${greetings(msg.sender)} times`);

export function start(config) {
  commands.configure(config);
  log('info', '{{name}} ready');
}

export function handle(event) {
  if (event.tag !== 'message') return;
  const msg = event.val;
  if (commands.handle(msg) || (msg.text ?? '').trim() !== 'hello') return;
  reply(msg.id, `hello ${msg.sender}, from js (#${count(msg.sender)})`);
}
