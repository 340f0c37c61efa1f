use super::layout::{self, set_key};
use super::supervise::readable;
use super::*;

#[test]
fn set_key_replaces_inserts_and_removes_within_its_section_only() {
    let text = "a = 1\n[x]\n# k = 0\nk = 1\n[y]\nk = 2\n";
    assert_eq!(
        set_key(text, "x", "k", Some("9")).unwrap(),
        "a = 1\n[x]\n# k = 0\nk = 9\n[y]\nk = 2\n"
    );
    assert_eq!(set_key(text, "y", "k", None).unwrap(), "a = 1\n[x]\n# k = 0\nk = 1\n[y]\n");
    assert_eq!(
        set_key(text, "y", "n", Some("3")).unwrap(),
        "a = 1\n[x]\n# k = 0\nk = 1\n[y]\nn = 3\nk = 2\n"
    );
    assert_eq!(
        set_key(text, "x", "n", Some("3")).unwrap(),
        "a = 1\n[x]\nn = 3\n# k = 0\nk = 1\n[y]\nk = 2\n"
    );
    // A key whose name is a prefix of another is not confused with it.
    assert_eq!(set_key("[x]\nkk = 1\n", "x", "k", Some("2")).unwrap(), "[x]\nk = 2\nkk = 1\n");
    // Only the first [[array]] table is changed.
    assert_eq!(
        set_key("[[p]]\nn = 1\n[[p]]\nn = 2\n", "p", "n", Some("3")).unwrap(),
        "[[p]]\nn = 3\n[[p]]\nn = 2\n"
    );
    assert!(matches!(set_key(text, "z", "k", Some("1")), Err(UpError::Template { .. })));
}

#[test]
fn the_derived_configurations_are_valid_and_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().to_path_buf());
    layout::write(&layout.genesis(), layout::GENESIS_JSON).unwrap();
    layout::write(&layout.signer_toml(), layout::SIGNER_TOML).unwrap();
    layout::write_seccomp(&layout).unwrap();
    layout::write_secret(&layout.signer_state().join("dev.key"), DEV_PRIVATE_KEY).unwrap();
    for i in 0..=2 {
        layout::write(&layout.node_toml(i), &layout::node_config(i).unwrap()).unwrap();
    }
    layout::write(&layout.gateway_toml(), &layout::gateway_config().unwrap()).unwrap();
    layout::write_certs(&layout).unwrap();
    let api2 = rempart_node::config::Config::load(&layout.node_toml(2)).unwrap();
    assert_eq!(api2.api.http_listen.to_string(), API_LISTEN[1]);
    assert_eq!(api2.api.data_dir, layout.policies().join("../var/node/api2"));
    let producer = rempart_node::config::Config::load(&layout.node_toml(0)).unwrap();
    assert_eq!(
        producer.producer.metrics_file,
        Some(layout.policies().join("../var/node/producer.prom"))
    );
    let gateway = rempart_gateway::Policy::load(&layout.gateway_toml()).unwrap();
    assert_eq!(gateway.pools()[0].nodes.len(), 2);
    let report = crate::check::check_dir(&layout.policies());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // The reader child's allowlist lies where a signer given a [wireguard] section looks for it.
    let signer = rempart_signer::policy::Policy::load(&layout.signer_toml()).unwrap();
    let reader = rempart_signer::wireguard::reader::policy_beside(&signer.sandbox.seccomp_policy);
    assert_eq!(std::fs::read_to_string(reader).unwrap(), layout::READER_SECCOMP_JSON);
}

#[test]
fn json_log_records_become_one_readable_line() {
    let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"block produced","num":7},"target":"x"}"#;
    assert_eq!(readable(line), "INFO  block produced num=7");
    assert_eq!(readable("plain text"), "plain text");
    assert_eq!(readable("[1, 2]"), "[1, 2]");
}

#[test]
fn the_default_data_dir_is_under_the_users_data_directory() {
    let d = default_data_dir();
    assert!(d.as_ref().is_none_or(|d| d.ends_with("rempart")), "{d:?}");
}

#[test]
fn the_head_is_read_from_a_labelled_metrics_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.prom");
    std::fs::write(&f, "# HELP x\nrempart_node_head_block_num{role=\"producer\"} 121\n").unwrap();
    assert_eq!(probe::metrics_head(&f), Some(121));
    assert_eq!(probe::metrics_head(&dir.path().join("absent")), None);
}
