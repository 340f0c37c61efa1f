use super::*;

fn shipped() -> Genesis {
    Genesis::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"))
        .expect("policies/genesis.json must be valid")
}

#[test]
fn shipped_genesis_is_valid_and_id_is_stable() {
    let g = shipped();
    assert_eq!(g.initial_schedule.producers[0].producer_name, Name::from_const("eosio"));
    // The id is the hash of the packed genesis: changing any field changes it.
    let id = g.chain_id();
    let mut other = g.clone();
    other.initial_timestamp = TimePoint(other.initial_timestamp.0 + 500_000);
    assert_ne!(id, other.chain_id());
    assert_eq!(id, shipped().chain_id());
}

#[test]
fn duplicate_producers_are_refused() {
    let mut g = shipped();
    let p = g.initial_schedule.producers[0].clone();
    g.initial_schedule.producers.push(p);
    assert!(g.validate().is_err());
}

#[test]
fn unknown_fields_are_refused() {
    let text = r#"{"initial_timestamp":"2024-01-01T00:00:00.000",
        "initial_key":"EOS6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5GDW5CV",
        "initial_schedule":{"version":0,"producers":[]}, "extra": 1}"#;
    assert!(serde_json::from_str::<Genesis>(text).is_err());
}
