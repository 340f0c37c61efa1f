use super::*;
use crate::key::{KeyType, PrivateKey};

fn key(seed: u8, key_type: KeyType) -> PrivateKey {
    PrivateKey::from_bytes(key_type, &[seed; 32]).unwrap()
}

fn header() -> BlockHeader {
    let mut previous = [0u8; 32];
    previous[..4].copy_from_slice(&41u32.to_be_bytes());
    BlockHeader {
        timestamp: BlockTimestamp(777),
        producer: "bp1".parse().unwrap(),
        previous: Checksum256(previous),
        ..Default::default()
    }
}

fn sign_request() -> SignBlockRequest {
    SignBlockRequest {
        request_id: 42,
        chain_id: Checksum256([0xcc; 32]),
        header: header(),
        blockroot_merkle_root: Checksum256([0xaa; 32]),
        pending_schedule_hash: Checksum256([0xbb; 32]),
        signing_key: key(1, KeyType::K1).public_key(),
    }
}

fn requests() -> Vec<Request> {
    vec![
        Request::SignBlock(sign_request()),
        Request::PublicKeys { request_id: 1 },
        Request::Status { request_id: u64::MAX },
        Request::Admin(AdminRequest { request_id: 3, command: Bytes(vec![1, 2, 3]) }),
    ]
}

fn responses() -> Vec<Response> {
    let req = sign_request();
    let k1 = key(1, KeyType::K1);
    let r1 = key(2, KeyType::R1);
    vec![
        Response::Signature(SignBlockResponse {
            request_id: 42,
            block_num: req.header.block_num(),
            digest: req.digest(),
            signature: k1.sign(&req.digest()),
        }),
        Response::PublicKeys {
            request_id: 1,
            keys: vec![
                ProducerKey {
                    producer_name: "bp1".parse().unwrap(),
                    block_signing_key: k1.public_key(),
                },
                ProducerKey {
                    producer_name: "bp2".parse().unwrap(),
                    block_signing_key: r1.public_key(),
                },
            ],
        },
        Response::Status(StatusResponse {
            request_id: 2,
            paused: true,
            signatures: 10,
            refusals: 1,
            last_signed: vec![LastSigned {
                chain_id: Checksum256([0xcc; 32]),
                producer: "bp1".parse().unwrap(),
                key: r1.public_key(),
                block_num: 42,
                timestamp: BlockTimestamp(777),
                digest: req.digest(),
            }],
            tunnel: vec![TunnelPeer {
                address: "10.98.0.2".to_owned(),
                public_key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned(),
                last_handshake: 1_700_000_000,
                rx_bytes: 1896,
                tx_bytes: 1064,
                stale: false,
                error: String::new(),
            }],
        }),
        Response::Error(ErrorResponse {
            request_id: 5,
            code: ErrorCode::DoubleSign,
            message: "block 42 already signed with another digest".to_owned(),
        }),
        Response::Admin(AdminResponse { request_id: 6, result: Bytes(vec![]) }),
    ]
}

fn frames<M: Message>(msgs: &[M]) -> Vec<u8> {
    msgs.iter().flat_map(|m| encode_frame(m).unwrap()).collect()
}

/// A frame with `payload` as is (version byte included).
fn raw_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

#[test]
fn frame_layout_by_hand() {
    let f = encode_frame(&Request::Status { request_id: 7 }).unwrap();
    assert_eq!(f, [10, 0, 0, 0, PROTOCOL_VERSION, 2, 7, 0, 0, 0, 0, 0, 0, 0]);
    let f = encode_frame(&Response::Error(ErrorResponse {
        request_id: 1,
        code: ErrorCode::Busy,
        message: "hi".to_owned(),
    }))
    .unwrap();
    assert_eq!(f, [15, 0, 0, 0, 1, 3, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, b'h', b'i']);
}

#[test]
fn every_message_round_trips() {
    for r in requests() {
        let f = encode_frame(&r).unwrap();
        assert_eq!(decode_payload::<Request>(&f[4..]).unwrap(), r);
        let bytes = codec::to_bytes(&r);
        assert_eq!(codec::from_bytes::<Request>(&bytes).unwrap(), r);
    }
    for r in responses() {
        let f = encode_frame(&r).unwrap();
        assert_eq!(decode_payload::<Response>(&f[4..]).unwrap(), r);
    }
    for (r, id) in requests().iter().zip([42, 1, u64::MAX, 3]) {
        assert_eq!(r.request_id(), id);
    }
    for (r, id) in responses().iter().zip([42, 1, 2, 5, 6]) {
        assert_eq!(r.request_id(), id);
    }
}

