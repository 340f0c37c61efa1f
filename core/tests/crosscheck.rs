//! Cross-check of `rempart-core` against the real Antelope clients eosjs 22.1.0 and
//! @wharfkit/antelope 1.2.0, run under node by `tests/clients/crosscheck.mjs`.
//!
//! One node process gets one JSON request (inputs, core's ABIs, and what core signed and
//! packed) and answers with what each client produced and what it thought of core's output.
//! JS → Rust: keys, signatures, names, assets, ABI binaries and a signed transaction made by
//! the clients must parse, verify, recover and re-encode identically in core. Rust → JS: the
//! clients must verify and recover core's K1 and R1 signatures and decode core's packed
//! transactions to the same content. Vectors from TESTING.md are checked too.
//!
//! This test must never pass without having compared anything: when node or the npm packages
//! are missing it fails under `CI=true` and says what to install; elsewhere it says why it
//! returned early.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use rempart_core::abi::{
    AbiDef, EOSIO_SYSTEM_ABI_JSON, EOSIO_TOKEN_ABI_JSON, eosio_system_abi, eosio_token_abi,
};
use rempart_core::key::{KeyType, PrivateKey, PublicKey, Signature};
use rempart_core::name::NameError;
use rempart_core::transaction::{
    Action, Compression, PackedTransaction, SignedTransaction, Transaction, UnpackLimits,
};
use rempart_core::{Asset, Bytes, Checksum256, Name, from_bytes, to_bytes};
use serde_json::{Value, json};

/// The vectors of TESTING.md: one key in its four string forms.
const WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";
const PVT_K1: &str = "PVT_K1_2bfGi9rYsXQSXXTvJbDAPhHLQUojjaNLomdm3cEJ1XTzMqUt3V";
const PUB_LEGACY: &str = "EOS6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5GDW5CV";
const PUB_K1: &str = "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63";

/// EOS mainnet's chain id: any fixed 32 bytes would do, a real one reads better.
const CHAIN_ID: &str = "aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("core/ sits in the repository").into()
}

/// Whether node and the installed npm clients are there; if not, fail under CI, skip elsewhere.
fn clients_available(clients: &Path) -> bool {
    let node = Command::new("node").arg("--version").output();
    let missing = match node {
        Ok(out) if out.status.success() => {
            if clients.join("node_modules/eosjs/package.json").is_file()
                && clients.join("node_modules/@wharfkit/antelope/package.json").is_file()
            {
                return true;
            }
            "the npm clients are not installed: run `npm ci` in tests/clients (tests/run.sh does)"
        }
        _ => "node is not installed: apt-get install --no-install-recommends nodejs npm",
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the eosjs/wharfkit cross-check cannot run: {missing}");
    }
    eprintln!("skipping the eosjs/wharfkit cross-check: {missing}");
    false
}

