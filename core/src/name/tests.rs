use super::*;

fn n(s: &str) -> Name {
    s.parse().unwrap()
}

#[test]
fn known_values() {
    assert_eq!(n("eosio.token").value(), 0x5530EA033482A600);
    assert_eq!(n("eosio").value(), 0x5530EA0000000000);
    assert_eq!(n("").value(), 0);
    assert_eq!(Name::from_const("eosio.token"), n("eosio.token"));
    assert_eq!(n("active").value(), 3617214756542218240);
    assert_eq!(n("owner").value(), 12044502819693133824);
}

#[test]
fn round_trip_including_thirteenth_char() {
    for s in ["a", "zzzzzzzzzzzzj", "1.2.3.4.5", "eosio.msig", "abcdefghijklj", "a.b"] {
        assert_eq!(n(s).to_string(), s);
    }
    assert_eq!(Name(u64::MAX).to_string(), "zzzzzzzzzzzzj");
}

#[test]
fn rejects_non_normalized_and_invalid() {
    assert!(matches!("a.".parse::<Name>(), Err(NameError::NotNormalized { .. })));
    assert!(matches!("Abc".parse::<Name>(), Err(NameError::BadChar { ch: 'A', .. })));
    assert!(matches!("abc6".parse::<Name>(), Err(NameError::BadChar { ch: '6', .. })));
    assert!(matches!("aaaaaaaaaaaaak".parse::<Name>(), Err(NameError::TooLong(_))));
    assert!(matches!("aaaaaaaaaaaak".parse::<Name>(), Err(NameError::BadThirteenth(_))));
    assert!(matches!("é".parse::<Name>(), Err(NameError::BadChar { ch: 'é', .. })));
}

#[test]
fn serde_is_the_string_form() {
    let v: Name = serde_json::from_str("\"eosio.token\"").unwrap();
    assert_eq!(serde_json::to_string(&v).unwrap(), "\"eosio.token\"");
    assert!(serde_json::from_str::<Name>("\"a.\"").is_err());
}
