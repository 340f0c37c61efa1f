//! The C token contract through the VM over a real store: the reference token's behaviour,
//! messages and RAM payers, notifications of `from` and `to`, and determinism across stores.

use rempart_core::{Name, Symbol};
use rempart_node::vm::VmError;

use super::common::{Chain, asset, n, pack, token_wasm};

const ACCOUNTS: &[&str] = &["eosio.token", "issuer", "alice", "bob"];

fn token_chain() -> Chain {
    let chain = Chain::new(ACCOUNTS);
    let info = chain.set_code("eosio.token", &token_wasm()).expect("setcode");
    assert!(info.imports.iter().any(|i| i == "db_store_i64"));
    chain
}

fn create(chain: &Chain, max: &str) -> Result<(), VmError> {
    chain
        .push("eosio.token", "create", &["eosio.token"], pack(&[&n("issuer"), &asset(max)]))
        .map(drop)
}

fn issue(chain: &Chain, to: &str, qty: &str) -> Result<(), VmError> {
    let data = pack(&[&n(to), &asset(qty), &"issue".to_string()]);
    chain.push("eosio.token", "issue", &["issuer"], data).map(drop)
}

fn transfer(
    chain: &Chain,
    from: &str,
    to: &str,
    qty: &str,
    memo: &str,
) -> Result<Vec<Name>, VmError> {
    let data = pack(&[&n(from), &n(to), &asset(qty), &memo.to_string()]);
    chain.push("eosio.token", "transfer", &[from], data).map(|p| p.notified)
}

fn assert_fails(r: Result<impl std::fmt::Debug, VmError>, message: &str) {
    match r {
        Err(VmError::Assert(m)) => assert_eq!(m, message),
        other => panic!("expected assertion {message:?}, got {other:?}"),
    }
}

#[test]
fn create_issue_transfer_and_balances() {
    let chain = token_chain();
    create(&chain, "1000000.0000 SYS").expect("create");
    issue(&chain, "issuer", "1000.0000 SYS").expect("issue");
    assert_eq!(chain.balance("eosio.token", "issuer", "SYS"), Some(asset("1000.0000 SYS")));

    let notified = transfer(&chain, "issuer", "alice", "10.0000 SYS", "hi").expect("transfer");
    assert_eq!(notified, vec![n("issuer"), n("alice")], "from and to are notified, in order");
    assert_eq!(chain.balance("eosio.token", "issuer", "SYS"), Some(asset("990.0000 SYS")));
    assert_eq!(chain.balance("eosio.token", "alice", "SYS"), Some(asset("10.0000 SYS")));
    // alice did not authorise, so the sender paid for her row.
    let sys = asset("1.0000 SYS").symbol.code().0;
    assert_eq!(chain.payer("eosio.token", "alice", "accounts", sys), Some(n("issuer")));

    transfer(&chain, "alice", "bob", "2.5000 SYS", "").expect("second transfer");
    assert_eq!(chain.balance("eosio.token", "alice", "SYS"), Some(asset("7.5000 SYS")));
    assert_eq!(chain.balance("eosio.token", "bob", "SYS"), Some(asset("2.5000 SYS")));

    // The stat row tracks the supply.
    let st = chain
        .store
        .read()
        .unwrap()
        .get(&rempart_node::store::key::row(n("eosio.token"), Name(sys), n("stat"), sys))
        .unwrap()
        .expect("stat row");
    let (payer, row) = rempart_node::vm::decode_row(&st).unwrap();
    assert_eq!(payer, n("eosio.token"));
    let ((supply, max), issuer): ((rempart_core::Asset, rempart_core::Asset), Name) =
        rempart_core::from_bytes(row).expect("stat row decodes");
    assert_eq!(
        (supply, max, issuer),
        (asset("1000.0000 SYS"), asset("1000000.0000 SYS"), n("issuer"))
    );
}

