// The token walkthrough of the end-to-end suite, with eosjs 22.1.0 through the gateway's TLS
// (NODE_EXTRA_CA_CERTS trusts the development CA; nothing else is trusted): create accounts,
// deploy eosio.token (setcode + setabi), create, issue and transfer, then read the balances.
// Run by tests/e2e.rs inside the edge namespace with NODE_PATH=tests/clients/node_modules;
// one JSON request on stdin ({url, eosio_wif, wasm_hex, abi_hex}), one JSON answer on stdout:
// each step's result or the client's error. It never signs with anything but the dev key.
'use strict';
const { JsonRpc, Api } = require('eosjs');
const { JsSignatureProvider } = require('eosjs/dist/eosjs-jssig');

function errorText(e) {
  if (e && e.json) return JSON.stringify(e.json);
  return String(e && e.stack ? e.stack : e);
}

async function until(what, f) {
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) { /* not there yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function main() {
  const req = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const out = {};
  const step = async (name, f) => {
    try {
      out[name] = { ok: JSON.parse(JSON.stringify(await f())) };
    } catch (e) {
      out[name] = { error: errorText(e) };
      throw e;
    }
  };
  const rpc = new JsonRpc(req.url, { fetch });
  const provider = new JsSignatureProvider([req.eosio_wif]);
  const key = (await provider.getAvailableKeys())[0];
  const api = new Api({ rpc, signatureProvider: provider,
    textDecoder: new TextDecoder(), textEncoder: new TextEncoder() });
  const opts = { blocksBehind: 3, expireSeconds: 60 };
  const auth = { threshold: 1, keys: [{ key, weight: 1 }], accounts: [], waits: [] };
  const act = (account, name, actor, data) =>
    ({ account, name, authorization: [{ actor, permission: 'active' }], data });
  // The gateway spreads reads over two api nodes, one of which may be a block behind: four
  // get_info in a row past `block` (round-robin sends them to both nodes) mean every node has it.
  const everyApiNodePast = (block) => until(`every api node past block ${block}`, async () => {
    for (let i = 0; i < 4; i += 1) {
      if ((await rpc.get_info()).head_block_num <= block) return null;
    }
    return block;
  });

  try {
    // eosjs takes the expiration from a block 3 behind the head: past the genesis block, whose
    // timestamp is the genesis time, not now.
    await step('get_info', () => until('head 6', async () => {
      const info = await rpc.get_info();
      return info.head_block_num >= 6 ? info : null;
    }));
    await step('newaccounts', () => api.transact({ actions: ['eosio.token', 'alice', 'bob'].map(
      (name) => act('eosio', 'newaccount', 'eosio',
        { creator: 'eosio', name, owner: auth, active: auth })) }, opts));
    await step('accounts_seen', () => until('bob', () => rpc.get_account('bob')));
    // Before eosjs fetches the token's raw ABI for `create`, every node must have the deploy.
    let deployBlock = 0;
    await step('deploy', async () => {
      const r = await api.transact({ actions: [
        act('eosio', 'setcode', 'eosio.token',
          { account: 'eosio.token', vmtype: 0, vmversion: 0, code: req.wasm_hex }),
        act('eosio', 'setabi', 'eosio.token', { account: 'eosio.token', abi: req.abi_hex }),
      ] }, opts);
      deployBlock = r.processed.block_num;
      return r;
    });
    await step('deploy_on_every_api_node', () => everyApiNodePast(deployBlock));
    await step('abi_seen', () => until('the token ABI', async () => {
      const r = await rpc.get_abi('eosio.token');
      return r.abi && r.abi.actions.some((a) => a.name === 'transfer') ? r.abi.version : null;
    }));
    await step('create', () => api.transact({ actions: [act('eosio.token', 'create',
      'eosio.token', { issuer: 'eosio.token', maximum_supply: '1000000.0000 SYS' })] }, opts));
    await step('issue', () => api.transact({ actions: [act('eosio.token', 'issue',
      'eosio.token', { to: 'eosio.token', quantity: '1000.0000 SYS', memo: 'e2e' })] }, opts));
    await step('transfer_to_alice', () => api.transact({ actions: [act('eosio.token',
      'transfer', 'eosio.token',
      { from: 'eosio.token', to: 'alice', quantity: '100.0000 SYS', memo: 'to alice' })] }, opts));
    let lastBlock = 0;
    await step('transfer_to_bob', async () => {
      const r = await api.transact({ actions: [act('eosio.token', 'transfer', 'alice',
        { from: 'alice', to: 'bob', quantity: '25.0000 SYS', memo: 'to bob' })] }, opts);
      lastBlock = r.processed.block_num;
      return r;
    });
    // The three reads run at once and may land on different api nodes: every node must have
    // the last transfer first, or one balance could come from before it.
    await step('transfers_on_every_api_node', () => everyApiNodePast(lastBlock));
    await step('balances', async () => {
      const [alice, bob, issuer] = await Promise.all(['alice', 'bob', 'eosio.token'].map(
        (a) => rpc.get_currency_balance('eosio.token', a, 'SYS')));
      return { alice, bob, issuer };
    });
  } catch (e) {
    out.failed = errorText(e);
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { process.stdout.write(JSON.stringify({ fatal: errorText(e) })); });