#[test]
fn sign_request_digest_is_the_header_signing_digest() {
    let r = sign_request();
    assert_eq!(
        r.digest(),
        r.header.signing_digest(&Checksum256([0xaa; 32]), &Checksum256([0xbb; 32]))
    );
    assert_eq!(r.header.block_num(), 42);
}

#[test]
fn truncated_and_trailing_messages_are_refused() {
    for r in requests() {
        let payload = encode_frame(&r).unwrap()[4..].to_vec();
        for n in 1..payload.len() {
            assert!(matches!(
                decode_payload::<Request>(&payload[..n]),
                Err(ProtocolError::Decode { what: "request", .. })
            ));
        }
        let mut long = payload.clone();
        long.push(0);
        assert_eq!(
            decode_payload::<Request>(&long).unwrap_err(),
            ProtocolError::Decode {
                what: "request",
                source: DecodeError::TrailingBytes { count: 1 }
            }
        );
    }
    for r in responses() {
        let payload = encode_frame(&r).unwrap()[4..].to_vec();
        for n in 1..payload.len() {
            assert!(decode_payload::<Response>(&payload[..n]).is_err());
        }
        let mut long = payload.clone();
        long.push(0);
        assert!(decode_payload::<Response>(&long).is_err());
    }
    assert_eq!(decode_payload::<Request>(&[]).unwrap_err(), ProtocolError::EmptyFrame);
}

#[test]
fn decode_errors_carry_the_field_path() {
    let mut payload = encode_frame(&Request::SignBlock(sign_request())).unwrap()[4..].to_vec();
    // Corrupt the signing key's type byte (the last 34 bytes are the key).
    let at = payload.len() - 34;
    payload[at] = 7;
    let err = decode_payload::<Request>(&payload).unwrap_err();
    assert!(err.to_string().contains("sign_block: signing_key: "), "{err}");
}

