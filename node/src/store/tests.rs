use super::*;

fn temp_store(name: &str) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("rempart-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("state.redb");
    (Store::open(&path).expect("open"), dir)
}

fn head(n: u32) -> Head {
    Head {
        block_num: n,
        block_id: Checksum256([n as u8; 32]),
        timestamp: BlockTimestamp(n),
        producer: Name::from_const("eosio"),
        lib_num: n,
        lib_id: Checksum256([n as u8; 32]),
        schedule_version: 0,
    }
}

#[derive(Debug)]
struct Failed;
impl From<StoreError> for Failed {
    fn from(_: StoreError) -> Self {
        Failed
    }
}

#[test]
fn failed_write_leaves_nothing() {
    let (store, dir) = temp_store("abort");
    store
        .write(|w| -> Result<(), StoreError> {
            w.put(b"k", b"v1")?;
            w.set_head(&head(1))
        })
        .expect("commit");
    let r = store.write(|w| -> Result<(), Failed> {
        w.put(b"k", b"v2")?;
        w.set_head(&head(2))?;
        Err(Failed)
    });
    assert!(r.is_err());
    let snap = store.read().expect("read");
    assert_eq!(snap.get(b"k").expect("get"), Some(b"v1".to_vec()));
    assert_eq!(snap.head().expect("head"), Some(head(1)));
    drop(snap);
    drop(store);
    // Reopening sees the committed state.
    let store = Store::open(&dir.join("state.redb")).expect("reopen");
    assert_eq!(store.read().expect("read").head().expect("head"), Some(head(1)));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn overlay_is_discarded_unless_committed() {
    let (store, dir) = temp_store("overlay");
    store
        .write(|w| -> Result<(), StoreError> {
            w.put(b"a1", b"base")?;
            w.put(b"a3", b"base3")?;
            {
                let mut o = Overlay::new(w);
                o.put(b"a1".to_vec(), b"staged".to_vec());
                o.put(b"a2".to_vec(), b"new".to_vec());
                assert_eq!(o.get(b"a1")?, Some(b"staged".to_vec()));
                // dropped: nothing applied
            }
            assert_eq!(w.get(b"a1")?, Some(b"base".to_vec()));
            assert_eq!(w.get(b"a2")?, None);
            let mut o = Overlay::new(w);
            o.delete(b"a1".to_vec());
            o.put(b"a2".to_vec(), b"two".to_vec());
            // Iteration merges staged and base entries and skips staged deletions.
            let first = o.next(b"a", b"a", true)?.expect("an entry");
            assert_eq!(first.0, b"a2".to_vec());
            let second = o.next(b"a", &first.0, false)?.expect("an entry");
            assert_eq!(second, (b"a3".to_vec(), b"base3".to_vec()));
            assert_eq!(o.next(b"a", &second.0, false)?, None);
            o.commit()?;
            assert_eq!(w.get(b"a1")?, None);
            assert_eq!(w.get(b"a2")?, Some(b"two".to_vec()));
            Ok(())
        })
        .expect("write");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn history_index_is_the_duplicate_set() {
    let (store, dir) = temp_store("dedup");
    let a = Checksum256([1; 32]);
    let b = Checksum256([2; 32]);
    store
        .write(|w| -> Result<(), StoreError> {
            assert!(!w.is_duplicate(&a)?);
            w.record_transaction(&a, 100, 1)?;
            w.record_transaction(&b, 200, 1)?;
            assert!(w.is_duplicate(&a)?);
            // Nothing is pruned: an id past its expiration is refused as expired before the
            // duplicate check, and the index keeps the history.
            assert_eq!(w.prune_expired(201)?, 0);
            assert!(w.is_duplicate(&a)?);
            assert!(w.is_duplicate(&b)?);
            Ok(())
        })
        .expect("write");
    assert_eq!(store.read().expect("read").transaction_block(&a).expect("get"), Some(1));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn state_cache_forgets_an_aborted_block() {
    let (store, dir) = temp_store("cache");
    let k = b"a-key".as_slice();
    store
        .write(|w| -> Result<(), StoreError> {
            assert_eq!(w.get(k)?, None);
            w.put(k, b"one")
        })
        .expect("first block");
    let aborted: Result<(), StoreError> = store.write(|w| {
        assert_eq!(w.get(k)?, Some(b"one".to_vec()));
        w.put(k, b"two")?;
        w.put(b"b-key", b"new")?;
        assert_eq!(w.get(k)?, Some(b"two".to_vec()));
        Err(StoreError::NotInitialised)
    });
    assert!(aborted.is_err());
    store
        .write(|w| -> Result<(), StoreError> {
            assert_eq!(w.get(k)?, Some(b"one".to_vec()), "the aborted write is gone");
            assert_eq!(w.get(b"b-key")?, None);
            w.delete(k)?;
            assert_eq!(w.get(k)?, None);
            Ok(())
        })
        .expect("third block");
    let snap = store.read().expect("read");
    assert_eq!(snap.get(k).expect("get"), None);
    drop(snap);
    store
        .write(|w| -> Result<(), StoreError> {
            assert_eq!(w.get(k)?, None, "the committed delete is seen");
            Ok(())
        })
        .expect("fourth block");
    let _ = std::fs::remove_dir_all(dir);
}
