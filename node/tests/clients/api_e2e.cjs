// End to end through a producer chain and an api node: eosjs and @wharfkit/session create
// accounts, turn a permission into a 2-of-3 multisig and use it, and a transaction signed by
// one key of three is refused. Run by node/tests/api_e2e.rs with
// NODE_PATH=tests/clients/node_modules; one JSON request on stdin ({url, chain_id, eosio_wif,
// keys: [3 WIFs]}), one JSON answer on stdout: each step's result or the client's error.
'use strict';
const { JsonRpc, Api } = require('eosjs');
const { JsSignatureProvider } = require('eosjs/dist/eosjs-jssig');
const { APIClient, PrivateKey, SignedTransaction } = require('@wharfkit/antelope');
const { Session } = require('@wharfkit/session');
const { WalletPluginPrivateKey } = require('@wharfkit/wallet-plugin-privatekey');

function errorText(e) {
  if (e && e.json) return JSON.stringify(e.json);
  if (e && e.response && e.response.json) return JSON.stringify(e.response.json);
  return String(e && e.stack ? e.stack : e);
}

async function step(out, name, f) {
  try {
    out[name] = { ok: JSON.parse(JSON.stringify(await f())) };
  } catch (e) {
    out[name] = { error: errorText(e) };
  }
}

const auth = (threshold, keys) => ({
  threshold, accounts: [], waits: [],
  keys: keys.slice().sort().map((key) => ({ key, weight: 1 })),
});

async function until(what, f) {
  const deadline = Date.now() + 20000;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) { /* not there yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main() {
  const req = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const out = {};
  const rpc = new JsonRpc(req.url, { fetch });
  const pubs = req.keys.map((k) => PrivateKey.from(k).toPublic().toLegacyString());
  const eosio = new JsSignatureProvider([req.eosio_wif]);
  const eosioPub = (await eosio.getAvailableKeys())[0];
  const api = (provider) => new Api({ rpc, signatureProvider: provider,
    textDecoder: new TextDecoder(), textEncoder: new TextEncoder() });
  const newaccount = (name, owner, active) => ({
    account: 'eosio', name: 'newaccount',
    authorization: [{ actor: 'eosio', permission: 'active' }],
    data: { creator: 'eosio', name, owner, active },
  });

  // eosjs: alice with the eosio key, then alice@active becomes 2-of-3.
  await step(out, 'eosjs_newaccount', () => api(eosio).transact(
    { actions: [newaccount('alice', auth(1, [eosioPub]), auth(1, [eosioPub]))] },
    { blocksBehind: 3, expireSeconds: 60 }));
  // A push answers once the producer applied it; the api node sees it with the next block.
  await step(out, 'alice_on_the_api_node', () => until('alice', () => rpc.get_account('alice')));
  await step(out, 'eosjs_multisig', () => api(eosio).transact({ actions: [{
    account: 'eosio', name: 'updateauth',
    authorization: [{ actor: 'alice', permission: 'owner' }],
    data: { account: 'alice', permission: 'active', parent: 'owner', auth: auth(2, pubs) },
  }] }, { blocksBehind: 3, expireSeconds: 60 }));
  await step(out, 'alice_is_multisig_on_the_api_node', () => until('alice 2-of-3', async () => {
    const a = await rpc.get_account('alice');
    const active = a.permissions.find((p) => p.perm_name === 'active');
    return active.required_auth.threshold === 2 ? a : null;
  }));
  const useActive = {
    account: 'eosio', name: 'updateauth',
    authorization: [{ actor: 'alice', permission: 'active' }],
    data: { account: 'alice', permission: 'trade', parent: 'active', auth: auth(1, [pubs[0]]) },
  };
  // One key of three: the chain refuses (our own authority provider skips get_required_keys).
  const oneKey = new JsSignatureProvider([req.keys[0]]);
  const lone = new Api({ rpc, signatureProvider: oneKey,
    authorityProvider: { getRequiredKeys: async () => [pubs[0]] },
    textDecoder: new TextDecoder(), textEncoder: new TextEncoder() });
  await step(out, 'eosjs_one_of_three_refused', async () => {
    try {
      await lone.transact({ actions: [useActive] }, { blocksBehind: 3, expireSeconds: 60 });
      return { accepted: true };
    } catch (e) {
      return { refused: e.json || String(e) };
    }
  });
  // Two keys of three: get_required_keys picks two and the chain accepts.
  const twoKeys = new JsSignatureProvider([req.keys[0], req.keys[1]]);
  await step(out, 'eosjs_two_of_three', () => api(twoKeys).transact({ actions: [useActive] },
    { blocksBehind: 3, expireSeconds: 60 }));
  await step(out, 'trade_exists_on_the_api_node', () => until('alice@trade', async () => {
    const a = await rpc.get_account('alice');
    return a.permissions.some((p) => p.perm_name === 'trade') ? a : null;
  }));
  await step(out, 'history_of_the_multisig_transaction', () => until('history', async () => {
    const r = await fetch(`${req.url}/v1/history/get_transaction`, { method: 'POST',
      body: JSON.stringify({ id: out.eosjs_two_of_three.ok.transaction_id }) });
    return r.ok ? r.json() : null;
  }));

  // wharfkit: bob created by eosio with a 2-of-3 active, then bob@active used with two
  // signatures: the session signs one, the second key signs the same digest.
  const chain = { id: req.chain_id, url: req.url };
  const eosioSession = new Session({ chain, actor: 'eosio', permission: 'active',
    walletPlugin: new WalletPluginPrivateKey(req.eosio_wif) });
  await step(out, 'wharfkit_newaccount', async () => (await eosioSession.transact({
    action: newaccount('bob', auth(1, [eosioPub]), auth(2, pubs)) })).response);
  await until('bob', () => rpc.get_account('bob'));
  const bobSession = new Session({ chain, actor: 'bob', permission: 'active',
    walletPlugin: new WalletPluginPrivateKey(req.keys[1]) });
  await step(out, 'wharfkit_two_of_three', async () => {
    const r = await bobSession.transact({ action: {
      account: 'eosio', name: 'linkauth',
      authorization: [{ actor: 'bob', permission: 'active' }],
      data: { account: 'bob', code: 'alice', type: 'transfer', requirement: 'active' },
    } }, { broadcast: false });
    const trx = r.resolved.transaction;
    const second = PrivateKey.from(req.keys[2]).signDigest(trx.signingDigest(req.chain_id));
    const signed = SignedTransaction.from({ ...trx, signatures: [...r.signatures, second] });
    const client = new APIClient({ url: req.url });
    return client.v1.chain.send_transaction(signed);
  });
  await step(out, 'bob_link_on_the_api_node', () => until('bob link', async () => {
    const a = await rpc.get_account('bob');
    const active = a.permissions.find((p) => p.perm_name === 'active');
    return active.linked_actions.length === 1 ? a : null;
  }));
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { process.stdout.write(JSON.stringify({ fatal: errorText(e) })); });