#[test]
fn unknown_tags_and_codes_are_refused() {
    let err = decode_payload::<Request>(&[1, 4, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
    assert!(matches!(
        err,
        ProtocolError::Decode {
            source: DecodeError::UnknownTag { what: "request", tag: 4, .. },
            ..
        }
    ));
    let err = decode_payload::<Response>(&[1, 5]).unwrap_err();
    assert!(matches!(
        err,
        ProtocolError::Decode {
            source: DecodeError::UnknownTag { what: "response", tag: 5, .. },
            ..
        }
    ));
    // An error code the build does not know.
    let mut payload = encode_frame(&responses()[3]).unwrap()[4..].to_vec();
    payload[10..12].copy_from_slice(&999u16.to_le_bytes());
    let err = decode_payload::<Response>(&payload).unwrap_err();
    assert!(
        matches!(
            err,
            ProtocolError::Decode { ref source, .. }
                if matches!(source.root(), DecodeError::UnknownTag { what: "error code", tag: 999, .. })
        ),
        "{err}"
    );
    assert_eq!(ErrorCode::from_code(0), None);
    for code in 1..=11 {
        let c = ErrorCode::from_code(code).unwrap();
        assert_eq!(c.code(), code);
        assert!(!c.to_string().is_empty());
    }
    // A request payload is not a response: tag 0 of Response expects a signature body.
    let payload = encode_frame(&Request::PublicKeys { request_id: 1 }).unwrap();
    assert!(decode_payload::<Response>(&payload[4..]).is_err());
}

#[test]
fn unsupported_version_is_typed_and_keeps_the_stream_in_sync() {
    let mut bytes = raw_frame(&[2, 2, 7, 0, 0, 0, 0, 0, 0, 0]);
    bytes.extend(encode_frame(&Request::Status { request_id: 8 }).unwrap());
    let mut d = FrameDecoder::new();
    let mut input = &bytes[..];
    assert_eq!(
        d.decode::<Request>(&mut input).unwrap_err(),
        ProtocolError::UnsupportedVersion { got: 2, supported: PROTOCOL_VERSION }
    );
    assert_eq!(d.decode::<Request>(&mut input).unwrap(), Some(Request::Status { request_id: 8 }));
    assert!(input.is_empty());
    assert!(d.is_idle());
}

#[test]
fn decoder_fed_one_byte_at_a_time() {
    let bytes = frames(&responses());
    let mut d = FrameDecoder::new();
    let mut out = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        assert_eq!(d.push(std::slice::from_ref(b)).unwrap(), 1, "byte {i}");
        if let Some(m) = d.pop::<Response>().unwrap() {
            out.push(m);
        }
        assert!(d.payload.capacity() <= MAX_FRAME_BYTES);
    }
    assert_eq!(out, responses());
    assert!(d.is_idle());
    assert_eq!(d.pop::<Response>().unwrap(), None);
}

#[test]
fn decoder_takes_one_frame_at_a_time_from_a_chunk() {
    let bytes = frames(&requests());
    let mut d = FrameDecoder::new();
    // A complete frame waits: push takes nothing more until it is popped.
    let first = d.push(&bytes).unwrap();
    assert_eq!(first, encode_frame(&requests()[0]).unwrap().len());
    assert!(d.has_frame());
    assert_eq!(d.push(&bytes[first..]).unwrap(), 0);
    assert_eq!(d.pop::<Request>().unwrap(), Some(requests()[0].clone()));

    let mut d = FrameDecoder::new();
    let mut input = &bytes[..];
    let mut out = Vec::new();
    while let Some(m) = d.decode::<Request>(&mut input).unwrap() {
        out.push(m);
    }
    assert_eq!(out, requests());
    assert!(input.is_empty());

    // A partial frame at the end of a chunk stays buffered until the rest arrives.
    let mut d = FrameDecoder::new();
    let mut input = &bytes[..bytes.len() - 3];
    let mut n = 0;
    while d.decode::<Request>(&mut input).unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    assert!(!d.is_idle());
    let mut rest = &bytes[bytes.len() - 3..];
    assert_eq!(d.decode::<Request>(&mut rest).unwrap(), Some(requests()[3].clone()));
}

#[test]
fn oversize_length_is_refused_before_buffering() {
    let mut bytes = ((MAX_FRAME_BYTES + 1) as u32).to_le_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(0u8, 1024 * 1024));
    let mut d = FrameDecoder::new();
    // Three bytes of the prefix are not enough to judge.
    assert_eq!(d.push(&bytes[..3]).unwrap(), 3);
    assert_eq!(
        d.push(&bytes[3..]).unwrap_err(),
        ProtocolError::FrameTooLarge { size: MAX_FRAME_BYTES as u64 + 1, limit: MAX_FRAME_BYTES }
    );
    assert_eq!(d.payload.capacity(), 0);
    // The decoder stays closed.
    assert_eq!(d.push(&[1]).unwrap_err(), ProtocolError::Closed);
    assert_eq!(d.pop::<Request>().unwrap_err(), ProtocolError::Closed);

    let mut d = FrameDecoder::new();
    assert!(matches!(
        d.push(&[0xff, 0xff, 0xff, 0xff]).unwrap_err(),
        ProtocolError::FrameTooLarge { size: 0xffff_ffff, .. }
    ));
    assert!(
        ProtocolError::FrameTooLarge { size: 1, limit: MAX_FRAME_BYTES }
            .to_string()
            .contains("65536")
    );

    let mut d = FrameDecoder::new();
    assert_eq!(d.push(&[0, 0, 0, 0]).unwrap_err(), ProtocolError::EmptyFrame);
    assert_eq!(d.push(&[0]).unwrap_err(), ProtocolError::Closed);
}

#[test]
fn largest_frame_is_accepted_and_larger_messages_are_not_sent() {
    // version + tag + request_id + length prefix of 3 bytes + command = MAX_FRAME_BYTES.
    let fits = MAX_FRAME_BYTES - 1 - 1 - 8 - 3;
    let msg = Request::Admin(AdminRequest { request_id: 1, command: Bytes(vec![7; fits]) });
    let f = encode_frame(&msg).unwrap();
    assert_eq!(f.len(), FRAME_HEADER_BYTES + MAX_FRAME_BYTES);
    let mut d = FrameDecoder::new();
    let mut input = &f[..];
    assert_eq!(d.decode::<Request>(&mut input).unwrap(), Some(msg));

    let big = Request::Admin(AdminRequest { request_id: 1, command: Bytes(vec![7; fits + 1]) });
    assert_eq!(
        encode_frame(&big).unwrap_err(),
        ProtocolError::FrameTooLarge { size: MAX_FRAME_BYTES as u64 + 1, limit: MAX_FRAME_BYTES }
    );
}

#[test]
fn malformed_message_keeps_the_stream_in_sync() {
    let mut bytes = raw_frame(&[PROTOCOL_VERSION, 9]);
    bytes.extend(encode_frame(&Request::PublicKeys { request_id: 4 }).unwrap());
    let mut d = FrameDecoder::new();
    let mut input = &bytes[..];
    assert!(matches!(d.decode::<Request>(&mut input), Err(ProtocolError::Decode { .. })));
    assert_eq!(
        d.decode::<Request>(&mut input).unwrap(),
        Some(Request::PublicKeys { request_id: 4 })
    );
}
