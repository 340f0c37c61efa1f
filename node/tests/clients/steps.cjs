// Shared by the client scripts under node/tests/clients: each step of a script records either
// its result or the client's error text, so the Rust side can say which call failed and why,
// and `until` polls a read until the api node shows what a push did (pushes answer once the
// pending block applied them; reads see them once the block is committed). Nothing here signs
// or talks to a node by itself.
'use strict';

function errorText(e) {
  if (e && e.json) return JSON.stringify(e.json);
  if (e && e.response && e.response.json) return JSON.stringify(e.response.json);
  if (e && e.error) return JSON.stringify(e.error);
  return String(e && e.stack ? e.stack : e);
}

async function step(out, name, f) {
  try {
    out[name] = { ok: JSON.parse(JSON.stringify(await f())) };
  } catch (e) {
    out[name] = { error: errorText(e) };
  }
}

async function until(what, f, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) { /* not there yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

module.exports = { errorText, step, until };
