use super::*;
use crate::store::{Head, StoreError, key};
use rempart_core::BlockTimestamp;
use rempart_core::{Checksum256, Name};

fn store_with_eosio(name: &str) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("rempart-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = Store::open(&dir.join("state.redb")).expect("open");
    store
        .write(|w| -> Result<(), StoreError> {
            w.set_genesis(&Checksum256([7; 32]), b"genesis")?;
            w.set_head(&Head {
                block_num: 3,
                block_id: Checksum256([3; 32]),
                timestamp: BlockTimestamp(2),
                producer: Name::from_const("eosio"),
                lib_num: 3,
                lib_id: Checksum256([3; 32]),
                schedule_version: 0,
            })?;
            w.put(&key::account(Name::from_const("eosio")), b"x")?;
            // 4 bytes of ABI: base64 needs padding.
            w.put(&key::abi(Name::from_const("eosio")), &[1, 2, 3, 4])
        })
        .expect("write");
    (store, dir)
}

#[test]
fn empty_body_is_an_empty_object_and_garbage_is_a_400() {
    assert_eq!(parse_body(b"").expect("empty"), json!({}));
    assert_eq!(parse_body(b"  \n").expect("blank"), json!({}));
    let e = parse_body(b"{nope").expect_err("not json");
    assert_eq!(e.status, 400);
    let body = e.body();
    assert_eq!(body["code"], 400);
    assert!(body["error"]["details"][0]["message"].as_str().expect("message").contains("JSON"));
}

