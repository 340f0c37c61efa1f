//! What the unit tests of the signing server and of its admin side share: a development policy
//! for one producer key (soft backend, a state directory of the test's own) with room for an
//! extra section, and a keyring over soft keys. Test code only; it never touches a path outside
//! the directory a test passes.

use std::path::Path;
use std::sync::Arc;

use rempart_core::key::{PrivateKey, PublicKey};

use crate::keyring::Keyring;
use crate::keyring::soft::SoftBackend;
use crate::metrics::Metrics;
use crate::policy::Policy;

/// The chain of [`policy`].
pub(crate) const CHAIN: &str = "0101010101010101010101010101010101010101010101010101010101010101";

const POLICY: &str = r#"
[chain]
id = "0101010101010101010101010101010101010101010101010101010101010101"
dangerous_dev_chain = true
max_clock_skew_ms = 2000
[[producers]]
account = "eosio"
key = "KEY"
[backend]
kind = "soft"
[backend.soft]
key_files = ["/unused"]
[listen]
unix_socket = "/unused.sock"
allow_own_uid = true
[state]
dir = "DIR"
audit_log = "DIR/audit.jsonl"
"#;

/// The policy text: `eosio` signs with `key`, state and audit log in `dir`, then `extra`
/// (further sections, such as `[admin]`).
pub(crate) fn policy_text(dir: &Path, key: &PublicKey, extra: &str) -> String {
    POLICY.replace("KEY", &key.to_string()).replace("DIR", dir.to_str().unwrap()) + extra
}

/// [`policy_text`] with nothing extra, parsed.
pub(crate) fn policy(dir: &Path, key: &PublicKey) -> Policy {
    Policy::from_toml(Path::new("/t/signer.toml"), &policy_text(dir, key, "")).unwrap()
}

/// A keyring over `keys` (soft backend, 8 attempts for a canonical signature).
pub(crate) fn ring(keys: Vec<PrivateKey>, metrics: &Arc<Metrics>) -> Keyring {
    Keyring::new(Box::new(SoftBackend::from_keys(keys)), 8, metrics.clone()).unwrap()
}
