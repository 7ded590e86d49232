// {{name}}: answers "hello" with a greeting and counts greetings per contact.
// Built into a component by `meow plugin build` with componentize-js (StarlingMonkey), or with
// `--js-engine quickjs` by componentize-qjs. It targets meow:bot 0.2 (export `start`).

import { reply } from 'meow:bot/messaging@0.2.1';
import { get, set } from 'meow:bot/kv@0.2.1';
import { log } from 'meow:bot/log@0.2.1';

function count(sender) {
  const key = `greeted/${sender}`;
  const old = get(key);
  const n = (old === undefined ? 0 : Number(new TextDecoder().decode(old))) + 1;
  set(key, new TextEncoder().encode(String(n)));
  return n;
}

export function start(config) {
  log('info', '{{name}} ready');
}

export function handle(event) {
  if (event.tag !== 'message') return;
  const msg = event.val;
  if ((msg.text ?? '').trim() !== 'hello') return;
  reply(msg.id, `hello ${msg.sender}, from js (#${count(msg.sender)})`);
}