fn hexs(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn unhex(s: &Value) -> Vec<u8> {
    hex::decode(s.as_str().unwrap_or_else(|| panic!("expected a hex string, got {s}")))
        .unwrap_or_else(|e| panic!("bad hex {s}: {e}"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// A client's answer that must not be an error.
fn ok<'a>(v: &'a Value, what: &str) -> &'a Value {
    assert!(v.get("error").is_none(), "{what}: the client failed: {v}");
    v
}

fn secret(label: &str) -> String {
    hexs(&Checksum256::hash(label.as_bytes()).0)
}

fn chain_id() -> Checksum256 {
    Checksum256::from_str(CHAIN_ID).unwrap()
}

/// The transaction both sides build: a token transfer and a `newaccount` with two authorities.
fn transaction_json() -> Value {
    let authority = json!({
        "threshold": 2,
        "keys": [
            {"key": PUB_LEGACY, "weight": 1},
            {"key": "PUB_R1_5Xx67Vig3uUUbHL3iqNghv3rv1CXh9ddvGvpos6ANjb2M9aAWv", "weight": 1}
        ],
        "accounts": [{"permission": {"actor": "eosio", "permission": "active"}, "weight": 1}],
        "waits": [{"wait_sec": 3600, "weight": 1}]
    });
    json!({
        "expiration": "2024-01-01T00:00:50",
        "ref_block_num": 47_123,
        "ref_block_prefix": 3_181_255_313_u32,
        "max_net_usage_words": 0,
        "max_cpu_usage_ms": 0,
        "delay_sec": 0,
        "context_free_actions": [],
        "actions": [
            {
                "account": "eosio.token",
                "name": "transfer",
                "authorization": [{"actor": "alice", "permission": "active"}],
                "data": {"from": "alice", "to": "bob.x", "quantity": "12.3456 EOS",
                         "memo": "rent for March ✓"}
            },
            {
                "account": "eosio",
                "name": "newaccount",
                "authorization": [{"actor": "eosio", "permission": "active"}],
                "data": {"creator": "eosio", "name": "carol.12345", "owner": authority,
                         "active": authority}
            }
        ],
        "transaction_extensions": []
    })
}

/// Builds the transaction in core from its JSON, packing each action's data with core's ABIs.
fn core_transaction(json: &Value) -> Transaction {
    let mut json = json.clone();
    for action in json["actions"].as_array_mut().unwrap() {
        let account = text(&action["account"]);
        let abi = if account == "eosio" { eosio_system_abi() } else { eosio_token_abi() };
        let name: Name = text(&action["name"]).parse().unwrap();
        let data = abi.action_json_to_bin(name, &action["data"]).expect("core packs the data");
        action["data"] = Value::String(hexs(&data));
    }
    serde_json::from_value(json).expect("core reads the transaction JSON")
}

/// The key and digest pairs both sides sign.
fn sign_cases() -> Vec<(KeyType, String, Checksum256)> {
    let mut cases = Vec::new();
    for (i, key_type) in
        [KeyType::K1, KeyType::K1, KeyType::R1, KeyType::R1].into_iter().enumerate()
    {
        for j in 0..3 {
            let digest = Checksum256::hash(format!("digest {i} {j}").as_bytes());
            cases.push((key_type, secret(&format!("{key_type} key {i}")), digest));
        }
    }
    cases
}

fn private_key(key_type: KeyType, secret_hex: &str) -> PrivateKey {
    let bytes: [u8; 32] = hex::decode(secret_hex).unwrap().try_into().unwrap();
    PrivateKey::from_bytes(key_type, &bytes).unwrap()
}

struct RustSide {
    request: Value,
    transaction: Transaction,
    signed: SignedTransaction,
    public_keys: Vec<PublicKey>,
}

fn request() -> RustSide {
    let names = [
        "",
        "a",
        "eosio",
        "eosio.token",
        "eosio.null",
        "1",
        "zzzzzzzzzzzzj",
        "zzzzzzzzzzzz",
        "............",
        "a.",
        "a..b",
        ".a",
        "zzzzzzzzzzzzz",
        "1234512345123",
        "aaaaaaaaaaaaaa",
        "A",
        "eosio token",
        "6",
        "a-b",
    ];
    let name_values = [
        "0",
        "1",
        "15",
        "16",
        "6138663591592764928",
        "6138663577826885632",
        "18446744073709551615",
        "9223372036854775808",
        "12345678901234567890",
    ];
    let assets = [
        "1.0000 EOS",
        "-0.0001 SYS",
        "0 A",
        "10 ABCDEFG",
        "1.0 ABCDEFGH",
        "4611686018427387903 MAX",
        "4611686018427387904 MAX",
        "0.000000000000000001 TINY",
        "1.0000000000000000000 TOOPRECISE",
        "1.0000 eos",
        "1. EOS",
        ".5 EOS",
        "1.0000  EOS",
    ];
    let key_secrets: Vec<Value> = (0..3)
        .flat_map(|i| {
            [
                json!({"type": "K1", "secret": secret(&format!("fixed K1 {i}"))}),
                json!({"type": "R1", "secret": secret(&format!("fixed R1 {i}"))}),
            ]
        })
        .collect();
    let key_strings = [
        WIF,
        PVT_K1,
        PUB_LEGACY,
        PUB_K1,
        "PUB_R1_5Xx67Vig3uUUbHL3iqNghv3rv1CXh9ddvGvpos6ANjb2M9aAWv",
        "PVT_R1_tHggZ5wKxbrxY2Yt1EAviybdDcKk9Mq4DZQiwKCDWkJLqtU6",
    ];

    let cases = sign_cases();
    let sign_digests: Vec<Value> = cases
        .iter()
        .map(|(t, s, d)| json!({"type": t.as_str(), "secret": s, "digest": hexs(&d.0)}))
        .collect();
    // Rust -> JS: core signs every digest.
    let digest_signatures: Vec<Value> = cases
        .iter()
        .map(|(t, s, d)| {
            let key = private_key(*t, s);
            json!({"digest": hexs(&d.0), "signature": key.sign(d).to_string(),
                   "public_key": key.public_key().to_string()})
        })
        .collect();

    // Rust -> JS: core builds, packs and signs the transaction with a K1 and an R1 key.
    let transaction = core_transaction(&transaction_json());
    let k1: PrivateKey = WIF.parse().unwrap();
    let r1 = private_key(KeyType::R1, &secret("transaction R1 signer"));
    let mut signed = SignedTransaction::new(transaction.clone());
    signed.sign(&k1, &chain_id());
    signed.sign(&r1, &chain_id());
    let public_keys = vec![k1.public_key(), r1.public_key()];
    let zlib = PackedTransaction::from_signed(&signed, Compression::Zlib);

    let abis = json!({
        "eosio": serde_json::from_str::<Value>(EOSIO_SYSTEM_ABI_JSON).unwrap(),
        "eosio.token": serde_json::from_str::<Value>(EOSIO_TOKEN_ABI_JSON).unwrap(),
    });
    let request = json!({
        "chain_id": CHAIN_ID,
        "abis": abis,
        "transaction": transaction_json(),
        "transaction_signer_wif": WIF,
        "key_secrets": key_secrets,
        "key_strings": key_strings,
        "sign_digests": sign_digests,
        "names": names,
        "name_values": name_values,
        "assets": assets,
        "rust": {
            "digest_signatures": digest_signatures,
            "packed_trx": hexs(&to_bytes(&transaction)),
            "signatures": signed.signatures.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "public_keys": public_keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "packed_zlib": hexs(&to_bytes(&zlib)),
        },
    });
    RustSide { request, transaction, signed, public_keys }
}

fn run_clients(clients: &Path, request: &Value) -> Value {
    let mut child = Command::new("node")
        .arg(clients.join("crosscheck.mjs"))
        .current_dir(clients)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "crosscheck.mjs failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("crosscheck.mjs prints one JSON document")
}

#[test]
fn core_agrees_with_eosjs_and_wharfkit_both_ways() {
    let clients = repo_root().join("tests/clients");
    if !clients_available(&clients) {
        return;
    }
    let rust = request();
    let answer = run_clients(&clients, &rust.request);
    eprintln!("clients: {}", answer["versions"]);
    assert_eq!(answer["versions"]["eosjs"], "22.1.0");
    assert_eq!(answer["versions"]["wharfkit_antelope"], "1.2.0");

    let mut checked = 0usize;
    checked += keys(&answer["keys"]);
    checked += signatures(&answer["signatures"]);
    checked += names(&answer["names"]);
    checked += assets(&answer["assets"]);
    checked += abis(&answer["abis"]);
    checked += transactions(&rust, &answer["transaction"]);
    checked += verdicts(&rust, &answer["verdicts"]);
    eprintln!("cross-check: {checked} comparisons with eosjs and wharfkit agreed");
}

/// Key pairs made by the clients: core derives and formats every string form identically, and
/// parses each client string back to the same key.
fn keys(answer: &Value) -> usize {
    let mut n = 0;
    let pairs = answer["pairs"].as_array().unwrap();
    assert!(pairs.len() >= 10, "fixed and generated keys: {pairs:?}");
    for pair in pairs {
        let key_type: KeyType = text(&pair["type"]).parse().unwrap();
        let key = private_key(key_type, text(&pair["secret"]));
        for client in ["eosjs", "wharfkit"] {
            let forms = ok(&pair[client], client);
            let what = format!("{client} {} key {}", key_type, pair["source"]);
            assert_eq!(key.to_secret_string().as_str(), text(&forms["private"]), "{what}");
            assert_eq!(key.public_key().to_string(), text(&forms["public"]), "{what}");
            let parsed: PrivateKey = text(&forms["private"]).parse().unwrap();
            assert_eq!(parsed.public_key(), key.public_key(), "{what}");
            let public: PublicKey = text(&forms["public"]).parse().unwrap();
            assert_eq!(public, key.public_key(), "{what}");
            if key_type == KeyType::K1 {
                assert_eq!(key.to_wif().unwrap().as_str(), text(&forms["wif"]), "{what}");
                let legacy = key.public_key().to_legacy_string().unwrap();
                assert_eq!(legacy, text(&forms["legacy"]), "{what}");
                let from_wif: PrivateKey = text(&forms["wif"]).parse().unwrap();
                assert_eq!(from_wif.public_key(), key.public_key(), "{what}");
                assert_eq!(text(&forms["legacy"]).parse::<PublicKey>().unwrap(), public);
            } else {
                assert!(forms["wif"].is_null() && forms["legacy"].is_null());
                assert!(key.to_wif().is_none());
            }
            n += 1;
        }
    }
    // The strings of TESTING.md and a few more, as each client reads them.
    for entry in answer["parsed"].as_array().unwrap() {
        let input = text(&entry["input"]);
        let wk = ok(&entry["wharfkit"], input);
        let ej = ok(&entry["eosjs"], input);
        let public = if input.starts_with("PUB_") || input.starts_with("EOS") {
            input.parse::<PublicKey>().unwrap()
        } else {
            let key: PrivateKey = input.parse().unwrap();
            assert_eq!(key.to_secret_string().as_str(), text(&wk["private"]), "{input}");
            assert_eq!(key.to_secret_string().as_str(), text(&ej["private"]), "{input}");
            key.public_key()
        };
        assert_eq!(public.to_string(), text(&wk["public"]), "{input}");
        assert_eq!(public.to_string(), text(&ej["public"]), "{input}");
        n += 1;
    }
    // TESTING.md: the four forms are one key.
    let key: PrivateKey = WIF.parse().unwrap();
    assert_eq!(key.to_secret_string().as_str(), PVT_K1);
    assert_eq!(key.public_key().to_string(), PUB_K1);
    assert_eq!(key.public_key().to_legacy_string().unwrap(), PUB_LEGACY);
    assert_eq!(PUB_LEGACY.parse::<PublicKey>().unwrap(), key.public_key());
    n + 1
}

/// Signatures made by the clients over fixed digests: core parses them, prints them back
/// identically, verifies them and recovers the signer; K1 ones are canonical under fc's rule.
fn signatures(answer: &Value) -> usize {
    let mut n = 0;
    let cases = sign_cases();
    let entries = answer.as_array().unwrap();
    assert_eq!(entries.len(), cases.len());
    for (entry, (key_type, secret_hex, digest)) in entries.iter().zip(&cases) {
        assert_eq!(text(&entry["digest"]), hexs(&digest.0));
        let key = private_key(*key_type, secret_hex);
        let public = key.public_key();
        assert_eq!(text(&entry["public"]), public.to_string());
        for client in ["eosjs", "wharfkit"] {
            let s = text(ok(&entry[client], client));
            let sig: Signature = s.parse().unwrap_or_else(|e| panic!("{client} {s}: {e}"));
            assert_eq!(sig.to_string(), s, "{client}: core prints the signature back identically");
            assert!(sig.verify(digest, &public), "{client} {s} verifies in core");
            assert_eq!(sig.recover(digest).unwrap(), public, "{client} {s} recovers in core");
            assert_eq!(from_bytes::<Signature>(&to_bytes(&sig)).unwrap(), sig);
            if sig.key_type() == KeyType::K1 {
                assert!(sig.is_canonical(), "{client} K1 signatures are canonical");
            }
            n += 1;
        }
        // Both clients use elliptic's deterministic nonces: the same signature.
        assert_eq!(entry["eosjs"], entry["wharfkit"]);
        if *key_type == KeyType::R1 {
            // RFC 6979 with low S over P-256 on both sides: core's signature is byte-identical.
            assert_eq!(key.sign(digest).to_string(), text(&entry["wharfkit"]), "R1 RFC 6979");
            n += 1;
        }
    }
    n
}

/// Names: where eosjs (which validates) accepts a name, core reads the same u64, or refuses it
/// as not normalized and names the same normal form; where eosjs refuses, core refuses.
fn names(answer: &Value) -> usize {
    let mut n = 0;
    for entry in answer["from_strings"].as_array().unwrap() {
        let input = text(&entry["input"]);
        let core = input.parse::<Name>();
        match entry["eosjs"].get("error") {
            Some(_) => assert!(core.is_err(), "eosjs refuses {input:?}, core read {core:?}"),
            None => {
                let value: u64 = text(&entry["eosjs"]["value"]).parse().unwrap();
                let string = text(&entry["eosjs"]["string"]);
                // wharfkit is lenient on bad input but agrees on every name eosjs accepts.
                assert_eq!(text(&entry["wharfkit"]["value"]), value.to_string(), "{input:?}");
                assert_eq!(text(&entry["wharfkit"]["string"]), string, "{input:?}");
                match core {
                    Ok(name) => {
                        assert_eq!(name.0, value, "{input:?}");
                        assert_eq!(name.to_string(), string, "{input:?}");
                        assert_eq!(to_bytes(&name), value.to_le_bytes(), "{input:?}");
                    }
                    Err(NameError::NotNormalized { normalized, .. }) => {
                        assert_eq!(normalized, string, "{input:?}");
                        assert_eq!(normalized.parse::<Name>().unwrap().0, value, "{input:?}");
                    }
                    Err(e) => panic!("eosjs accepts {input:?} as {value}, core refuses: {e}"),
                }
            }
        }
        n += 1;
    }
    for entry in answer["from_values"].as_array().unwrap() {
        let value: u64 = text(&entry["value"]).parse().unwrap();
        let core = Name(value).to_string();
        assert_eq!(core, text(&entry["eosjs"]), "name of {value}");
        assert_eq!(core, text(&entry["wharfkit"]), "name of {value}");
        n += 1;
    }
    assert_eq!(Name::from_str("eosio.token").unwrap().0, 0x5530_EA03_3482_A600);
    n
}

/// Asset strings eosjs accepts and nodeos (so core) refuses, with nodeos's reason.
const NODEOS_REFUSES: &[(&str, &str)] = &[
    ("4611686018427387904 MAX", "magnitude of asset amount must be less than 2^62"),
    ("1. EOS", "missing decimal fraction after decimal point"),
];

/// Assets: where eosjs accepts the string, core reads it to the same 16 bytes and prints it
/// the same; where eosjs refuses it, core refuses it.
fn assets(answer: &Value) -> usize {
    let mut n = 0;
    for entry in answer.as_array().unwrap() {
        let input = text(&entry["input"]);
        let core = input.parse::<Asset>();
        match entry["eosjs"].get("error") {
            Some(e) => assert!(core.is_err(), "eosjs refuses {input:?} ({e}), core read {core:?}"),
            None => {
                if let Some((_, why)) = NODEOS_REFUSES.iter().find(|(s, _)| *s == input) {
                    assert!(core.is_err(), "{input:?}: nodeos refuses it ({why}): {core:?}");
                    n += 1;
                    continue;
                }
                let bytes = unhex(&entry["eosjs"]["hex"]);
                let asset = core.unwrap_or_else(|e| panic!("eosjs accepts {input:?}, core: {e}"));
                assert_eq!(to_bytes(&asset), bytes, "{input:?}");
                assert_eq!(asset.to_string(), text(&entry["eosjs"]["string"]), "{input:?}");
                assert_eq!(from_bytes::<Asset>(&bytes).unwrap(), asset, "{input:?}");
                if entry["wharfkit"].get("error").is_none() {
                    assert_eq!(unhex(&entry["wharfkit"]["hex"]), bytes, "{input:?}");
                }
            }
        }
        n += 1;
    }
    n
}

/// ABI binaries: the clients' encodings of core's ABIs decode to the same definition as
/// core's JSON, and core re-encodes them byte for byte as wharfkit does (both trailing
/// extensions written; eosjs omits `action_results`, which reads back as empty).
fn abis(answer: &Value) -> usize {
    let mut n = 0;
    for (account, json) in [("eosio", EOSIO_SYSTEM_ABI_JSON), ("eosio.token", EOSIO_TOKEN_ABI_JSON)]
    {
        let def = AbiDef::from_json(json).unwrap();
        let wharfkit = unhex(ok(&answer[account]["wharfkit"], account));
        let eosjs = unhex(ok(&answer[account]["eosjs"], account));
        assert_eq!(AbiDef::from_bin(&wharfkit).unwrap(), def, "{account}: wharfkit's binary");
        assert_eq!(AbiDef::from_bin(&eosjs).unwrap(), def, "{account}: eosjs's binary");
        assert_eq!(def.to_bin(), wharfkit, "{account}: core encodes as wharfkit does");
        assert_eq!(&wharfkit[..eosjs.len()], &eosjs[..], "{account}: eosjs is a prefix");
        n += 3;
    }
    n
}

/// The transaction as the clients packed and signed it.
fn transactions(rust: &RustSide, answer: &Value) -> usize {
    let chain_id = chain_id();
    let packed = to_bytes(&rust.transaction);
    let digest = rust.transaction.signing_digest(&chain_id, &[]);
    let k1_public: PublicKey = PUB_K1.parse().unwrap();

    // eosjs: serializeActions + serializeTransaction, signed by JsSignatureProvider.
    let eosjs = ok(&answer["eosjs"], "eosjs transaction");
    assert_eq!(hexs(&packed), text(&eosjs["packed_trx"]), "core packs as eosjs does");
    for (action, data) in
        rust.transaction.actions.iter().zip(eosjs["action_data"].as_array().unwrap())
    {
        assert_eq!(hexs(&action.data.0), text(data), "{} data", action.name);
    }
    assert_eq!(text(&eosjs["public_key"]), PUB_K1);
    let from_eosjs: Transaction = from_bytes(&unhex(&eosjs["packed_trx"])).unwrap();
    assert_eq!(from_eosjs, rust.transaction);
    for s in eosjs["signatures"].as_array().unwrap() {
        let sig: Signature = text(s).parse().unwrap();
        assert_eq!(sig.recover(&digest).unwrap(), k1_public, "eosjs's signature recovers");
        assert!(sig.verify(&digest, &k1_public));
    }

    // wharfkit: Transaction.from + signingDigest + PrivateKey.signDigest + PackedTransaction.
    let wk = ok(&answer["wharfkit"], "wharfkit transaction");
    assert_eq!(hexs(&packed), text(&wk["packed_trx"]), "core packs as wharfkit does");
    assert_eq!(hexs(&rust.transaction.id().0), text(&wk["id"]));
    assert_eq!(hexs(&digest.0), text(&wk["signing_digest"]));
    let signed: SignedTransaction = from_bytes(&unhex(&wk["signed_transaction"])).unwrap();
    assert_eq!(signed.transaction, rust.transaction);
    assert_eq!(hexs(&to_bytes(&signed)), text(&wk["signed_transaction"]));
    assert_eq!(signed.recover_keys(&chain_id).unwrap(), vec![k1_public]);
    let zlib = &wk["packed_zlib"];
    assert_eq!(zlib["compression"], 1);
    let packed_zlib: PackedTransaction = from_bytes(&unhex(&zlib["packed_transaction"])).unwrap();
    assert_eq!(packed_zlib.compression, Compression::Zlib);
    let limits = UnpackLimits::default();
    assert_eq!(packed_zlib.unpack_transaction(&limits).unwrap(), rust.transaction);
    assert_eq!(packed_zlib.context_free_data(&limits).unwrap(), Vec::<Bytes>::new());
    assert_eq!(packed_zlib.signing_digest(&chain_id, &limits).unwrap(), digest);
    assert_eq!(packed_zlib.recover_keys(&chain_id, &limits).unwrap(), vec![k1_public]);
    assert_eq!(hexs(&to_bytes(&packed_zlib)), text(&zlib["packed_transaction"]));
    6
}

/// Rust -> JS: what the clients thought of core's signatures and packed transactions.
fn verdicts(rust: &RustSide, answer: &Value) -> usize {
    let mut n = 0;
    let wk = ok(&answer["wharfkit"], "wharfkit verdicts");
    let sent = rust.request["rust"]["digest_signatures"].as_array().unwrap();
    for (i, verdict) in wk["digest_signatures"].as_array().unwrap().iter().enumerate() {
        let sent = &sent[i];
        for client in ["wharfkit", "eosjs"] {
            let v = ok(&verdict[client], client);
            let what = format!("{client} on core's {}", text(&sent["signature"]));
            assert_eq!(v["verifies"], true, "{what}: verifies");
            assert_eq!(v["recovered"], sent["public_key"], "{what}: recovers the signer");
            assert_eq!(v["reencoded"], sent["signature"], "{what}: prints it back");
            n += 1;
        }
    }
    assert_eq!(n, 2 * sent.len());

    let chain_id = chain_id();
    let trx = ok(&wk["transaction"], "wharfkit on core's transaction");
    assert_eq!(text(&trx["id"]), hexs(&rust.transaction.id().0));
    assert_eq!(text(&trx["signing_digest"]), hexs(&rust.signed.signing_digest(&chain_id).0));
    assert_eq!(text(&trx["reencoded"]), hexs(&to_bytes(&rust.transaction)));
    let expected_data = action_data_json(&rust.transaction.actions);
    assert_eq!(trx["action_data"], Value::Array(expected_data.clone()), "wharfkit's action JSON");
    for (i, s) in trx["signatures"].as_array().unwrap().iter().enumerate() {
        assert_eq!(s["verifies"], true, "wharfkit verifies core's transaction signature {i}");
        assert_eq!(text(&s["recovered"]), rust.public_keys[i].to_string());
        n += 1;
    }
    assert_eq!(n, 2 * sent.len() + 2, "a K1 and an R1 transaction signature");
    let zlib = ok(&wk["packed_zlib"], "wharfkit on core's zlib packed_transaction");
    assert_eq!(zlib["compression"], 1);
    assert_eq!(text(&zlib["id"]), hexs(&rust.transaction.id().0));
    let sigs: Vec<String> = rust.signed.signatures.iter().map(ToString::to_string).collect();
    assert_eq!(zlib["signatures"], json!(sigs));

    let eosjs = ok(&answer["eosjs"], "eosjs on core's transaction");
    let actions = eosjs["json"]["actions"].as_array().unwrap();
    let eosjs_data: Vec<Value> = actions.iter().map(|a| a["data"].clone()).collect();
    assert_eq!(eosjs_data, expected_data, "eosjs decodes core's action data");
    assert_eq!(eosjs["json"]["ref_block_prefix"], 3_181_255_313_u32);
    n + 3
}

/// Core's own JSON of each action's data, the form the clients are compared with.
fn action_data_json(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .map(|a| {
            let abi = if a.account.to_string() == "eosio" {
                eosio_system_abi()
            } else {
                eosio_token_abi()
            };
            abi.action_bin_to_json(a.name, &a.data.0).unwrap()
        })
        .collect()
}
