//! Unit tests of the sandbox's decisions that need no sandboxing of the test process: policy
//! checks, the landlock fail-closed rule, configuration values. What the sandbox does to a real
//! process is tested in `signer/tests/sandbox.rs` through the probe.

use landlock::{ABI, LandlockStatus, RulesetStatus};
use serde_json::json;

use super::{
    LandlockOutcome, MemoryLock, SandboxConfig, SandboxError, SeccompPolicy, SeccompPolicyError,
    landlock_outcome,
};

fn shipped() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/seccomp/signer.x86_64.json")
}

fn policy(doc: serde_json::Value) -> Result<SeccompPolicy, SeccompPolicyError> {
    SeccompPolicy::from_json(doc.to_string().as_bytes())
}

fn allowlist(rules: serde_json::Value) -> serde_json::Value {
    json!({ "allowlist": { "mismatch_action": "kill_process", "match_action": "allow",
                           "filter": rules } })
}

#[test]
fn shipped_policy_compiles_with_the_allowlist_installed_last() {
    let policy = SeccompPolicy::load(&shipped()).expect("the shipped policy is valid");
    assert_eq!(policy.filter_names(), ["clone3_enosys", "syslog_eacces", "allowlist"]);
}

#[test]
fn a_rule_without_a_comment_is_rejected() {
    let err = policy(allowlist(json!([{ "syscall": "read" }]))).unwrap_err();
    assert!(
        matches!(&err, SeccompPolicyError::Uncommented { filter, syscall }
            if filter == "allowlist" && syscall == "read"),
        "{err}"
    );
    let err = policy(allowlist(json!([{ "syscall": "read", "comment": "  " }]))).unwrap_err();
    assert!(matches!(err, SeccompPolicyError::Uncommented { .. }), "{err}");
}

#[test]
fn an_unconditional_rule_beside_another_entry_is_rejected() {
    let doc = allowlist(json!([
        { "syscall": "ioctl", "comment": "any" },
        { "syscall": "ioctl", "comment": "FIONBIO",
          "args": [{ "index": 1, "type": "dword", "op": "eq", "val": 21537 }] },
    ]));
    let err = policy(doc).unwrap_err();
    assert!(matches!(&err, SeccompPolicyError::Duplicate { syscall, .. } if syscall == "ioctl"));
    assert!(err.to_string().contains("without `args`"), "{err}");
}

#[test]
fn several_conditional_entries_for_one_call_are_alternatives() {
    let doc = allowlist(json!([
        { "syscall": "ioctl", "comment": "FIONBIO",
          "args": [{ "index": 1, "type": "dword", "op": "eq", "val": 21537 }] },
        { "syscall": "ioctl", "comment": "FIOCLEX",
          "args": [{ "index": 1, "type": "dword", "op": "eq", "val": 21585 }] },
    ]));
    assert!(policy(doc).is_ok());
}

#[test]
fn a_policy_must_have_exactly_one_allowlist() {
    let refinement = json!({ "mismatch_action": "allow", "match_action": { "errno": 38 },
                             "filter": [{ "syscall": "clone3", "comment": "ENOSYS" }] });
    let err = policy(json!({ "only": refinement })).unwrap_err();
    assert!(err.to_string().contains("no allowlist"), "{err}");

    let list = json!({ "mismatch_action": "kill_process", "match_action": "allow",
                       "filter": [{ "syscall": "read", "comment": "r" }] });
    let err = policy(json!({ "a": list, "b": list })).unwrap_err();
    assert!(err.to_string().contains("2 allowlists (a, b)"), "{err}");
}

#[test]
fn a_filter_that_could_widen_or_soften_is_rejected() {
    for (mismatch, on_match) in [
        (json!("allow"), json!("allow")),
        (json!("trap"), json!("allow")),
        (json!({ "errno": 1 }), json!("allow")),
        (json!("log"), json!("allow")),
        (json!("kill_process"), json!("log")),
    ] {
        let doc = json!({ "f": { "mismatch_action": mismatch, "match_action": on_match,
                                 "filter": [{ "syscall": "read", "comment": "r" }] } });
        let err = policy(doc).unwrap_err();
        assert!(err.to_string().contains("must be either the allowlist"), "{err}");
    }
}

#[test]
fn an_unknown_system_call_is_a_compile_error() {
    let err =
        policy(allowlist(json!([{ "syscall": "no_such_call", "comment": "x" }]))).unwrap_err();
    assert!(matches!(&err, SeccompPolicyError::Compile(m) if m.contains("no_such_call")), "{err}");
}

#[test]
fn malformed_and_oversized_policies_are_rejected() {
    assert!(matches!(SeccompPolicy::from_json(b"{"), Err(SeccompPolicyError::Json(_))));
    assert!(matches!(SeccompPolicy::from_json(b"[]"), Err(SeccompPolicyError::Invalid(_))));
    let err =
        policy(json!({ "f": { "mismatch_action": "kill_process", "match_action": "allow" } }))
            .unwrap_err();
    assert!(err.to_string().contains("needs a `filter` array"), "{err}");
    let huge = vec![b' '; (1 << 20) + 1];
    assert!(matches!(SeccompPolicy::from_json(&huge), Err(SeccompPolicyError::TooLarge { .. })));
    let missing = SeccompPolicy::load(std::path::Path::new("/nonexistent/policy.json"));
    assert!(matches!(missing, Err(SeccompPolicyError::Read { .. })));
}

#[test]
fn no_landlock_fails_closed_unless_dangerously_allowed() {
    for status in [LandlockStatus::NotImplemented, LandlockStatus::NotEnabled] {
        let err = landlock_outcome(&RulesetStatus::NotEnforced, status, false).unwrap_err();
        assert!(matches!(err, SandboxError::NoLandlock(_)));
        assert!(err.to_string().contains("dangerous_allow_no_landlock = true"), "{err}");
        let ok = landlock_outcome(&RulesetStatus::NotEnforced, status, true).unwrap();
        assert_eq!(ok, LandlockOutcome::DangerouslyAbsent);
    }
}

#[test]
fn available_landlock_reports_its_abi() {
    let status = LandlockStatus::Available { effective_abi: ABI::V7, kernel_abi: None };
    let full = landlock_outcome(&RulesetStatus::FullyEnforced, status, false).unwrap();
    assert_eq!(full, LandlockOutcome::Full { abi: 7 });
    let old = LandlockStatus::Available { effective_abi: ABI::V3, kernel_abi: None };
    let partial = landlock_outcome(&RulesetStatus::PartiallyEnforced, old, false).unwrap();
    assert_eq!(partial, LandlockOutcome::Partial { abi: 3 });
}

#[test]
fn memory_lock_names_round_trip_and_the_default_is_strict() {
    for mode in [MemoryLock::All, MemoryLock::Current, MemoryLock::DangerousOff] {
        assert_eq!(mode.as_str().parse::<MemoryLock>().unwrap(), mode);
        let json = serde_json::to_string(&mode).unwrap();
        assert_eq!(json, format!("\"{}\"", mode.as_str()));
    }
    assert!(matches!("off".parse::<MemoryLock>(), Err(SandboxError::UnknownMemoryLock(_))));
    let cfg = SandboxConfig::new("/var/lib/rempart-signer", "signer.x86_64.json");
    assert_eq!(cfg.memory_lock, MemoryLock::All);
    assert!(!cfg.dangerous_allow_no_landlock);
    assert!(cfg.read_only_paths.is_empty() && cfg.read_write_paths.is_empty());
}
