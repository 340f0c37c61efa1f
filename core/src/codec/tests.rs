use super::*;

#[test]
fn varuint32_round_trips_and_matches_leb128() {
    for (v, bytes) in [
        (0u32, vec![0u8]),
        (127, vec![0x7f]),
        (128, vec![0x80, 0x01]),
        (300, vec![0xac, 0x02]),
        (u32::MAX, vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
    ] {
        assert_eq!(to_bytes(&VarUint32(v)), bytes);
        assert_eq!(from_bytes::<VarUint32>(&bytes).unwrap(), VarUint32(v));
    }
}

#[test]
fn varuint32_rejects_overflow_and_overlong() {
    assert!(matches!(
        from_bytes::<VarUint32>(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
        Err(DecodeError::BadVarint { at: 0 })
    ));
    assert!(matches!(
        from_bytes::<VarUint32>(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
        Err(DecodeError::BadVarint { .. })
    ));
    assert!(matches!(from_bytes::<VarUint32>(&[0x80]), Err(DecodeError::UnexpectedEnd { .. })));
}

#[test]
fn varint32_zigzag() {
    for (v, b) in [(0i32, 0u8), (-1, 1), (1, 2), (-2, 3)] {
        assert_eq!(to_bytes(&VarInt32(v)), vec![b]);
        assert_eq!(from_bytes::<VarInt32>(&[b]).unwrap(), VarInt32(v));
    }
    for v in [i32::MIN, i32::MAX, -123456, 98765] {
        assert_eq!(from_bytes::<VarInt32>(&to_bytes(&VarInt32(v))).unwrap(), VarInt32(v));
    }
}

#[test]
fn huge_length_prefix_does_not_allocate() {
    // Claims 4 GiB of elements with 3 bytes of input behind it.
    let bytes = [0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3];
    assert!(matches!(
        from_bytes::<Vec<u64>>(&bytes),
        Err(DecodeError::LengthTooLarge { claimed: 4294967295, remaining: 3, .. })
    ));
    assert!(matches!(from_bytes::<Bytes>(&bytes), Err(DecodeError::LengthTooLarge { .. })));
    assert!(matches!(from_bytes::<String>(&bytes), Err(DecodeError::LengthTooLarge { .. })));
}

#[test]
fn element_size_bounds_counts() {
    // Two u64 claimed, only 15 bytes remain.
    let mut bytes = vec![2u8];
    bytes.extend_from_slice(&[0; 15]);
    assert!(matches!(from_bytes::<Vec<u64>>(&bytes), Err(DecodeError::LengthTooLarge { .. })));
    bytes.push(0);
    assert_eq!(from_bytes::<Vec<u64>>(&bytes).unwrap(), vec![0, 0]);
}

#[test]
fn trailing_bytes_rejected() {
    assert_eq!(from_bytes::<u16>(&[1, 0, 9]), Err(DecodeError::TrailingBytes { count: 1 }));
}

#[test]
fn bool_is_strict() {
    assert_eq!(from_bytes::<bool>(&[1]), Ok(true));
    assert_eq!(from_bytes::<bool>(&[2]), Err(DecodeError::InvalidBool { at: 0, value: 2 }));
    assert!(from_bytes::<Option<u8>>(&[2, 0]).is_err());
}

#[test]
fn strings_and_options_round_trip() {
    let s = String::from("héllo");
    let b = to_bytes(&s);
    assert_eq!(b[0] as usize, s.len());
    assert_eq!(from_bytes::<String>(&b).unwrap(), s);
    assert!(matches!(from_bytes::<String>(&[1, 0xff]), Err(DecodeError::InvalidUtf8 { at: 0 })));
    let o: Option<(u16, Bytes)> = Some((7, Bytes(vec![1, 2])));
    assert_eq!(from_bytes::<Option<(u16, Bytes)>>(&to_bytes(&o)).unwrap(), o);
    assert_eq!(to_bytes(&None::<u32>), vec![0]);
}

crate::packed_struct! {
    #[derive(Debug, PartialEq)]
    struct Inner { a: u8, list: Vec<u32> }
}
crate::packed_struct! {
    #[derive(Debug, PartialEq)]
    struct Outer { x: u16, inner: Inner }
}

#[test]
fn packed_struct_errors_name_the_field_path() {
    let v = Outer { x: 5, inner: Inner { a: 1, list: vec![1, 2] } };
    let b = to_bytes(&v);
    assert_eq!(from_bytes::<Outer>(&b).unwrap(), v);
    assert_eq!(<Outer as Unpack>::MIN_SIZE, 2 + 1 + 1);
    let err = from_bytes::<Outer>(&b[..b.len() - 1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "inner: list: length 2 at byte 3 exceeds what the remaining 7 bytes can hold"
    );
    assert!(matches!(err.root(), DecodeError::LengthTooLarge { .. }));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let v = Outer { x: 5, inner: Inner { a: 1, list: vec![1, 2, 3] } };
    let b = to_bytes(&v);
    for n in 0..b.len() {
        assert!(from_bytes::<Outer>(&b[..n]).is_err());
    }
}