#[test]
fn reference_token_errors() {
    let chain = token_chain();
    assert!(matches!(
        chain.push("eosio.token", "create", &["alice"], pack(&[&n("issuer"), &asset("1.0000 SYS")])),
        Err(VmError::MissingAuth(a)) if a == n("eosio.token")
    ));
    assert_fails(create(&chain, "0.0000 SYS"), "max-supply must be positive");
    create(&chain, "100.0000 SYS").expect("create");
    assert_fails(create(&chain, "100.0000 SYS"), "token with symbol already exists");
    assert_fails(
        issue(&chain, "alice", "1.0000 SYS"),
        "tokens can only be issued to issuer account",
    );
    assert_fails(
        issue(&chain, "issuer", "1.0000 XYZ"),
        "token with symbol does not exist, create token before issue",
    );
    assert_fails(issue(&chain, "issuer", "1.000 SYS"), "symbol precision mismatch");
    assert_fails(issue(&chain, "issuer", "-1.0000 SYS"), "must issue positive quantity");
    assert_fails(issue(&chain, "issuer", "100.0001 SYS"), "quantity exceeds available supply");
    issue(&chain, "issuer", "50.0000 SYS").expect("issue");

    assert_fails(transfer(&chain, "issuer", "issuer", "1.0000 SYS", ""), "cannot transfer to self");
    assert_fails(
        transfer(&chain, "issuer", "nobody", "1.0000 SYS", ""),
        "to account does not exist",
    );
    assert_fails(transfer(&chain, "issuer", "alice", "51.0000 SYS", ""), "overdrawn balance");
    assert_fails(transfer(&chain, "alice", "bob", "1.0000 SYS", ""), "no balance object found");
    assert_fails(transfer(&chain, "issuer", "alice", "1.00 SYS", ""), "symbol precision mismatch");
    assert_fails(
        transfer(&chain, "issuer", "alice", "0.0000 SYS", ""),
        "must transfer positive quantity",
    );
    assert_fails(
        transfer(&chain, "issuer", "alice", "1.0000 SYS", &"m".repeat(257)),
        "memo has more than 256 bytes",
    );
    assert!(matches!(
        chain.push("eosio.token", "transfer", &["alice"],
            pack(&[&n("issuer"), &n("alice"), &asset("1.0000 SYS"), &String::new()])),
        Err(VmError::MissingAuth(a)) if a == n("issuer")
    ));
    // Truncated action data fails the way CDT's datastream does.
    assert_fails(chain.push("eosio.token", "transfer", &["issuer"], vec![1, 2, 3]), "read");
    // An action the contract does not have: CDT's dispatcher error code.
    match chain.push("eosio.token", "mint", &["issuer"], vec![]) {
        Err(VmError::AssertCode(code)) => assert_eq!(code, 8_000_000_000_000_000_000),
        other => panic!("expected eosio_assert_code, got {other:?}"),
    }
    // Nothing of the failures reached the state.
    assert_eq!(chain.balance("eosio.token", "issuer", "SYS"), Some(asset("50.0000 SYS")));
    assert_eq!(chain.balance("eosio.token", "alice", "SYS"), None);
}

#[test]
fn open_close_and_retire() {
    let chain = token_chain();
    create(&chain, "100.0000 SYS").expect("create");
    issue(&chain, "issuer", "10.0000 SYS").expect("issue");
    let sys: Symbol = "4,SYS".parse().unwrap();

    let open = |owner: &str, sym: Symbol, payer: &str| {
        chain.push("eosio.token", "open", &[payer], pack(&[&n(owner), &sym, &n(payer)]))
    };
    assert_fails(open("nobody", sys, "alice"), "owner account does not exist");
    assert_fails(open("bob", "2,SYS".parse().unwrap(), "alice"), "symbol precision mismatch");
    assert_fails(open("bob", "4,XYZ".parse().unwrap(), "alice"), "symbol does not exist");
    open("bob", sys, "alice").expect("open");
    assert_eq!(chain.balance("eosio.token", "bob", "SYS"), Some(asset("0.0000 SYS")));
    assert_eq!(chain.payer("eosio.token", "bob", "accounts", sys.code().0), Some(n("alice")));
    open("bob", sys, "alice").expect("open again is a no-op");

    let close =
        |owner: &str| chain.push("eosio.token", "close", &[owner], pack(&[&n(owner), &sys]));
    transfer(&chain, "issuer", "bob", "1.0000 SYS", "").expect("transfer");
    assert_fails(close("bob"), "Cannot close because the balance is not zero.");
    transfer(&chain, "bob", "issuer", "1.0000 SYS", "").expect("transfer back");
    close("bob").expect("close");
    assert_eq!(chain.balance("eosio.token", "bob", "SYS"), None);
    assert_fails(
        close("bob"),
        "Balance row already deleted or never existed. Action won't have any effect.",
    );

    let retire = |qty: &str, auth: &str| {
        chain.push("eosio.token", "retire", &[auth], pack(&[&asset(qty), &String::new()]))
    };
    assert!(matches!(retire("1.0000 SYS", "alice"), Err(VmError::MissingAuth(_))));
    assert_fails(retire("0.0000 SYS", "issuer"), "must retire positive quantity");
    retire("4.0000 SYS", "issuer").expect("retire");
    assert_eq!(chain.balance("eosio.token", "issuer", "SYS"), Some(asset("6.0000 SYS")));
}

