//! Issue 8 point 4 and issue 3's live switch, end to end with real processes: a producer node
//! and an api node (`rempart-node`), the `rempart-signer` daemon under its shipped sandbox with
//! the block key in SoftHSM2, and three virtual YubiKeys as admin cards (threshold 2) in a
//! private pcscd. While blocks keep coming, a rotation approved by two creates the next key in
//! the HSM; `eosio::regproducer` announces it on chain; the next block carries it in
//! `new_producers` and the one after is the first of schedule version 1, signed by the new key
//! through the same signer, never restarted; then two admins retire the old key, which is
//! refused from then on. Checked: the producer's missed-slot counter never moves, the api node
//! follows throughout, and walking every block from the api node, each signature is the one
//! the signer audited for that height, by the key the schedule in force at it names (version 0
//! the old key, version 1 the new), over the digest the signer computed; the old key signed
//! nothing from the switch on, and the audit log's chain verifies.
#![cfg(feature = "yubikey")]

mod admin_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use admin_support::{
    DEV_WIF, Hsm, HsmSigner, Lab, Nodes, PIN, api, api_block, api_head, approve,
    audited_signatures, binary, call, enroll, have_softhsm, hsm_keygen, propose, signer_binary,
    submit, wait_for, write_genesis, write_secret,
};
use rempart_core::block::BlockHeader;
use rempart_core::key::{PrivateKey, PublicKey, Signature};
use rempart_core::protocol::{ErrorCode, Request, Response, SignBlockRequest};
use rempart_core::transaction::{Action, PermissionLevel, Transaction};
use rempart_core::{BlockTimestamp, Bytes, Checksum256, Name, TimePoint, TimePointSec, to_bytes};
use rempart_node::chain::sign_transaction;
use rempart_node::native::RegProducer;
use serde_json::json;

