use serde_json::{Value, json};

use crate::abi::{Abi, AbiError, MAX_DEPTH, eosio_system_abi, eosio_token_abi};
use crate::checksum::Checksum256;
use crate::codec::{DecodeError, to_bytes};
use crate::key::{PrivateKey, PublicKey};
use crate::name::Name;

/// An ABI exercising bases, aliases, optionals, vectors, variants and binary extensions.
fn test_abi() -> Abi {
    Abi::from_json(
        &json!({
            "version": "eosio::abi/1.2",
            "types": [
                {"new_type_name": "account_name", "type": "name"},
                {"new_type_name": "int8s", "type": "int8[]"}
            ],
            "structs": [
                {"name": "base", "base": "", "fields": [{"name": "a", "type": "uint8"}]},
                {"name": "derived", "base": "base", "fields": [
                    {"name": "b", "type": "account_name"}, {"name": "c", "type": "string?"}]},
                {"name": "ext", "base": "", "fields": [
                    {"name": "x", "type": "uint8"}, {"name": "y", "type": "uint16$"},
                    {"name": "z", "type": "string$"}]},
                {"name": "holder", "base": "", "fields": [
                    {"name": "inner", "type": "ext"}, {"name": "n", "type": "uint8"}]},
                {"name": "tail", "base": "", "fields": [
                    {"name": "n", "type": "uint8"}, {"name": "inner", "type": "ext"}]},
                {"name": "list", "base": "", "fields": [{"name": "items", "type": "ext[]"}]},
                {"name": "nested", "base": "", "fields": [
                    {"name": "v", "type": "int8s[]"}, {"name": "o", "type": "int8s?"},
                    {"name": "pick", "type": "choice"}, {"name": "picks", "type": "choice[]"}]},
                {"name": "node", "base": "", "fields": [
                    {"name": "value", "type": "uint8"}, {"name": "next", "type": "node?"}]},
                {"name": "tree", "base": "", "fields": [{"name": "children", "type": "tree[]"}]},
                {"name": "empty", "base": "", "fields": []}
            ],
            "variants": [{"name": "choice", "types": ["uint8", "string", "derived"]}],
            "actions": [{"name": "doit", "type": "derived", "ricardian_contract": ""}]
        })
        .to_string(),
    )
    .unwrap()
}

/// Encodes, checks the hex, decodes and checks the JSON comes back as `back`.
#[track_caller]
fn round(abi: &Abi, ty: &str, input: Value, hex: &str, back: Value) {
    let bin = abi.json_to_bin(ty, &input).unwrap_or_else(|e| panic!("{ty} {input}: {e}"));
    assert_eq!(hex::encode(&bin), hex, "{ty} {input}");
    let out = abi.bin_to_json(ty, &bin).unwrap_or_else(|e| panic!("{ty} {hex}: {e}"));
    assert_eq!(out, back, "{ty} {hex}");
}

/// Round trip where the JSON comes back unchanged.
#[track_caller]
fn same(abi: &Abi, ty: &str, input: Value, hex: &str) {
    round(abi, ty, input.clone(), hex, input);
}

