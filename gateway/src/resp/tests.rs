use super::*;

#[test]
fn commands_are_arrays_of_bulk_strings() {
    let mut out = Vec::new();
    encode(&[b"EVALSHA", b"ab", b""], &mut out);
    assert_eq!(out, b"*3\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$0\r\n\r\n");
}

#[test]
fn every_reply_kind_is_read() {
    let cases: &[(&[u8], Reply)] = &[
        (b"+OK\r\n", Reply::Status("OK".into())),
        (b"-NOSCRIPT no script\r\n", Reply::Error("NOSCRIPT no script".into())),
        (b":-42\r\n", Reply::Int(-42)),
        (b"$3\r\na\r\n\r\n", Reply::Bulk(Some(b"a\r\n".to_vec()))),
        (b"$-1\r\n", Reply::Bulk(None)),
        (b"*-1\r\n", Reply::Array(None)),
        (
            b"*3\r\n:1\r\n$2\r\nhi\r\n*1\r\n:0\r\n",
            Reply::Array(Some(vec![
                Reply::Int(1),
                Reply::Bulk(Some(b"hi".to_vec())),
                Reply::Array(Some(vec![Reply::Int(0)])),
            ])),
        ),
    ];
    for (wire, want) in cases {
        let mut buf = wire.to_vec();
        buf.extend_from_slice(b"+next\r\n");
        let (got, used) = parse(&buf).expect("valid").expect("complete");
        assert_eq!(&got, want, "{}", String::from_utf8_lossy(wire));
        assert_eq!(used, wire.len(), "the reply's own bytes only");
        // Every proper prefix asks for more rather than guessing.
        for cut in 0..wire.len() {
            assert_eq!(parse(&wire[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }
}

#[test]
fn malformed_replies_are_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"?what\r\n", "unknown reply type"),
        (b"+OK\n", "line not ended by CRLF"),
        (b":12a\r\n", "integer reply not a number"),
        (b"$-2\r\n", "length not a number"),
        (b"$2\r\nabcd\r\n", "bulk reply not ended by CRLF"),
        (b"*1\r\n!\r\n", "unknown reply type"),
        (b"$999999999999\r\n", "bulk reply over the size limit"),
        (b"*99999999\r\n", "array reply over the element limit"),
        (b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "array reply nested too deep"),
    ];
    for (wire, want) in cases {
        assert_eq!(parse(wire), Err(*want), "{}", String::from_utf8_lossy(wire));
    }
    let long = vec![b'+'; MAX_LINE + 2];
    assert_eq!(parse(&long), Err("line too long"));
}

#[test]
fn mangled_replies_never_panic_and_never_read_past_the_buffer() {
    let valid: &[&[u8]] = &[
        b"*3\r\n:1\r\n$2\r\nhi\r\n*2\r\n:0\r\n$-1\r\n",
        b"*2\r\n:123456\r\n:0\r\n",
        b"+OK\r\n",
        b"-ERR x\r\n",
    ];
    // A fixed generator, so a failure replays.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200_000 {
        let mut buf = valid[(next() % valid.len() as u64) as usize].to_vec();
        for _ in 0..(next() % 4) {
            let i = (next() % buf.len() as u64) as usize;
            let byte = [b'*', b'$', b':', b'\r', b'\n', b'-', b'9', b'0'][(next() % 8) as usize];
            match next() % 3 {
                0 => buf[i] = byte,
                1 => buf.insert(i, byte),
                _ => buf.truncate(i.max(1)),
            }
        }
        if let Ok(Some((_, used))) = parse(&buf) {
            assert!(used <= buf.len(), "{buf:?}");
        }
    }
}