/// A counter from a metrics file in the Prometheus text format (0 while absent).
fn metric(file: &Path, name: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn a_key_rotation_switches_at_a_block_boundary_with_no_missed_slot() {
    let Some(mut lab) = Lab::start() else { return };
    if !have_softhsm() {
        return;
    }
    write_secret(&lab.path("pin"), &format!("{PIN}\n"));
    // Admins A (slot 0), B and C (slot 1, C last).
    lab.plug(0, "card-a", 41);
    lab.plug(1, "card-b", 42);
    let (ka, kb) = (enroll(0), enroll(1));
    lab.plug(1, "card-c", 43);
    let kc = enroll(1);

    let signer = signer_binary();
    let node = binary("rempart-node", "rempart-node", &[]);
    let hsm = Hsm::new(lab.dir.path());
    let old_key = hsm_keygen(&lab, &hsm, &signer);

    // The chain: eosio is the only producer, its blocks signed by the HSM key.
    let chain_id = write_genesis(&lab, &old_key);
    let chain = chain_id.to_string();

    let daemon = HsmSigner::start(&lab, &hsm, &signer, &chain, &old_key, &[ka, kb, kc]);
    let (state, socket, signer_log) = (&daemon.state, &daemon.socket, &daemon.log);

    // The producer and the api node following it.
    let nodes = Nodes::start(&lab, &node, socket);
    let http = nodes.http;
    let prom = lab.path("producer.prom");
    let missed = || metric(&prom, "rempart_node_missed_slots_total");
    let head_at_least = |n: u32, what: &str| {
        wait_for(what, Duration::from_secs(30), || {
            let h = api_head(http);
            (h >= n).then_some(h)
        })
    };
    head_at_least(4, "the api node to follow the producer's first blocks");
    let missed_before = missed();

    // The rotation, approved by A and C while blocks keep coming: the next key is in the HSM.
    let rotate =
        propose(&lab, &chain, "rotate.json", &["--action", "rotate", "--producer", "eosio"]);
    approve(&lab, &rotate, 0);
    approve(&lab, &rotate, 1);
    let before = api_head(http);
    let (code, out, err) = submit(&rotate, socket);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let new_key: PublicKey = out
        .lines()
        .find_map(|l| l.strip_prefix("new key: "))
        .unwrap_or_else(|| panic!("no new key in: {out}"))
        .parse()
        .expect("key");
    assert_ne!(new_key, old_key);
    head_at_least(before + 2, "blocks after the rotation");
    match call(socket, &Request::PublicKeys { request_id: 1 }) {
        Response::PublicKeys { keys, .. } => {
            let keys: Vec<PublicKey> = keys.iter().map(|k| k.block_signing_key).collect();
            assert_eq!(keys, vec![old_key, new_key], "the signer holds both keys");
        }
        other => panic!("{other:?}"),
    }

    // The new key announced on chain by eosio itself, with regproducer.
    let dev: PrivateKey = DEV_WIF.parse().expect("dev key");
    let info = api(http, "/v1/chain/get_info", &json!({})).expect("get_info");
    let head_id: Checksum256 = info["head_block_id"].as_str().expect("id").parse().expect("id");
    let eosio = Name::from_const("eosio");
    let mut t = Transaction {
        actions: vec![Action {
            account: eosio,
            name: Name::from_const("regproducer"),
            authorization: vec![PermissionLevel {
                actor: eosio,
                permission: Name::from_const("active"),
            }],
            data: Bytes(to_bytes(&RegProducer {
                producer: eosio,
                producer_key: new_key,
                url: "https://bp.example".into(),
                location: 0,
            })),
        }],
        ..Transaction::default()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time");
    t.header.expiration = TimePointSec(u32::try_from(now.as_secs()).expect("u32") + 120);
    t.set_reference_block(&head_id);
    let packed = sign_transaction(t, &[&dev], &chain_id);
    let pushed =
        api(http, "/v1/chain/push_transaction", &serde_json::to_value(&packed).expect("json"))
            .expect("push_transaction answers");
    let reg_block = u32::try_from(
        pushed["processed"]["block_num"].as_u64().unwrap_or_else(|| panic!("pushed: {pushed}")),
    )
    .expect("u32");

    // The switch: the block after announces version 1, the one after that is its first.
    let first_v1 = wait_for("schedule version 1 on the api node", Duration::from_secs(30), || {
        let head = api_head(http);
        (reg_block..=head).find(|n| api_block(http, *n)["schedule_version"] == json!(1))
    });
    assert_eq!(first_v1, reg_block + 2, "announced in {}, in force in the next", reg_block + 1);

    // The old key retired by A and C: refused from then on, production goes on.
    let old_text = old_key.to_string();
    let retire = propose(
        &lab,
        &chain,
        "retire.json",
        &["--action", "retire", "--producer", "eosio", "--key", &old_text],
    );
    approve(&lab, &retire, 0);
    approve(&lab, &retire, 1);
    let (code, out, err) = submit(&retire, socket);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let head = api_head(http);
    let ms = i64::try_from(now.as_millis()).expect("ms") + 60_000;
    let mut previous = Checksum256::ZERO;
    previous.0[..4].copy_from_slice(&(head + 100).to_be_bytes());
    let refused = call(
        socket,
        &Request::SignBlock(SignBlockRequest {
            request_id: 9,
            chain_id,
            header: BlockHeader {
                timestamp: BlockTimestamp::from_time_point(TimePoint::from_millis(ms)),
                producer: eosio,
                previous,
                ..BlockHeader::default()
            },
            blockroot_merkle_root: Checksum256::ZERO,
            pending_schedule_hash: Checksum256::ZERO,
            signing_key: old_key,
        }),
    );
    match refused {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::UnknownKey);
            assert!(e.message.contains("retired"), "{}", e.message);
        }
        other => panic!("the retired key signed: {other:?}"),
    }
    let last = head_at_least(head + 4, "blocks after the retirement");

    // No slot missed across the whole rotation.
    assert_eq!(
        missed(),
        missed_before,
        "missed slots during the rotation; producer log:\n{}\nsigner log:\n{}",
        log_tail(&lab.path("producer.log")),
        log_tail(signer_log)
    );

    // Every block, walked from the api node, is signed by the key its schedule names.
    let audited = audited_signatures(&state.join("audit.jsonl"));
    let mut announced = Vec::new();
    for num in 2..=last {
        let b = api_block(http, num);
        let version = b["schedule_version"].as_u64().expect("schedule_version");
        let expected = match version {
            0 => old_key,
            1 => new_key,
            v => panic!("block {num}: schedule version {v}"),
        };
        assert_eq!(version == 1, num >= first_v1, "block {num}: version {version}");
        if !b["new_producers"].is_null() {
            announced.push((num, b["new_producers"].clone()));
        }
        let signature: Signature =
            b["producer_signature"].as_str().expect("signature").parse().expect("signature");
        let (key, digest, audited_sig) =
            audited.get(&num).unwrap_or_else(|| panic!("block {num} not in the signer's audit"));
        assert_eq!(signature, *audited_sig, "block {num}");
        assert_eq!(*key, expected, "block {num} signed by a key its schedule does not name");
        assert_eq!(signature.recover(digest).expect("recover"), expected, "block {num}");
    }
    assert_eq!(announced.len(), 1, "{announced:?}");
    let (num, schedule) = &announced[0];
    assert_eq!(*num, first_v1 - 1);
    assert_eq!(schedule["version"], json!(1));
    assert_eq!(schedule["producers"][0]["block_signing_key"], json!(new_key.to_string()));
    // The old key signed nothing from the switch on (nor anything at all above it).
    assert!(
        audited.iter().all(|(n, (k, _, _))| *k != old_key || *n < first_v1),
        "the old key signed after the switch"
    );

    let out = Command::new(&signer)
        .args(["audit", "verify"])
        .arg(state.join("audit.jsonl"))
        .output()
        .expect("audit verify");
    assert!(out.status.success(), "{out:?}");
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).expect("audit");
    assert!(audit.contains("\"reason\":\"retired_key\""), "the refusal is audited");
}