#[track_caller]
fn enc_err(abi: &Abi, ty: &str, input: Value) -> String {
    match abi.json_to_bin(ty, &input) {
        Ok(bin) => panic!("{ty} {input} must be refused, got {}", hex::encode(bin)),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn dec_err(abi: &Abi, ty: &str, hex: &str) -> AbiError {
    match abi.bin_to_json(ty, &hex::decode(hex).unwrap()) {
        Ok(v) => panic!("{ty} {hex} must be refused, got {v}"),
        Err(e) => e,
    }
}

#[test]
fn integers_at_their_edges() {
    let abi = test_abi();
    same(&abi, "bool", json!(true), "01");
    same(&abi, "bool", json!(false), "00");
    round(&abi, "bool", json!(1), "01", json!(true));
    round(&abi, "bool", json!("false"), "00", json!(false));
    enc_err(&abi, "bool", json!(2));
    assert!(matches!(dec_err(&abi, "bool", "02"), AbiError::Decode { .. }));

    same(&abi, "int8", json!(-128), "80");
    same(&abi, "int8", json!(127), "7f");
    round(&abi, "int8", json!("-5"), "fb", json!(-5));
    same(&abi, "uint8", json!(255), "ff");
    same(&abi, "int16", json!(-2), "feff");
    same(&abi, "uint16", json!(65535), "ffff");
    same(&abi, "int32", json!(i32::MIN), "00000080");
    same(&abi, "uint32", json!(u32::MAX), "ffffffff");
    round(&abi, "uint32", json!(7.0), "07000000", json!(7));

    // 64-bit: numbers within ±0xffffffff, strings beyond.
    same(&abi, "int64", json!("-9223372036854775808"), "0000000000000080");
    same(&abi, "int64", json!("9223372036854775807"), "ffffffffffffff7f");
    round(&abi, "int64", json!(i64::MIN), "0000000000000080", json!("-9223372036854775808"));
    same(&abi, "int64", json!(-4294967295i64), "01000000ffffffff");
    same(&abi, "int64", json!("-4294967296"), "00000000ffffffff");
    same(&abi, "int64", json!(4294967295u32), "ffffffff00000000");
    same(&abi, "int64", json!("4294967296"), "0000000001000000");
    same(&abi, "uint64", json!("18446744073709551615"), "ffffffffffffffff");
    round(&abi, "uint64", json!(u64::MAX), "ffffffffffffffff", json!("18446744073709551615"));
    same(&abi, "uint64", json!(5), "0500000000000000");

    // 128-bit: always strings.
    same(&abi, "int128", json!("-1"), &"ff".repeat(16));
    same(
        &abi,
        "int128",
        json!("-170141183460469231731687303715884105728"),
        &format!("{}80", "00".repeat(15)),
    );
    same(&abi, "uint128", json!("340282366920938463463374607431768211455"), &"ff".repeat(16));
    round(&abi, "uint128", json!(1), &format!("01{}", "00".repeat(15)), json!("1"));

    // Variable-length.
    same(&abi, "varint32", json!(0), "00");
    same(&abi, "varint32", json!(-1), "01");
    same(&abi, "varint32", json!(1), "02");
    same(&abi, "varint32", json!(-64), "7f");
    same(&abi, "varint32", json!(64), "8001");
    same(&abi, "varint32", json!(i32::MIN), "ffffffff0f");
    same(&abi, "varuint32", json!(300), "ac02");
    same(&abi, "varuint32", json!(u32::MAX), "ffffffff0f");
    assert!(matches!(dec_err(&abi, "varuint32", "ffffffff1f"), AbiError::Decode { .. }));
}

#[test]
fn integers_are_range_checked() {
    let abi = test_abi();
    for (ty, v) in [
        ("uint8", json!(256)),
        ("uint8", json!(-1)),
        ("uint8", json!("-1")),
        ("int8", json!(128)),
        ("int8", json!(-129)),
        ("uint16", json!(65536)),
        ("int32", json!(2147483648u32)),
        ("uint32", json!(4294967296u64)),
        ("int64", json!("9223372036854775808")),
        ("uint64", json!("18446744073709551616")),
        ("uint128", json!("340282366920938463463374607431768211456")),
        ("varuint32", json!(4294967296u64)),
        ("varuint32", json!(-1)),
        ("varint32", json!(2147483648u32)),
        ("uint8", json!(1.5)),
        ("uint8", json!("1.0")),
        ("uint8", json!("")),
        ("uint8", json!(" 1")),
        ("uint8", json!("0x1")),
        ("uint8", json!(null)),
        ("uint8", json!([1])),
        ("int64", json!(1e300)),
    ] {
        enc_err(&abi, ty, v);
    }
    let msg = enc_err(&abi, "uint8", json!(256));
    assert_eq!(msg, "uint8: 256 is out of range for uint8");
}

#[test]
fn floats() {
    let abi = test_abi();
    same(&abi, "float32", json!(0.1), "cdcccc3d");
    same(&abi, "float32", json!(1.5), "0000c03f");
    round(&abi, "float32", json!("1.5"), "0000c03f", json!(1.5));
    same(&abi, "float64", json!(1.5), "000000000000f83f");
    same(&abi, "float64", json!(-0.1), "9a9999999999b9bf");
    same(&abi, "float64", json!("inf"), "000000000000f07f");
    same(&abi, "float64", json!("-inf"), "000000000000f0ff");
    let nan = abi.json_to_bin("float64", &json!("nan")).unwrap();
    assert_eq!(abi.bin_to_json("float64", &nan).unwrap(), json!("nan"));
    same(&abi, "float32", json!("inf"), "0000807f");
    enc_err(&abi, "float32", json!(1e300));
    enc_err(&abi, "float64", json!("one"));
    let bytes = format!("0x{}", "01".repeat(15) + "80");
    same(&abi, "float128", json!(bytes), &bytes[2..]);
    round(
        &abi,
        "float128",
        json!("00".repeat(16)),
        &"00".repeat(16),
        json!(format!("0x{}", "00".repeat(16))),
    );
    enc_err(&abi, "float128", json!("0x00"));
}

#[test]
fn strings_names_times_and_checksums() {
    let abi = test_abi();
    same(&abi, "name", json!("eosio.token"), "00a6823403ea3055");
    same(&abi, "name", json!("eosio"), "0000000000ea3055");
    same(&abi, "name", json!(""), "0000000000000000");
    enc_err(&abi, "name", json!("EOSIO"));
    enc_err(&abi, "name", json!("a."));
    same(&abi, "string", json!(""), "00");
    same(&abi, "string", json!("hi"), "026869");
    same(&abi, "string", json!("é"), "02c3a9");
    assert!(matches!(dec_err(&abi, "string", "01ff"), AbiError::Decode { .. }));
    same(&abi, "bytes", json!(""), "00");
    round(&abi, "bytes", json!("0A0b"), "020a0b", json!("0a0b"));
    enc_err(&abi, "bytes", json!("abc"));
    enc_err(&abi, "bytes", json!("zz"));
    same(&abi, "time_point", json!("2024-01-01T00:00:50.000"), "80101c13d70d0600");
    same(&abi, "time_point_sec", json!("2018-06-15T19:17:47"), "db10245b");
    round(
        &abi,
        "time_point_sec",
        json!("2018-06-15T19:17:47Z"),
        "db10245b",
        json!("2018-06-15T19:17:47"),
    );
    same(&abi, "block_timestamp_type", json!("2000-01-01T00:00:00.500"), "01000000");
    enc_err(&abi, "time_point", json!("yesterday"));
    let h160 = "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc";
    same(&abi, "checksum160", json!(h160), h160);
    let h256 = Checksum256::hash(b"abc").to_string();
    same(&abi, "checksum256", json!(h256), &h256);
    let h512 = "ab".repeat(64);
    same(&abi, "checksum512", json!(h512), &h512);
    enc_err(&abi, "checksum256", json!("abcd"));
}

#[test]
fn symbols_assets_and_keys() {
    let abi = test_abi();
    same(&abi, "symbol", json!("4,SYS"), "0453595300000000");
    same(&abi, "symbol_code", json!("SYS"), "5359530000000000");
    same(&abi, "asset", json!("1.0000 SYS"), "10270000000000000453595300000000");
    same(&abi, "asset", json!("-0.0001 EOS"), "ffffffffffffffff04454f5300000000");
    same(
        &abi,
        "extended_asset",
        json!({"quantity": "1.0000 SYS", "contract": "eosio.token"}),
        "1027000000000000045359530000000000a6823403ea3055",
    );
    enc_err(&abi, "extended_asset", json!({"quantity": "1.0000 SYS"}));
    enc_err(&abi, "extended_asset", json!({"quantity": "1.0000 SYS", "contract": "a", "x": 1}));
    enc_err(&abi, "extended_asset", json!("1.0000 SYS@eosio.token"));
    enc_err(&abi, "symbol", json!("SYS"));
    // An asset amount beyond 2^62-1 is refused on the wire too.
    assert!(matches!(
        dec_err(&abi, "asset", "ffffffffffffff7f0453595300000000"),
        AbiError::Decode { .. }
    ));

    let pk = "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63";
    let pk_hex = "0002c0ded2bc1f1305fb0faac5e6c03ee3a1924234985427b6167ca569d13df435cf";
    same(&abi, "public_key", json!(pk), pk_hex);
    let legacy = "EOS6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5GDW5CV";
    round(&abi, "public_key", json!(legacy), pk_hex, json!(pk));
    enc_err(&abi, "public_key", json!("PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq64"));

    let key: PrivateKey = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3".parse().unwrap();
    assert_eq!(key.public_key().to_string(), pk);
    let sig = key.sign(&Checksum256::hash(b"digest"));
    let sig_hex = hex::encode(to_bytes(&sig));
    assert_eq!(sig_hex.len(), 132);
    same(&abi, "signature", json!(sig.to_string()), &sig_hex);
    enc_err(&abi, "signature", json!(pk));
}

#[test]
fn transfer_matches_hand_computed_bytes() {
    let abi = eosio_token_abi();
    let data =
        json!({"from": "eosio", "to": "eosio.token", "quantity": "1.0000 EOS", "memo": "hi"});
    let expected = concat!(
        "0000000000ea3055", // eosio
        "00a6823403ea3055", // eosio.token
        "1027000000000000", // 10000
        "04454f5300000000", // 4,EOS
        "026869",           // "hi"
    );
    let transfer = Name::from_const("transfer");
    let bin = abi.action_json_to_bin(transfer, &data).unwrap();
    assert_eq!(hex::encode(&bin), expected);
    assert_eq!(abi.json_to_bin("transfer", &data).unwrap(), bin);
    assert_eq!(abi.action_bin_to_json(transfer, &bin).unwrap(), data);
    assert_eq!(abi.action_type(transfer), Some("transfer"));
    assert!(matches!(
        abi.action_json_to_bin(Name::from_const("nope"), &data),
        Err(AbiError::UnknownAction(_))
    ));

    let msg = enc_err(
        abi,
        "transfer",
        json!({"from": "eosio", "to": "eosio.token", "quantity": "1.0 eos", "memo": ""}),
    );
    assert!(msg.starts_with(r#"transfer.quantity: asset "1.0 eos": "#), "{msg}");
    let msg = enc_err(
        abi,
        "transfer",
        json!({"from": "eosio", "to": "eosio.token", "quantity": "1.0000 EOS"}),
    );
    assert!(msg.starts_with("transfer: missing field \"memo\""), "{msg}");
    let msg = enc_err(
        abi,
        "transfer",
        json!({"from": "eosio", "to": "b", "quantity": "1 A", "memo": "", "fee": 1}),
    );
    assert!(msg.starts_with("transfer: unknown field \"fee\""), "{msg}");
    let msg = enc_err(abi, "transfer", json!("eosio"));
    assert!(msg.contains("expected struct transfer as an object"), "{msg}");
    // Trailing bytes are refused.
    let mut long = bin.clone();
    long.push(0);
    assert!(matches!(
        abi.bin_to_json("transfer", &long),
        Err(AbiError::TrailingBytes { count: 1, .. })
    ));
    let err = abi.bin_to_json("transfer", &bin[..bin.len() - 1]).unwrap_err();
    assert!(err.to_string().starts_with("transfer.memo: "), "{err}");
}

#[test]
fn newaccount_with_authorities() {
    let abi = eosio_system_abi();
    let pk = "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63";
    let auth = json!({
        "threshold": 1,
        "keys": [{"key": pk, "weight": 1}],
        "accounts": [{"permission": {"actor": "alice", "permission": "active"}, "weight": 1}],
        "waits": [{"wait_sec": 60, "weight": 1}]
    });
    let data = json!({"creator": "eosio", "name": "alice", "owner": auth, "active": auth});
    let bin = abi.action_json_to_bin(Name::from_const("newaccount"), &data).unwrap();
    let alice = hex::encode(to_bytes(&Name::from_const("alice")));
    let active = hex::encode(to_bytes(&Name::from_const("active")));
    let auth_hex = format!(
        "01000000 01 {pk} 0100 01 {alice}{active} 0100 01 3c000000 0100",
        pk = "0002c0ded2bc1f1305fb0faac5e6c03ee3a1924234985427b6167ca569d13df435cf"
    )
    .replace(' ', "");
    assert_eq!(hex::encode(&bin), format!("0000000000ea3055{alice}{auth_hex}{auth_hex}"));
    assert_eq!(abi.bin_to_json("newaccount", &bin).unwrap(), data);

    let mut bad = data.clone();
    bad["owner"]["keys"][0]["key"] = json!("PUB_K1_nope");
    let msg = enc_err(abi, "newaccount", bad);
    assert!(msg.starts_with("newaccount.owner.keys[0].key: public_key \"PUB_K1_nope\": "), "{msg}");
    let mut bad = data;
    bad["active"]["accounts"][0]["permission"]["actor"] = json!("Alice");
    let msg = enc_err(abi, "newaccount", bad);
    assert!(msg.starts_with("newaccount.active.accounts[0].permission.actor: name"), "{msg}");
    // A decode error names the path too: a key with an unknown curve tag.
    let mut blob = abi.json_to_bin("key_weight", &json!({"key": pk, "weight": 1})).unwrap();
    blob[0] = 9;
    let err = abi.bin_to_json("key_weight", &blob).unwrap_err();
    assert!(err.to_string().starts_with("key_weight.key: "), "{err}");
}

#[test]
fn bases_aliases_optionals_and_arrays() {
    let abi = test_abi();
    let alice = hex::encode(to_bytes(&Name::from_const("alice")));
    same(&abi, "derived", json!({"a": 1, "b": "alice", "c": "x"}), &format!("01{alice}010178"));
    same(&abi, "derived", json!({"a": 1, "b": "alice", "c": null}), &format!("01{alice}00"));
    // A missing optional field is null, as nodeos has it.
    round(
        &abi,
        "derived",
        json!({"a": 1, "b": "alice"}),
        &format!("01{alice}00"),
        json!({"a": 1, "b": "alice", "c": null}),
    );
    let msg = enc_err(&abi, "derived", json!({"b": "alice", "c": null}));
    assert_eq!(msg, "derived: missing field \"a\" of struct derived");
    // A struct without a base may be an array of its values; one with a base may not.
    round(&abi, "base", json!([5]), "05", json!({"a": 5}));
    assert!(enc_err(&abi, "derived", json!([1, "alice", null])).contains("has a base"));
    enc_err(&abi, "base", json!([1, 2]));
    enc_err(&abi, "base", json!([]));
    // Type names with suffixes and aliases at the top level.
    same(&abi, "account_name[]", json!(["alice", "eosio"]), &format!("02{alice}0000000000ea3055"));
    same(&abi, "account_name?", json!(null), "00");
    same(&abi, "int8s", json!([1, -1]), "0201ff");
    same(
        &abi,
        "nested",
        json!({"v": [[1], []], "o": [2], "pick": ["uint8", 7], "picks": []}),
        "02010100010102000700",
    );
    let msg = enc_err(
        &abi,
        "nested",
        json!({"v": [[1, 300]], "o": null, "pick": ["uint8", 1], "picks": []}),
    );
    assert!(msg.starts_with("nested.v[0][1]: 300 is out of range"), "{msg}");
    assert!(enc_err(&abi, "int8s", json!({"a": 1})).contains("expected an array"));
    // Optional presence flags are strict on the wire.
    assert!(matches!(dec_err(&abi, "account_name?", "02"), AbiError::Decode { .. }));
    // Unknown types.
    assert!(matches!(abi.json_to_bin("nope", &json!(1)), Err(AbiError::UnknownType(_))));
    assert!(matches!(abi.bin_to_json("int8[][]", &[0]), Err(AbiError::UnknownType(_))));
    assert!(matches!(abi.json_to_bin("uint8$", &json!(1)), Err(AbiError::UnknownType(_))));
    // An empty struct is an empty object.
    same(&abi, "empty", json!({}), "");
}

#[test]
fn variants() {
    let abi = test_abi();
    let alice = hex::encode(to_bytes(&Name::from_const("alice")));
    same(&abi, "choice", json!(["uint8", 7]), "0007");
    same(&abi, "choice", json!(["string", "hi"]), "01026869");
    same(
        &abi,
        "choice",
        json!(["derived", {"a": 1, "b": "alice", "c": null}]),
        &format!("0201{alice}00"),
    );
    let msg = enc_err(&abi, "choice", json!(["int32", 1]));
    assert!(
        msg.contains(
            "\"int32\" is not one of the types of variant choice (uint8, string, derived)"
        ),
        "{msg}"
    );
    enc_err(&abi, "choice", json!({"type": "uint8", "value": 1}));
    enc_err(&abi, "choice", json!(["uint8"]));
    let msg = enc_err(&abi, "choice", json!(["derived", {"a": 1, "b": "X", "c": null}]));
    assert!(msg.starts_with("choice<derived>.b: name"), "{msg}");
    let err = dec_err(&abi, "choice", "0300");
    assert!(
        matches!(err, AbiError::Decode { error: DecodeError::UnknownTag { tag: 3, .. }, .. }),
        "{err}"
    );
}

#[test]
fn binary_extensions() {
    let abi = test_abi();
    // At the top level trailing `$` fields may be left out, in order.
    same(&abi, "ext", json!({"x": 1}), "01");
    same(&abi, "ext", json!({"x": 1, "y": 2}), "010200");
    same(&abi, "ext", json!({"x": 1, "y": 2, "z": "a"}), "0102000161");
    let msg = enc_err(&abi, "ext", json!({"x": 1, "z": "a"}));
    assert!(
        msg.contains("\"z\" is given but the binary extension field \"y\" before it is not"),
        "{msg}"
    );
    round(&abi, "ext", json!([1]), "01", json!({"x": 1}));
    // In the last field of a struct too.
    same(&abi, "tail", json!({"n": 1, "inner": {"x": 2}}), "0102");
    same(&abi, "tail", json!({"n": 1, "inner": {"x": 2, "y": 3}}), "01020300");
    // But not where more data follows, nor inside a vector.
    let msg = enc_err(&abi, "holder", json!({"inner": {"x": 1}, "n": 2}));
    assert!(
        msg.starts_with("holder.inner: missing field \"y\"") && msg.contains("very end"),
        "{msg}"
    );
    same(&abi, "holder", json!({"inner": {"x": 1, "y": 2, "z": ""}, "n": 3}), "0102000003");
    let msg = enc_err(&abi, "list", json!({"items": [{"x": 1}]}));
    assert!(msg.starts_with("list.items[0]: missing field \"y\""), "{msg}");
    // On decode, a `$` field is absent when the input ends, wherever that is.
    assert_eq!(
        abi.bin_to_json("list", &hex::decode("0101").unwrap()).unwrap(),
        json!({"items": [{"x": 1}]})
    );
    assert!(matches!(dec_err(&abi, "ext", ""), AbiError::Decode { .. }));
}

#[test]
fn recursion_is_bounded() {
    let abi = test_abi();
    // A short linked list is fine.
    same(&abi, "node", json!({"value": 1, "next": {"value": 2, "next": null}}), "01010200");
    // A deep one fails cleanly both ways.
    let mut deep = json!({"value": 0, "next": null});
    for _ in 0..100 {
        deep = json!({"value": 1, "next": deep});
    }
    let err = abi.json_to_bin("node", &deep).unwrap_err();
    assert!(matches!(err, AbiError::TooDeep { limit: MAX_DEPTH, .. }), "{err}");
    assert!(err.to_string().starts_with("node.next.next."), "{err}");
    let blob = "0101".repeat(10_000) + "0000";
    let err = dec_err(&abi, "node", &blob);
    assert!(matches!(err, AbiError::TooDeep { .. }), "{err}");
    // Vectors of vectors of itself: a hostile blob of nested one-element vectors.
    let err = dec_err(&abi, "tree", &"01".repeat(100_000));
    assert!(matches!(err, AbiError::TooDeep { .. }), "{err}");
    same(&abi, "tree", json!({"children": [{"children": []}, {"children": []}]}), "020000");
}

#[test]
fn vector_counts_are_bounded_by_the_input() {
    let abi = test_abi();
    // A count of 2^32-1 with nothing behind it: refused before allocating.
    for ty in ["list", "tree", "int8s", "empty[]", "string[]", "choice[]"] {
        let err = dec_err(&abi, ty, "ffffffff0f");
        let AbiError::Decode { error, .. } = &err else { panic!("{ty}: {err}") };
        assert!(matches!(error, DecodeError::LengthTooLarge { .. }), "{ty}: {err}");
    }
    // A count that the remaining bytes could hold only if elements were smaller than they are:
    // `asset` takes 16 bytes, so 2 assets need 32.
    let err = dec_err(&abi, "asset[]", &format!("02{}", "00".repeat(20)));
    assert!(err.to_string().contains("exceeds"), "{err}");
}

#[test]
fn keys_of_public_key_type_round_trip_through_public_key() {
    // The codec writes keys exactly as `PublicKey`'s own `Pack` does.
    let abi = test_abi();
    let pk: PublicKey =
        "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63".parse().unwrap();
    let bin = abi.json_to_bin("public_key", &json!(pk.to_string())).unwrap();
    assert_eq!(bin, to_bytes(&pk));
}
