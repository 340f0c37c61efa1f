use super::*;

#[test]
fn endpoints_parse() {
    assert_eq!(
        "unix:/run/s.sock".parse::<Endpoint>().unwrap(),
        Endpoint::Unix("/run/s.sock".into())
    );
    assert_eq!("10.98.0.1:7010".parse::<Endpoint>().unwrap().to_string(), "10.98.0.1:7010");
    assert!("unix:".parse::<Endpoint>().is_err());
    assert!("nowhere".parse::<Endpoint>().is_err());
}

#[tokio::test]
async fn unreachable_signer_times_out_with_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(Endpoint::Unix(dir.path().join("none.sock")));
    let deadline = Instant::now() + std::time::Duration::from_millis(60);
    let err = c.status(deadline).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { last: Some(_), .. }), "{err}");
}
