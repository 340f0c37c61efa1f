use super::*;
use crate::store::{Head, StoreError};
use rempart_core::BlockTimestamp;

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
    let v = read_route(&snap, "/v1/chain/get_info", json!({})).expect("get_info");
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
    let v = read_route(&snap, "/v1/chain/get_raw_abi", json!({"account_name": "eosio"}))
        .expect("get_raw_abi");
    assert_eq!(v["abi"], "AQIDBA==");
    let e = read_route(&snap, "/v1/chain/get_raw_abi", json!({"account_name": "nobody"}))
        .expect_err("unknown");
    assert_eq!(e.code, 3_060_002);
    let e = read_route(&snap, "/v1/chain/nope", json!({})).expect_err("unknown endpoint");
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
    let v = read_route(&snap, "/v1/chain/get_account", json!({"account_name": "eosio"}))
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