/// Runs the same actions on a fresh chain and returns its whole state.
fn scripted_state() -> Vec<(Vec<u8>, Vec<u8>)> {
    let chain = token_chain();
    create(&chain, "1000000.0000 SYS").unwrap();
    create(&chain, "500.000 ABC").unwrap();
    issue(&chain, "issuer", "1000.0000 SYS").unwrap();
    for i in 0..20 {
        let to = if i % 2 == 0 { "alice" } else { "bob" };
        transfer(&chain, "issuer", to, &format!("{}.0001 SYS", i + 1), "memo").unwrap();
    }
    let _ = transfer(&chain, "alice", "bob", "999.0000 SYS", "fails");
    transfer(&chain, "alice", "bob", "1.0000 SYS", "").unwrap();
    chain.state()
}

#[test]
fn same_actions_on_two_stores_give_identical_rows() {
    let a = scripted_state();
    let b = scripted_state();
    assert!(a.iter().any(|(k, _)| k[0] == b't'), "contract rows were written");
    assert_eq!(a, b);
}

#[test]
fn relay_contract_is_notified_and_sends_an_inline_transfer() {
    let chain = Chain::new(&["eosio.token", "issuer", "alice", "relay"]);
    chain.set_code("eosio.token", &token_wasm()).expect("setcode token");
    chain.set_code("relay", &super::common::contract_file("relay.wasm")).expect("setcode relay");
    create(&chain, "100.0000 SYS").unwrap();
    issue(&chain, "issuer", "10.0000 SYS").unwrap();

    let data = pack(&[&n("issuer"), &n("relay"), &asset("3.0000 SYS"), &"in".to_string()]);
    let pushed = chain.push("eosio.token", "transfer", &["issuer"], data).expect("transfer");
    assert_eq!(pushed.notified, vec![n("issuer"), n("relay")]);
    assert_eq!(pushed.notified_console, vec!["relay notified".to_string()]);

    let pay = chain
        .push("relay", "pay", &["relay"], pack(&[&n("alice"), &asset("1.0000 SYS")]))
        .expect("pay");
    assert_eq!(pay.outcome.console, "relay sent");
    let [inline] = pay.inline.as_slice() else { panic!("one inline action: {:?}", pay.inline) };
    assert_eq!((inline.account, inline.name), (n("eosio.token"), n("transfer")));
    assert_eq!(inline.authorization.len(), 1);
    assert_eq!(
        (inline.authorization[0].actor, inline.authorization[0].permission),
        (n("relay"), n("active"))
    );
    let expected = pack(&[&n("relay"), &n("alice"), &asset("1.0000 SYS"), &"relay".to_string()]);
    assert_eq!(inline.data.0, expected);
    // The harness does not run inline actions; apply it as the chain would.
    chain.push("eosio.token", "transfer", &["relay"], inline.data.0.clone()).expect("inline");
    assert_eq!(chain.balance("eosio.token", "alice", "SYS"), Some(asset("1.0000 SYS")));
    assert_eq!(chain.balance("eosio.token", "relay", "SYS"), Some(asset("2.0000 SYS")));
    assert!(matches!(
        chain.push("relay", "pay", &["alice"], pack(&[&n("alice"), &asset("1.0000 SYS")])),
        Err(VmError::MissingAuth(a)) if a == n("relay")
    ));
}
