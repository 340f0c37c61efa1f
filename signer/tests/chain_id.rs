//! The shipped signing policy serves the shipped chain: `policies/signer.toml`'s chain id is the
//! id `rempart-node` computes for `policies/genesis.json` (sha256 of the packed genesis), and it
//! signs for the genesis producers with their scheduled keys. A genesis change that forgets the
//! signer policy fails here instead of as a `wrong_chain` refusal at the first block.

use std::path::{Path, PathBuf};

use rempart_node::genesis::Genesis;
use rempart_signer::policy::Policy;

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

#[test]
fn the_shipped_signer_policy_names_the_shipped_genesis_chain() {
    let genesis = Genesis::load(&policies().join("genesis.json")).unwrap();
    let policy = Policy::load(&policies().join("signer.toml")).unwrap();
    assert_eq!(
        policy.chain_id,
        genesis.chain_id(),
        "policies/signer.toml [chain] id must be the chain id of policies/genesis.json (what \
         `rempart-node init` prints)"
    );
    for p in &genesis.initial_schedule.producers {
        assert_eq!(
            policy.key_for(p.producer_name),
            Some(&p.block_signing_key),
            "the signer must sign for genesis producer {} with its scheduled key",
            p.producer_name
        );
    }
}
