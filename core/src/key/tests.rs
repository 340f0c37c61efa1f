use super::*;

#[test]
fn vectors() {
    let k: PrivateKey = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3".parse().unwrap();
    assert_eq!(
        k.public_key().to_string(),
        "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63"
    );
}