#[test]
fn get_info_has_wharfkit_fields_and_no_z() {
    let (store, dir) = store_with_eosio("info");
    let snap = store.read().expect("read");
    let v =
        read_route(&snap, &Limits::default(), "/v1/chain/get_info", json!({})).expect("get_info");
    for f in [
        "server_version",
        "chain_id",
        "head_block_num",
        "last_irreversible_block_num",
        "last_irreversible_block_id",
        "head_block_id",
        "head_block_time",
        "head_block_producer",
        "virtual_block_cpu_limit",
        "virtual_block_net_limit",
        "block_cpu_limit",
        "block_net_limit",
    ] {
        assert!(!v[f].is_null(), "get_info lacks {f}");
    }
    assert_eq!(v["head_block_time"], "2000-01-01T00:00:01.000");
    drop(snap);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn raw_abi_is_padded_base64_and_unknown_account_is_nodeos_shaped() {
    let (store, dir) = store_with_eosio("abi");
    let snap = store.read().expect("read");
    let v = read_route(
        &snap,
        &Limits::default(),
        "/v1/chain/get_raw_abi",
        json!({"account_name": "eosio"}),
    )
    .expect("get_raw_abi");
    assert_eq!(v["abi"], "AQIDBA==");
    let e = read_route(
        &snap,
        &Limits::default(),
        "/v1/chain/get_raw_abi",
        json!({"account_name": "nobody"}),
    )
    .expect_err("unknown");
    assert_eq!(e.code, 3_060_002);
    let e = read_route(&snap, &Limits::default(), "/v1/chain/nope", json!({}))
        .expect_err("unknown endpoint");
    assert_eq!(e.status, 404);
    drop(snap);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn get_account_lists_permissions_in_nodeos_shape() {
    let dir = std::env::temp_dir().join(format!("rempart-api-acct-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = Store::open(&dir.join("state.redb")).expect("open");
    let genesis = crate::genesis::Genesis::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"),
    )
    .expect("genesis");
    store.write(|w| genesis.install(w, None)).expect("install");
    let snap = store.read().expect("read");
    let v = read_route(
        &snap,
        &Limits::default(),
        "/v1/chain/get_account",
        json!({"account_name": "eosio"}),
    )
    .expect("get_account");
    assert_eq!(v["privileged"], true);
    let perms = v["permissions"].as_array().expect("permissions");
    assert_eq!(perms.len(), 2);
    assert_eq!(perms[0]["perm_name"], "active");
    assert_eq!(perms[0]["parent"], "owner");
    assert_eq!(perms[1]["parent"], "");
    let key = &perms[1]["required_auth"]["keys"][0];
    assert_eq!(key["weight"], 1);
    assert!(
        key["key"].as_str().expect("key").starts_with("PUB_K1_")
            || key["key"].as_str().expect("key").starts_with("EOS")
    );
    assert_eq!(v["created"], "2024-01-01T00:00:00.000");
    drop(snap);
    let _ = std::fs::remove_dir_all(dir);
}

use super::fixture::{Fixture, eosio_action, newaccount, signed};
use rempart_core::transaction::Compression;

fn read(f: &Fixture, path: &str, body: Value) -> Result<Value, ApiError> {
    let snap = f.store.read().expect("read");
    read_route(&snap, &Limits::default(), path, body)
}

#[test]
fn get_block_by_number_and_id_shows_transactions_decoded() {
    let f = Fixture::new("block");
    f.push_block(&[]);
    let trx = signed(&f.chain_id, vec![newaccount("alice")], Compression::Zlib);
    let b = f.push_block(std::slice::from_ref(&trx));
    let by_num = read(&f, "/v1/chain/get_block", json!({"block_num_or_id": 2})).expect("by num");
    let id = b.id().to_string();
    let by_id = read(&f, "/v1/chain/get_block", json!({"block_num_or_id": id})).expect("by id");
    let by_str = read(&f, "/v1/chain/get_block", json!({"block_num_or_id": "2"})).expect("str");
    assert_eq!(by_num, by_id);
    assert_eq!(by_num, by_str);
    assert_eq!(by_num["id"], id);
    assert_eq!(by_num["block_num"], 2);
    assert_eq!(by_num["ref_block_prefix"], rempart_core::transaction::ref_block_prefix(&b.id()));
    assert!(!by_num["timestamp"].as_str().expect("timestamp").ends_with('Z'));
    let t = &by_num["transactions"][0];
    assert_eq!(t["status"], "executed");
    let trx_json = &t["trx"];
    assert_eq!(trx_json["compression"], "zlib");
    assert_eq!(trx_json["id"], trx.id(&Default::default()).expect("id").to_string());
    let act = &trx_json["transaction"]["actions"][0];
    assert_eq!(act["name"], "newaccount");
    assert_eq!(act["data"]["name"], "alice", "data decoded with the eosio ABI: {act}");
    assert!(act["hex_data"].as_str().expect("hex").len() > 10);
    let e = read(&f, "/v1/chain/get_block", json!({"block_num_or_id": 99})).expect_err("none");
    assert_eq!(e.code, 3_100_002);
    assert_eq!(e.body()["error"]["name"], "unknown_block_exception");
    let e = read(&f, "/v1/chain/get_block", json!({})).expect_err("no param");
    assert_eq!(e.status, 400);
}

#[test]
fn block_info_and_header_state_carry_what_eosjs_uses_for_tapos() {
    let f = Fixture::new("blockinfo");
    f.push_block(&[]);
    let b = f.push_block(&[]);
    let info = read(&f, "/v1/chain/get_block_info", json!({"block_num": 2})).expect("info");
    assert_eq!(info["block_num"], 2);
    assert_eq!(info["id"], b.id().to_string());
    assert_eq!(info["ref_block_num"], 2);
    assert!(info["producer_signature"].as_str().expect("sig").starts_with("SIG_K1_"));
    let hs = read(&f, "/v1/chain/get_block_header_state", json!({"block_num_or_id": 2}))
        .expect("header state");
    assert_eq!(hs["block_num"], 2);
    assert_eq!(hs["id"], b.id().to_string());
    assert_eq!(hs["header"]["timestamp"], info["timestamp"]);
    assert_eq!(hs["active_schedule"]["producers"][0]["producer_name"], "eosio");
    let gi = read(&f, "/v1/chain/get_info", json!({})).expect("get_info");
    assert_eq!(gi["head_block_num"], 2);
    assert_eq!(gi["last_irreversible_block_time"], info["timestamp"]);
}

#[test]
fn get_abi_and_abi_conversions_use_the_stored_abi() {
    let f = Fixture::new("abi");
    f.push_block(&[]);
    let v = read(&f, "/v1/chain/get_abi", json!({"account_name": "eosio"})).expect("get_abi");
    assert!(v["abi"]["version"].as_str().expect("version").starts_with("eosio::abi/1."));
    assert!(
        v["abi"]["actions"].as_array().expect("actions").iter().any(|a| a["name"] == "newaccount")
    );
    let args = json!({"account": "eosio", "code": "eosio.token", "type": "transfer", "requirement": "active"});
    let bin = read(
        &f,
        "/v1/chain/abi_json_to_bin",
        json!({"code": "eosio", "action": "linkauth", "args": args}),
    )
    .expect("json_to_bin");
    let binargs = bin["binargs"].as_str().expect("binargs").to_owned();
    let back = read(
        &f,
        "/v1/chain/abi_bin_to_json",
        json!({"code": "eosio", "action": "linkauth", "binargs": binargs}),
    )
    .expect("bin_to_json");
    assert_eq!(back["args"]["code"], "eosio.token");
    let e = read(
        &f,
        "/v1/chain/abi_json_to_bin",
        json!({"code": "eosio", "action": "linkauth", "args": {"account": "eosio"}}),
    )
    .expect_err("missing fields");
    assert_eq!(e.code, 3_015_014);
    let e = read(
        &f,
        "/v1/chain/abi_bin_to_json",
        json!({"code": "eosio", "action": "linkauth", "binargs": "00"}),
    )
    .expect_err("short");
    assert_eq!(e.code, 3_015_013);
    let e = read(&f, "/v1/chain/get_abi", json!({"account_name": "nobody"})).expect_err("acct");
    assert_eq!(e.code, 3_060_002);
}

#[test]
fn account_shows_linked_actions_and_resource_fields_wharfkit_decodes() {
    let f = Fixture::new("links");
    f.push_block(&[]);
    let eosio = Name::from_const("eosio");
    f.store
        .write(|w| {
            w.put(
                &key::link(eosio, Name::from_const("eosio.token"), Name::from_const("transfer")),
                &rempart_core::to_bytes(&Name::from_const("active")),
            )
        })
        .expect("link");
    let v = read(&f, "/v1/chain/get_account", json!({"account_name": "eosio"})).expect("acct");
    let active = &v["permissions"][0];
    assert_eq!(active["perm_name"], "active");
    assert_eq!(active["linked_actions"], json!([{"account": "eosio.token", "action": "transfer"}]));
    assert_eq!(v["permissions"][1]["linked_actions"], json!([]));
    for f in ["last_usage_update_time", "current_used", "max", "available", "used"] {
        assert!(!v["cpu_limit"][f].is_null(), "cpu_limit.{f}");
        assert!(!v["subjective_cpu_bill_limit"][f].is_null(), "subjective.{f}");
    }
    assert_eq!(v["total_resources"]["owner"], "eosio");
}

#[test]
fn required_keys_are_the_available_keys_that_satisfy_each_authorization() {
    let f = Fixture::new("keys");
    f.push_block(&[]);
    let dev = super::fixture::dev_key().public_key().to_string();
    let other = rempart_core::key::PrivateKey::generate(rempart_core::key::KeyType::K1)
        .public_key()
        .to_string();
    let act = newaccount("bob");
    let trx = json!({
        "expiration": "2024-01-01T00:10:00",
        "ref_block_num": 1,
        "ref_block_prefix": 2,
        "actions": [{
            "account": "eosio",
            "name": "newaccount",
            "authorization": [{"actor": "eosio", "permission": "active"}],
            "data": hex::encode(&act.data.0).to_uppercase(),
        }],
    });
    let v = read(
        &f,
        "/v1/chain/get_required_keys",
        json!({"transaction": trx, "available_keys": [other, dev]}),
    )
    .expect("required keys");
    let got: Vec<String> = serde_json::from_value(v["required_keys"].clone()).expect("keys");
    let want: rempart_core::key::PublicKey = dev.parse().expect("key");
    assert_eq!(got, vec![want.to_string()]);
    // Data given as JSON is serialized with the ABI first.
    let mut trx2 = trx.clone();
    trx2["actions"][0]["data"] = json!({"account": "eosio", "code": "eosio.token", "type": "transfer", "requirement": "active"});
    trx2["actions"][0]["name"] = json!("linkauth");
    read(&f, "/v1/chain/get_required_keys", json!({"transaction": trx2, "available_keys": [dev]}))
        .expect("json data");
    let e = read(
        &f,
        "/v1/chain/get_required_keys",
        json!({"transaction": trx, "available_keys": [other]}),
    )
    .expect_err("unsatisfied");
    assert_eq!(e.code, 3_090_003);
}

/// Writes token rows as the VM stores them: payer ‖ row.
fn token_fixture() -> Fixture {
    use rempart_core::{Asset, to_bytes};
    let f = Fixture::new("table");
    f.push_block(&[]);
    let token = Name::from_const("eosio.token");
    let abi = rempart_core::abi::eosio_token_abi().def().to_bin();
    let rec = crate::account::AccountRecord {
        name: token,
        creation_date: Default::default(),
        privileged: false,
        last_code_update: Default::default(),
    };
    f.store
        .write(|w| -> Result<(), StoreError> {
            w.put(&key::account(token), &to_bytes(&rec))?;
            w.put(&key::abi(token), &abi)?;
            for (i, owner) in ["alice", "bob", "carol", "dave", "erin"].iter().enumerate() {
                let owner: Name = owner.parse().expect("name");
                w.put(
                    &key::account(owner),
                    &to_bytes(&crate::account::AccountRecord { name: owner, ..rec.clone() }),
                )?;
                for (sym, amount) in [("SYS", 10_000 * (i as i64 + 1)), ("ABC", 5)] {
                    let a: Asset = format!("{}.{:04} {sym}", amount / 10_000, amount % 10_000)
                        .parse()
                        .expect("asset");
                    let v = crate::vm::encode_row(owner, &to_bytes(&a));
                    w.put(
                        &key::row(
                            token,
                            owner,
                            Name::from_const("accounts"),
                            a.symbol.code().value(),
                        ),
                        &v,
                    )?;
                }
                // Rows of a table scoped to eosio.token keyed 1..=5.
                let v = crate::vm::encode_row(token, &to_bytes(&(i as u64 + 1)));
                w.put(&key::row(token, token, Name::from_const("nums"), i as u64 + 1), &v)?;
            }
            let stat =
                json!({"supply": "15.0000 SYS", "max_supply": "1000.0000 SYS", "issuer": "eosio"});
            let bytes = rempart_core::abi::eosio_token_abi()
                .json_to_bin("currency_stats", &stat)
                .expect("stat");
            let v = crate::vm::encode_row(token, &bytes);
            let sys: rempart_core::asset::SymbolCode = "SYS".parse().expect("sym");
            w.put(&key::row(token, Name(sys.value()), Name::from_const("stat"), sys.value()), &v)
        })
        .expect("rows");
    f
}

#[test]
fn table_rows_json_hex_bounds_limit_and_reverse() {
    let f = token_fixture();
    let q = |extra: Value| {
        let mut body =
            json!({"code": "eosio.token", "scope": "alice", "table": "accounts", "json": true});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        read(&f, "/v1/chain/get_table_rows", body)
    };
    let v = q(json!({})).expect("rows");
    assert_eq!(v["rows"].as_array().expect("rows").len(), 2);
    assert_eq!(v["more"], false);
    assert!(v["rows"].as_array().expect("rows").iter().any(|r| r["balance"] == "1.0000 SYS"));
    let v = q(json!({"json": false, "show_payer": true, "limit": 1})).expect("hex");
    assert_eq!(v["rows"][0]["payer"], "alice");
    assert!(v["rows"][0]["data"].is_string());
    assert_eq!(v["more"], true);
    assert!(!v["next_key"].as_str().expect("next").is_empty());

    let nums = |extra: Value| {
        let mut body = json!({"code": "eosio.token", "scope": "eosio.token", "table": "nums"});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        read(&f, "/v1/chain/get_table_rows", body).expect("nums")
    };
    let all = nums(json!({"limit": 100}));
    assert_eq!(all["rows"].as_array().expect("rows").len(), 5);
    let v = nums(json!({"lower_bound": "2", "upper_bound": "4"}));
    assert_eq!(v["rows"].as_array().expect("rows").len(), 3, "upper bound inclusive: {v}");
    let v = nums(json!({"limit": 2}));
    assert_eq!((v["more"].clone(), v["next_key"].clone()), (json!(true), json!("3")));
    let v = nums(json!({"limit": 2, "lower_bound": v["next_key"].clone()}));
    assert_eq!(v["rows"].as_array().expect("rows").len(), 2);
    assert_eq!(v["next_key"], "5");
    let v = nums(json!({"limit": 2, "reverse": true}));
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows[0], all["rows"][4]);
    assert_eq!(rows[1], all["rows"][3]);
    assert_eq!((v["more"].clone(), v["next_key"].clone()), (json!(true), json!("3")));
    let e = q(json!({"index_position": 2})).expect_err("secondary");
    assert_eq!(e.code, 3_060_003);
    let e = q(json!({"table": "nope"})).expect_err("unknown table");
    assert_eq!(e.code, 3_060_003);
}

#[test]
fn currency_balance_and_stats_read_the_token_tables() {
    let f = token_fixture();
    let v = read(
        &f,
        "/v1/chain/get_currency_balance",
        json!({"code": "eosio.token", "account": "bob", "symbol": "SYS"}),
    )
    .expect("balance");
    assert_eq!(v, json!(["2.0000 SYS"]));
    let v = read(
        &f,
        "/v1/chain/get_currency_balance",
        json!({"code": "eosio.token", "account": "bob"}),
    )
    .expect("all balances");
    assert_eq!(v.as_array().expect("array").len(), 2);
    let v =
        read(&f, "/v1/chain/get_currency_stats", json!({"code": "eosio.token", "symbol": "SYS"}))
            .expect("stats");
    assert_eq!(v["SYS"]["max_supply"], "1000.0000 SYS");
}

#[test]
fn history_finds_transactions_and_actions_in_the_block_log() {
    let f = Fixture::new("history");
    f.push_block(&[]);
    let t1 = signed(&f.chain_id, vec![newaccount("alice")], Compression::None);
    let t2 = signed(
        &f.chain_id,
        vec![eosio_action(
            "linkauth",
            "alice",
            json!({"account": "alice", "code": "eosio.token", "type": "transfer", "requirement": "active"}),
        )],
        Compression::None,
    );
    f.push_block(std::slice::from_ref(&t1));
    f.push_block(std::slice::from_ref(&t2));
    let id = t2.id(&Default::default()).expect("id").to_string();
    let v = read(&f, "/v1/history/get_transaction", json!({"id": id})).expect("get_transaction");
    assert_eq!(v["block_num"], 3);
    assert_eq!(v["id"], id);
    assert_eq!(v["traces"][0]["act"]["name"], "linkauth");
    assert_eq!(v["trx"]["trx"]["actions"][0]["data"]["code"], "eosio.token");
    let e = read(&f, "/v1/history/get_transaction", json!({"id": "00".repeat(32)}))
        .expect_err("unknown");
    assert_eq!(e.code, 3_040_011);

    let v = read(&f, "/v1/history/get_actions", json!({"account_name": "eosio"})).expect("eosio");
    // Both native actions run on eosio.
    assert_eq!(v["actions"].as_array().expect("actions").len(), 2, "{v}");
    let v = read(
        &f,
        "/v1/history/get_actions",
        json!({"account_name": "alice", "pos": -1, "offset": -5}),
    )
    .expect("alice");
    assert_eq!(v["actions"].as_array().expect("actions").len(), 1);
    assert_eq!(v["actions"][0]["block_num"], 3);
}

fn ctx(f: &Fixture) -> Arc<ApiContext> {
    Arc::new(ApiContext::new(f.store.clone(), Limits::default(), None))
}

#[tokio::test]
async fn pushes_are_checked_locally_before_anything_is_forwarded() {
    let f = Fixture::new("push");
    f.push_block(&[]);
    let c = ctx(&f);
    let e = route(
        &c,
        "/v1/chain/push_transaction",
        json!({"signatures": [], "compression": 0, "packed_trx": "zz"}),
    )
    .await
    .expect_err("bad hex");
    assert_eq!(e.code, 3_010_010);
    let e = route(
        &c,
        "/v1/chain/push_transaction",
        json!({"signatures": [], "compression": 0, "packed_trx": "0102"}),
    )
    .await
    .expect_err("truncated");
    assert_eq!(e.code, 3_010_010);
    // A zlib bomb: 4 MiB of zeros deflate to a few KiB and are refused at the bound.
    let mut big = newaccount("bomb");
    big.data = rempart_core::Bytes(vec![0u8; 4 << 20]);
    let bomb = signed(&f.chain_id, vec![big], Compression::Zlib).packed_trx;
    assert!(bomb.0.len() < 64 * 1024, "deflated to {} bytes", bomb.0.len());
    let e = route(
        &c,
        "/v1/chain/send_transaction",
        json!({"signatures": [], "compression": "zlib", "packed_trx": hex::encode(&bomb.0)}),
    )
    .await
    .expect_err("bomb");
    assert_eq!(e.code, 3_040_001);
    let e = route(
        &c,
        "/v1/chain/push_transaction",
        json!({"signatures": [], "compression": 7, "packed_trx": ""}),
    )
    .await
    .expect_err("compression");
    assert_eq!(e.code, 3_010_010);
    // A good transaction on a node without a producer link: 503, nothing applied.
    let good = signed(&f.chain_id, vec![newaccount("carol")], Compression::None);
    let e = route(&c, "/v1/chain/push_transaction", serde_json::to_value(&good).expect("json"))
        .await
        .expect_err("no producer");
    assert_eq!(e.status, 503);
    let results = route(&c, "/v1/chain/push_transactions", json!([{"packed_trx": "00"}]))
        .await
        .expect("batch answers per transaction");
    assert_eq!(results[0]["processed"]["except"]["error"]["code"], 3_010_010);
}

#[test]
fn the_real_chain_genesis_block_and_info_are_served() {
    let dir = std::env::temp_dir().join(format!("rempart-api-real-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let store = Arc::new(Store::open(&dir.join("state.redb")).expect("store"));
    let genesis = crate::genesis::Genesis::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"),
    )
    .expect("genesis");
    let chain =
        crate::chain::Chain::open(store.clone(), &genesis, Limits::default()).expect("chain");
    let snap = store.read().expect("read");
    let limits = Limits::default();
    let info = read_route(&snap, &limits, "/v1/chain/get_info", json!({})).expect("info");
    assert_eq!(info["head_block_num"], 1);
    assert_eq!(info["chain_id"], genesis.chain_id().to_string());
    let b = read_route(&snap, &limits, "/v1/chain/get_block", json!({"block_num_or_id": 1}))
        .expect("genesis block");
    assert_eq!(b["block_num"], 1);
    assert_eq!(b["id"], info["head_block_id"]);
    let abi = read_route(&snap, &limits, "/v1/chain/get_raw_abi", json!({"account_name": "eosio"}))
        .expect("eosio abi");
    assert!(abi["abi"].as_str().is_some_and(|a| a.len() > 100), "genesis installs the eosio ABI");
    drop((snap, chain));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn get_actions_positions_follow_the_nodeos_history_plugin() {
    use super::history::action_range;
    // No actions: nothing, whatever the window.
    assert_eq!(action_range(None, -1, -20), None);
    assert_eq!(action_range(None, 0, 10), None);
    // 50 actions (0..=49): pos -1 is one past the last, so -20 gives the newest 20.
    assert_eq!(action_range(Some(49), -1, -20), Some((30, 49)));
    assert_eq!(action_range(Some(49), -1, -100), Some((0, 49)));
    // Both ends included, forward and back; clipped to what exists.
    assert_eq!(action_range(Some(49), 10, 5), Some((10, 15)));
    assert_eq!(action_range(Some(49), 10, -5), Some((5, 10)));
    assert_eq!(action_range(Some(49), 45, 10), Some((45, 49)));
    assert_eq!(action_range(Some(49), 3, 0), Some((3, 3)));
    assert_eq!(action_range(Some(49), 60, 5), None);
    assert_eq!(action_range(Some(49), -5, -5), None);
    // At most MAX_ACTIONS: the newest when reaching back, the oldest when going forward.
    let max = super::history::MAX_ACTIONS as u64;
    assert_eq!(action_range(Some(10_000), -1, -5000), Some((10_001 - max, 10_000)));
    assert_eq!(action_range(Some(10_000), 0, 5000), Some((0, max - 1)));
}
