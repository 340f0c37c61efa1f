use super::*;
use crate::codec::{from_bytes, to_bytes};

#[test]
fn asset_string_forms() {
    for s in [
        "1.0000 SYS",
        "-0.0001 EOS",
        "0 ZERO",
        "4611686018427387903 MAX",
        "0.000000000000000001 ABCDEFG",
    ] {
        let a: Asset = s.parse().unwrap();
        assert_eq!(a.to_string(), s);
        assert_eq!(from_bytes::<Asset>(&to_bytes(&a)).unwrap(), a);
    }
    let a: Asset = "1.0000 SYS".parse().unwrap();
    assert_eq!(a.amount, 10000);
    assert_eq!(a.symbol.precision(), 4);
    assert_eq!(a.symbol.to_string(), "4,SYS");
}

#[test]
fn asset_binary_layout() {
    let a: Asset = "1.0000 SYS".parse().unwrap();
    assert_eq!(hex::encode(to_bytes(&a)), "10270000000000000453595300000000");
}

#[test]
fn asset_rejects_bad_strings() {
    for s in [
        "1.0000",
        "1. SYS",
        ".5 SYS",
        "1.0 sys",
        "1.0 TOOLONGX",
        "4611686018427387904 MAX",
        "1,0 SYS",
        "",
        "1.0000000000000000000 SYS",
        "--1 A",
    ] {
        assert!(s.parse::<Asset>().is_err(), "{s:?} should be rejected");
    }
}

#[test]
fn symbol_code_validity_on_decode() {
    let bad = Symbol((0x61 << 8) | 4); // lower-case 'a'
    assert!(from_bytes::<Symbol>(&to_bytes(&bad)).is_err());
    let gap = Symbol((0x0041_0041 << 8) | 4); // "A\0A"
    assert!(from_bytes::<Symbol>(&to_bytes(&gap)).is_err());
    let sym: Symbol = "4,EOS".parse().unwrap();
    assert_eq!(from_bytes::<Symbol>(&to_bytes(&sym)).unwrap(), sym);
    assert!("19,EOS".parse::<Symbol>().is_err());
}

#[test]
fn extended_asset_json() {
    let e: ExtendedAsset =
        serde_json::from_str(r#"{"quantity":"1.0000 EOS","contract":"eosio.token"}"#).unwrap();
    assert_eq!(e.quantity.amount, 10000);
    assert_eq!(from_bytes::<ExtendedAsset>(&to_bytes(&e)).unwrap(), e);
}
