// The token contract through the chain API, as the real clients use it: eosjs 22.1.0 creates
// the accounts, deploys node/contracts/token.wasm with setcode + setabi, creates, issues and
// transfers SYS, and reads the balances with get_table_rows and get_currency_balance; then
// @wharfkit/session transfers from alice to bob and @wharfkit/antelope reads bob's balance.
// Run by node/tests/api_token.rs with NODE_PATH=tests/clients/node_modules; one JSON request on
// stdin ({url, chain_id, eosio_wif, wasm_hex, abi_hex}), one JSON answer on stdout: each step's
// result or the client's error. It signs with the dev key only.
'use strict';
const { JsonRpc, Api } = require('eosjs');
const { JsSignatureProvider } = require('eosjs/dist/eosjs-jssig');
const { APIClient } = require('@wharfkit/antelope');
const { Session } = require('@wharfkit/session');
const { WalletPluginPrivateKey } = require('@wharfkit/wallet-plugin-privatekey');
const { errorText, step, until } = require('./steps.cjs');

// Every step's result so far; a fatal error reports them too, so a failed push says why.
const out = {};

async function main() {
  const req = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const rpc = new JsonRpc(req.url, { fetch });
  const eosio = new JsSignatureProvider([req.eosio_wif]);
  const pub = (await eosio.getAvailableKeys())[0];
  const api = new Api({ rpc, signatureProvider: eosio,
    textDecoder: new TextDecoder(), textEncoder: new TextEncoder() });
  const opts = { blocksBehind: 3, expireSeconds: 60 };
  const owned = { threshold: 1, keys: [{ key: pub, weight: 1 }], accounts: [], waits: [] };
  const act = (account, name, actor, data) =>
    ({ account, name, authorization: [{ actor, permission: 'active' }], data });
  const balance = (who) => rpc.get_currency_balance('eosio.token', who, 'SYS');

  // eosjs references the block 3 behind the head: wait until there is one.
  await until('five blocks', async () => (await rpc.get_info()).head_block_num >= 5);
  await step(out, 'eosjs_newaccounts', () => api.transact({ actions: ['eosio.token', 'alice', 'bob']
    .map((name) => act('eosio', 'newaccount', 'eosio',
      { creator: 'eosio', name, owner: owned, active: owned })) }, opts));
  await until('accounts', () => rpc.get_account('bob'));
  await step(out, 'eosjs_setcode_setabi', () => api.transact({ actions: [
    act('eosio', 'setcode', 'eosio.token',
      { account: 'eosio.token', vmtype: 0, vmversion: 0, code: req.wasm_hex }),
    act('eosio', 'setabi', 'eosio.token', { account: 'eosio.token', abi: req.abi_hex }),
  ] }, opts));
  await until('the token ABI', async () => (await rpc.get_abi('eosio.token')).abi);
  await step(out, 'eosjs_create', () => api.transact({ actions: [act('eosio.token', 'create',
    'eosio.token', { issuer: 'eosio.token', maximum_supply: '1000.0000 SYS' })] }, opts));
  await until('the SYS stats', () => rpc.get_currency_stats('eosio.token', 'SYS'));
  await step(out, 'eosjs_issue', () => api.transact({ actions: [act('eosio.token', 'issue',
    'eosio.token', { to: 'eosio.token', quantity: '100.0000 SYS', memo: '' })] }, opts));
  await until('the issue', async () => (await balance('eosio.token')).length === 1);
  await step(out, 'eosjs_transfer', () => api.transact({ actions: [act('eosio.token', 'transfer',
    'eosio.token', { from: 'eosio.token', to: 'alice', quantity: '10.0000 SYS', memo: 'eosjs' })] },
  opts));
  await step(out, 'eosjs_balance_alice', () => until('alice balance', async () => {
    const b = await balance('alice');
    return b.length === 1 ? b : null;
  }));
  await step(out, 'eosjs_rows_alice', () => rpc.get_table_rows(
    { code: 'eosio.token', scope: 'alice', table: 'accounts', json: true }));

  const session = new Session({ chain: { id: req.chain_id, url: req.url }, actor: 'alice',
    permission: 'active', walletPlugin: new WalletPluginPrivateKey(req.eosio_wif) });
  await step(out, 'wharfkit_transfer', async () => (await session.transact({ action: act(
    'eosio.token', 'transfer', 'alice',
    { from: 'alice', to: 'bob', quantity: '3.0000 SYS', memo: 'wharfkit' }) })).response);
  const client = new APIClient({ url: req.url });
  await step(out, 'wharfkit_balance_bob', () => until('bob balance', async () => {
    const b = await client.v1.chain.get_currency_balance('eosio.token', 'bob', 'SYS');
    return b.length === 1 ? b.map(String) : null;
  }));
  await step(out, 'wharfkit_rows_bob', () => client.v1.chain.get_table_rows(
    { code: 'eosio.token', scope: 'bob', table: 'accounts', json: true }));
  await step(out, 'eosjs_balances_after', async () => ({
    alice: await balance('alice'), bob: await balance('bob'), issuer: await balance('eosio.token'),
  }));
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ fatal: errorText(e), steps: out }));
});
