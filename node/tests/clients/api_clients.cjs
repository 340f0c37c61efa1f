// Drives a running rempart-node chain API with the real clients: eosjs 22.1.0 (JsonRpc and
// Api.transact) and @wharfkit/antelope's APIClient plus @wharfkit/session. Run by
// node/tests/api_clients.rs with NODE_PATH=tests/clients/node_modules; reads one JSON request
// on stdin ({url, wif, chain_id}) and prints one JSON answer. Every step records either its
// result or the client's error message, so the Rust side can say which call failed and why.
'use strict';
const { JsonRpc, Api } = require('eosjs');
const { JsSignatureProvider } = require('eosjs/dist/eosjs-jssig');
const { APIClient } = require('@wharfkit/antelope');
const { Session } = require('@wharfkit/session');
const { WalletPluginPrivateKey } = require('@wharfkit/wallet-plugin-privatekey');

function errorText(e) {
  if (e && e.json) return JSON.stringify(e.json);
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

async function main() {
  const req = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const out = {};
  const rpc = new JsonRpc(req.url, { fetch });
  await step(out, 'eosjs_get_info', () => rpc.get_info());
  await step(out, 'eosjs_get_block', () => rpc.get_block(2));
  await step(out, 'eosjs_get_block_info', () => rpc.get_block_info(2));
  await step(out, 'eosjs_get_block_header_state', () => rpc.get_block_header_state(2));
  await step(out, 'eosjs_get_abi', () => rpc.get_abi('eosio'));
  await step(out, 'eosjs_get_raw_abi', () => rpc.getRawAbi('eosio'));
  await step(out, 'eosjs_get_account', () => rpc.get_account('eosio'));
  await step(out, 'eosjs_get_table_rows', () =>
    rpc.get_table_rows({ code: 'eosio.token', scope: 'alice', table: 'accounts', json: true }));
  await step(out, 'eosjs_get_currency_balance', () =>
    rpc.get_currency_balance('eosio.token', 'alice', 'SYS'));
  const provider = new JsSignatureProvider([req.wif]);
  const api = new Api({ rpc, signatureProvider: provider,
    textDecoder: new TextDecoder(), textEncoder: new TextEncoder() });
  const newaccount = (creator, name, key) => ({
    account: 'eosio', name: 'newaccount',
    authorization: [{ actor: creator, permission: 'active' }],
    data: { creator, name,
      owner: { threshold: 1, keys: [{ key, weight: 1 }], accounts: [], waits: [] },
      active: { threshold: 1, keys: [{ key, weight: 1 }], accounts: [], waits: [] } },
  });
  const pub = (await provider.getAvailableKeys())[0];
  await step(out, 'eosjs_get_required_keys', () => rpc.getRequiredKeys({
    transaction: { expiration: '2030-01-01T00:00:00', ref_block_num: 1, ref_block_prefix: 2,
      actions: [{ account: 'eosio', name: 'linkauth',
        authorization: [{ actor: 'eosio', permission: 'active' }],
        data: '0000000000EA3055' + '00A6823403EA3055' + '000000572D3CCDCD' + '00000000A8ED3232' }] },
    availableKeys: [pub],
  }));
  await step(out, 'eosjs_transact', () => api.transact(
    { actions: [newaccount('eosio', 'eosjsuser', pub)] },
    { blocksBehind: 3, expireSeconds: 30 }));

  const client = new APIClient({ url: req.url });
  await step(out, 'wharfkit_get_info', () => client.v1.chain.get_info());
  await step(out, 'wharfkit_get_block', () => client.v1.chain.get_block(2));
  await step(out, 'wharfkit_get_block_info', () => client.v1.chain.get_block_info(2));
  await step(out, 'wharfkit_get_account', () => client.v1.chain.get_account('eosio'));
  await step(out, 'wharfkit_get_raw_abi', () => client.v1.chain.get_raw_abi('eosio'));
  await step(out, 'wharfkit_get_table_rows', () => client.v1.chain.get_table_rows({
    code: 'eosio.token', scope: 'alice', table: 'accounts' }));
  const session = new Session({
    chain: { id: req.chain_id, url: req.url },
    actor: 'eosio', permission: 'active',
    walletPlugin: new WalletPluginPrivateKey(req.wif),
  });
  await step(out, 'wharfkit_session_transact', async () => {
    const r = await session.transact({ action: newaccount('eosio', 'wharfuser', pub) });
    return r.response;
  });
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { process.stdout.write(JSON.stringify({ fatal: errorText(e) })); });
