use serde_json::json;

use super::*;

fn small_def() -> AbiDef {
    AbiDef {
        version: "eosio::abi/1.1".into(),
        types: vec![TypeDef { new_type_name: "a".into(), r#type: "name".into() }],
        ..AbiDef::default()
    }
}

fn abi_json(v: serde_json::Value) -> Result<Abi, AbiError> {
    Abi::from_json(&v.to_string())
}

/// A struct for [`with_structs`]: name, base, `(field, type)` pairs.
type StructSpec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// An ABI with the given structs and no other definitions.
fn with_structs(structs: &[StructSpec<'_>]) -> Result<Abi, AbiError> {
    let structs: Vec<_> = structs
        .iter()
        .map(|(name, base, fields)| {
            let fields: Vec<_> =
                fields.iter().map(|(n, t)| json!({"name": n, "type": t})).collect();
            json!({"name": name, "base": base, "fields": fields})
        })
        .collect();
    abi_json(json!({"version": "eosio::abi/1.1", "structs": structs}))
}

fn message(r: Result<Abi, AbiError>) -> String {
    r.expect_err("the ABI must be refused").to_string()
}

#[test]
fn abi_def_binary_layout_is_fc_raw() {
    let hex = hex::encode(small_def().to_bin());
    let expected = [
        "0e",                           // version length
        &hex::encode("eosio::abi/1.1"), // version
        "01",                           // one type
        "0161",                         // "a"
        "046e616d65",                   // "name"
        "000000000000",                 // structs … abi_extensions
        "0000",                         // variants, action_results (always written, as nodeos)
    ]
    .concat();
    assert_eq!(hex, expected);
}

#[test]
fn abi_def_binary_extensions_may_be_absent() {
    let def = small_def();
    let full = def.to_bin();
    // Without action_results, and without both: still the same definition.
    assert_eq!(AbiDef::from_bin(&full[..full.len() - 1]).unwrap(), def);
    assert_eq!(AbiDef::from_bin(&full[..full.len() - 2]).unwrap(), def);
    // One byte less than the base part is refused.
    assert!(AbiDef::from_bin(&full[..full.len() - 3]).is_err());
}

#[test]
fn abi_def_accepts_the_empty_kv_tables_eosjs_writes_and_refuses_others() {
    let def = small_def();
    // eosjs 22 serialises `kv_tables$` as an empty map after action_results: one zero byte.
    let mut eosjs = def.to_bin();
    eosjs.push(0);
    assert_eq!(AbiDef::from_bin(&eosjs).unwrap(), def);
    // A non-empty kv_tables is refused by name, not read as garbage.
    let mut kv = def.to_bin();
    kv.extend_from_slice(&[1, 0]);
    let err = AbiDef::from_bin(&kv).unwrap_err().to_string();
    assert!(err.contains("kv_tables") && err.contains("not supported"), "{err}");
    // Anything after the empty map is still trailing garbage.
    let mut long = eosjs.clone();
    long.push(0);
    assert!(matches!(AbiDef::from_bin(&long), Err(AbiError::Binary(_))));
}

#[test]
fn abi_def_round_trips_with_extensions() {
    let mut def = small_def();
    def.version = "eosio::abi/1.2".into();
    def.structs.push(StructDef {
        name: "s".into(),
        base: String::new(),
        fields: vec![FieldDef { name: "f".into(), r#type: "v$".into() }],
    });
    def.variants.push(VariantDef { name: "v".into(), types: vec!["int8".into(), "s".into()] });
    def.action_results
        .push(ActionResultDef { name: Name::from_const("act"), result_type: "s".into() });
    def.actions.push(ActionDef {
        name: Name::from_const("act"),
        r#type: "s".into(),
        ricardian_contract: "text".into(),
    });
    def.tables.push(TableDef {
        name: Name::from_const("tbl"),
        index_type: "i64".into(),
        key_names: vec!["k".into()],
        key_types: vec!["uint64".into()],
        r#type: "s".into(),
    });
    def.ricardian_clauses.push(ClausePair { id: "c".into(), body: "b".into() });
    def.error_messages.push(ErrorMessage { error_code: 1 << 40, error_msg: "big".into() });
    def.abi_extensions.push((7, Bytes(vec![1, 2])));

    let bin = def.to_bin();
    assert_eq!(AbiDef::from_bin(&bin).unwrap(), def);
    let json = serde_json::to_value(&def).unwrap();
    assert_eq!(json["error_messages"][0]["error_code"], json!("1099511627776"));
    assert_eq!(json["abi_extensions"], json!([[7, "0102"]]));
    assert_eq!(json["tables"][0]["type"], json!("s"));
    assert_eq!(serde_json::from_value::<AbiDef>(json).unwrap(), def);
    let abi = Abi::from_bin(&bin).unwrap();
    assert_eq!(abi.action_result_type(Name::from_const("act")), Some("s"));
    assert_eq!(abi.table_type(Name::from_const("tbl")), Some("s"));
    assert_eq!(abi.error_message(1 << 40), Some("big"));
}

#[test]
fn abi_def_json_is_lenient_like_nodeos() {
    let def = AbiDef::from_json(
        r#"{"____comment": "generated", "version": "eosio::abi/1.0",
            "structs": [{"name": "s", "fields": [{"name": "x", "type": "int8"}]}],
            "error_messages": [{"error_code": "42", "error_msg": "a"},
                               {"error_code": 7, "error_msg": "b"}]}"#,
    )
    .unwrap();
    assert_eq!(def.structs[0].base, "");
    assert!(def.types.is_empty() && def.variants.is_empty() && def.action_results.is_empty());
    assert_eq!(def.error_messages[0].error_code, 42);
    assert_eq!(def.error_messages[1].error_code, 7);
    assert_eq!(serde_json::to_value(&def).unwrap()["error_messages"][1]["error_code"], json!(7));
    // Still strict where a value is wrong.
    assert!(AbiDef::from_json(r#"{"error_messages": [{"error_code": -1}]}"#).is_err());
    assert!(AbiDef::from_json(r#"{"error_messages": [{"error_code": "x1"}]}"#).is_err());
    assert!(AbiDef::from_json(r#"{"actions": [{"name": "Bad"}]}"#).is_err());
    assert!(matches!(AbiDef::from_json("[1]"), Err(AbiError::Json(_))));
}

#[test]
fn abi_def_binary_is_strict() {
    // A count far beyond the input is refused before anything is allocated.
    let mut bin = vec![0x0e];
    bin.extend_from_slice(b"eosio::abi/1.1");
    bin.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let err = AbiDef::from_bin(&bin).unwrap_err();
    assert!(err.to_string().contains("types"), "{err}");
    assert!(
        matches!(err, AbiError::Binary(ref e) if matches!(e.root(), DecodeError::LengthTooLarge { .. }))
    );
    // A version that is not UTF-8.
    assert!(AbiDef::from_bin(&[0x01, 0xff]).is_err());
    assert!(AbiDef::from_bin(&[]).is_err());
}

#[test]
fn bundled_abis_are_valid_and_match_the_reference_contracts() {
    let sys = eosio_system_abi();
    for action in [
        "newaccount",
        "updateauth",
        "deleteauth",
        "linkauth",
        "unlinkauth",
        "setcode",
        "setabi",
        "setprods",
        "regproducer",
    ] {
        let name: Name = action.parse().unwrap();
        assert_eq!(sys.action_type(name), Some(action), "{action}");
    }
    let field_names = |abi: &Abi, s: &str| -> Vec<String> {
        let st = abi.def().structs.iter().find(|x| x.name == s).unwrap();
        st.fields.iter().map(|f| format!("{} {}", f.name, f.r#type)).collect()
    };
    assert_eq!(
        field_names(sys, "authority"),
        [
            "threshold uint32",
            "keys key_weight[]",
            "accounts permission_level_weight[]",
            "waits wait_weight[]"
        ]
    );
    assert_eq!(field_names(sys, "key_weight"), ["key public_key", "weight uint16"]);
    assert_eq!(
        field_names(sys, "permission_level_weight"),
        ["permission permission_level", "weight uint16"]
    );
    assert_eq!(field_names(sys, "wait_weight"), ["wait_sec uint32", "weight uint16"]);
    assert_eq!(
        field_names(sys, "newaccount"),
        ["creator name", "name name", "owner authority", "active authority"]
    );
    assert_eq!(
        field_names(sys, "updateauth"),
        ["account name", "permission name", "parent name", "auth authority"]
    );
    assert_eq!(
        field_names(sys, "linkauth"),
        ["account name", "code name", "type name", "requirement name"]
    );
    assert_eq!(
        field_names(sys, "setcode"),
        ["account name", "vmtype uint8", "vmversion uint8", "code bytes"]
    );
    assert_eq!(field_names(sys, "setabi"), ["account name", "abi bytes"]);
    assert_eq!(field_names(sys, "setprods"), ["schedule producer_key[]"]);
    // eosio.system's layout, which the node's native regproducer decodes.
    assert_eq!(
        field_names(sys, "regproducer"),
        ["producer name", "producer_key public_key", "url string", "location uint16"]
    );
    assert_eq!(
        field_names(sys, "producer_key"),
        ["producer_name name", "block_signing_key public_key"]
    );

    let tok = eosio_token_abi();
    assert_eq!(
        field_names(tok, "transfer"),
        ["from name", "to name", "quantity asset", "memo string"]
    );
    assert_eq!(field_names(tok, "create"), ["issuer name", "maximum_supply asset"]);
    assert_eq!(field_names(tok, "open"), ["owner name", "symbol symbol", "ram_payer name"]);
    assert_eq!(tok.table_type(Name::from_const("accounts")), Some("account"));
    assert_eq!(tok.table_type(Name::from_const("stat")), Some("currency_stats"));
    assert_eq!(
        field_names(tok, "currency_stats"),
        ["supply asset", "max_supply asset", "issuer name"]
    );
    // Both survive the binary form, as `setabi` would carry them.
    for abi in [sys, tok] {
        assert_eq!(&AbiDef::from_bin(&abi.def().to_bin()).unwrap(), abi.def());
    }
}

#[test]
fn version_must_be_1_x() {
    for v in ["eosio::abi/2.0", "", "eosio::abi/1"] {
        let mut def = small_def();
        def.version = v.into();
        assert!(matches!(Abi::new(def), Err(AbiError::Version(_))), "{v}");
    }
    let mut def = small_def();
    def.version = "eosio::abi/1.2".into();
    assert!(Abi::new(def).is_ok());
}

#[test]
fn duplicates_are_refused() {
    let cases = [
        json!({"types": [{"new_type_name": "a", "type": "name"}, {"new_type_name": "a", "type": "int8"}]}),
        json!({"types": [{"new_type_name": "name", "type": "int8"}]}),
        json!({"structs": [{"name": "s"}, {"name": "s"}]}),
        json!({"structs": [{"name": "asset"}]}),
        json!({"types": [{"new_type_name": "s", "type": "int8"}], "structs": [{"name": "s"}]}),
        json!({"structs": [{"name": "s"}], "variants": [{"name": "s", "types": ["int8"]}]}),
        json!({"variants": [{"name": "v", "types": ["int8"]}, {"name": "v", "types": ["int8"]}]}),
        json!({"structs": [{"name": "s"}], "actions": [{"name": "a", "type": "s"}, {"name": "a", "type": "s"}]}),
        json!({"structs": [{"name": "s"}], "tables": [{"name": "t", "type": "s"}, {"name": "t", "type": "s"}]}),
        json!({"action_results": [{"name": "a", "result_type": "int8"}, {"name": "a", "result_type": "int8"}]}),
        json!({"error_messages": [{"error_code": 1, "error_msg": "x"}, {"error_code": 1, "error_msg": "y"}]}),
    ];
    for mut case in cases {
        case["version"] = json!("eosio::abi/1.2");
        let err = abi_json(case.clone()).expect_err(&case.to_string());
        assert!(matches!(err, AbiError::Duplicate { .. }), "{case}: {err}");
    }
}

#[test]
fn unknown_types_name_the_definition() {
    let msg = message(with_structs(&[("transfer", "", &[("from", "name"), ("quantity", "aset")])]));
    assert!(msg.contains(r#"struct "transfer" field "quantity""#), "{msg}");
    assert!(msg.contains(r#"unknown type "aset""#), "{msg}");

    let msg = message(abi_json(json!({"version": "eosio::abi/1.1",
        "actions": [{"name": "go", "type": "missing"}]})));
    assert!(msg.contains(r#"action "go""#), "{msg}");
    let msg = message(abi_json(json!({"version": "eosio::abi/1.1",
        "tables": [{"name": "rows", "type": "missing"}]})));
    assert!(msg.contains(r#"table "rows""#), "{msg}");
    let msg = message(abi_json(json!({"version": "eosio::abi/1.1",
        "variants": [{"name": "v", "types": ["int8", "nope"]}]})));
    assert!(msg.contains(r#"variant "v" type "nope""#), "{msg}");
    let msg = message(abi_json(json!({"version": "eosio::abi/1.1",
        "types": [{"new_type_name": "alias", "type": "nope[]"}]})));
    assert!(msg.contains(r#"type "alias""#) && msg.contains("nope"), "{msg}");
    let msg = message(with_structs(&[("s", "nope", &[])]));
    assert!(msg.contains(r#"struct "s" base"#), "{msg}");
    let msg = message(with_structs(&[("s", "int8", &[])]));
    assert!(msg.contains("is not a struct"), "{msg}");
}

#[test]
fn type_suffix_rules_follow_nodeos() {
    // One suffix per name; nesting goes through an alias.
    let msg = message(with_structs(&[("s", "", &[("x", "int8[][]")])]));
    assert!(msg.contains("alias"), "{msg}");
    assert!(message(with_structs(&[("s", "", &[("x", "int8?[]")])])).contains("alias"));
    let nested = abi_json(json!({"version": "eosio::abi/1.1",
        "types": [{"new_type_name": "bytes_list", "type": "int8[]"}],
        "structs": [{"name": "s", "fields": [{"name": "x", "type": "bytes_list[]"},
                                             {"name": "y", "type": "bytes_list?"}]}]}));
    assert!(nested.is_ok(), "{nested:?}");
    // Fixed-size arrays are refused.
    assert!(message(with_structs(&[("s", "", &[("x", "int8[4]")])])).contains("fixed-size"));
    // `$` only at the end of a field type, and only trailing.
    assert!(with_structs(&[("s", "", &[("x", "int8"), ("y", "int8$"), ("z", "string$")])]).is_ok());
    let msg = message(with_structs(&[("s", "", &[("x", "int8$"), ("y", "int8")])]));
    assert!(msg.contains(r#"struct "s" field "y""#) && msg.contains("`$`"), "{msg}");
    assert!(message(with_structs(&[("s", "", &[("x", "int8$[]")])])).contains('$'));
    assert!(message(with_structs(&[("s", "", &[("x", "int8$$")])])).contains('$'));
    let msg = message(with_structs(&[("b", "", &[("x", "int8$")]), ("d", "b", &[("y", "int8")])]));
    assert!(msg.contains(r#"struct "d""#), "{msg}");
    let msg = message(abi_json(json!({"version": "eosio::abi/1.1",
        "variants": [{"name": "v", "types": ["int8$"]}]})));
    assert!(msg.contains('$'), "{msg}");
    // Names that could never be referred to.
    assert!(message(with_structs(&[("", "", &[])])).contains("empty name"));
    assert!(message(with_structs(&[("s[]", "", &[])])).contains("could never be referred to"));
    // A field declared twice.
    assert!(message(with_structs(&[("s", "", &[("x", "int8"), ("x", "int8")])])).contains("twice"));
}

#[test]
fn alias_cycles_are_refused() {
    let msg = message(abi_json(json!({"version": "eosio::abi/1.1",
        "types": [{"new_type_name": "a", "type": "b"}, {"new_type_name": "b", "type": "a"}]})));
    assert!(msg.contains("circular") && msg.contains("a -> b -> a"), "{msg}");
    let err = abi_json(json!({"version": "eosio::abi/1.1",
        "types": [{"new_type_name": "a", "type": "a[]"}]}))
    .unwrap_err();
    assert!(matches!(err, AbiError::Cycle { .. }), "{err}");
}

#[test]
fn base_cycles_are_refused() {
    let msg = message(with_structs(&[("a", "b", &[]), ("b", "a", &[])]));
    assert!(msg.contains("circular") && msg.contains("of bases"), "{msg}");
    assert!(matches!(with_structs(&[("a", "a", &[])]), Err(AbiError::Cycle { .. })));
    // Through an alias of a struct, too.
    let err = abi_json(json!({"version": "eosio::abi/1.1",
        "types": [{"new_type_name": "alias_a", "type": "a"}],
        "structs": [{"name": "a", "base": "alias_a"}]}))
    .unwrap_err();
    assert!(matches!(err, AbiError::Cycle { .. }), "{err}");
}

#[test]
fn structs_containing_themselves_by_value_are_refused() {
    let msg = message(with_structs(&[("node", "", &[("next", "node")])]));
    assert!(msg.contains("contains itself by value") && msg.contains("node.next -> node"), "{msg}");
    let msg =
        message(with_structs(&[("a", "", &[("b", "b")]), ("b", "", &[("x", "int8"), ("a", "a")])]));
    assert!(msg.contains("a.b -> b.a -> a"), "{msg}");
    // Through an alias, and through a base's field.
    let err = abi_json(json!({"version": "eosio::abi/1.1",
        "types": [{"new_type_name": "next_t", "type": "node"}],
        "structs": [{"name": "node", "fields": [{"name": "next", "type": "next_t"}]}]}))
    .unwrap_err();
    assert!(matches!(err, AbiError::Cycle { .. }), "{err}");
    assert!(matches!(
        with_structs(&[("b", "", &[("d", "d")]), ("d", "b", &[])]),
        Err(AbiError::Cycle { .. })
    ));
    // Optional, vector, extension and variant fields end the recursion: these are fine.
    for ty in ["node?", "node[]", "node$"] {
        assert!(with_structs(&[("node", "", &[("v", "int8"), ("next", ty)])]).is_ok(), "{ty}");
    }
    let via_variant = abi_json(json!({"version": "eosio::abi/1.1",
        "structs": [{"name": "node", "fields": [{"name": "next", "type": "link"}]}],
        "variants": [{"name": "link", "types": ["int8", "node"]}]}));
    assert!(via_variant.is_ok(), "{via_variant:?}");
}

#[test]
fn nesting_of_definitions_is_bounded() {
    let abi_with = |key: &str, defs: Vec<serde_json::Value>| {
        let mut v = json!({"version": "eosio::abi/1.1"});
        v[key] = json!(defs);
        abi_json(v)
    };
    // A chain of bases longer than MAX_DEPTH.
    let structs = (0..=MAX_DEPTH + 1)
        .map(|i| {
            let base = if i == 0 { String::new() } else { format!("s{}", i - 1) };
            json!({"name": format!("s{i}"), "base": base})
        })
        .collect();
    let msg = message(abi_with("structs", structs));
    assert!(msg.contains("chain of bases is longer"), "{msg}");

    // Structs nested by value far deeper than any data could be.
    let structs = (0..=2 * MAX_DEPTH + 1)
        .map(|i| {
            let ty = if i == 0 { "int8".to_owned() } else { format!("n{}", i - 1) };
            json!({"name": format!("n{i}"), "fields": [{"name": "v", "type": ty}]})
        })
        .collect();
    let msg = message(abi_with("structs", structs));
    assert!(msg.contains("nest by value"), "{msg}");

    // A chain of aliases longer than MAX_DEPTH.
    let types = (0..=MAX_DEPTH + 1)
        .map(|i| {
            let target = if i == 0 { "int8".to_owned() } else { format!("t{}", i - 1) };
            json!({"new_type_name": format!("t{i}"), "type": target})
        })
        .collect();
    let msg = message(abi_with("types", types));
    assert!(msg.contains("deeper than"), "{msg}");
}

#[test]
fn a_large_hostile_abi_validates_quickly() {
    // Many structs sharing a long base chain with many fields: validation must not copy the
    // chain into every struct.
    let mut structs = Vec::new();
    for i in 0..MAX_DEPTH - 1 {
        let fields: Vec<_> =
            (0..200).map(|k| json!({"name": format!("f{i}_{k}"), "type": "uint64"})).collect();
        let base = if i == 0 { String::new() } else { format!("c{}", i - 1) };
        structs.push(json!({"name": format!("c{i}"), "base": base, "fields": fields}));
    }
    for i in 0..5000 {
        structs.push(json!({"name": format!("d{i}"), "base": format!("c{}", MAX_DEPTH - 2)}));
    }
    let started = std::time::Instant::now();
    let abi = abi_json(json!({"version": "eosio::abi/1.1", "structs": structs})).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(abi.has_type("d4999[]"));
    assert!(!abi.has_type("d5000"));
}
