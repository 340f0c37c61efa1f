use rand_core::RngCore as _;

use super::*;
use crate::checksum::Checksum256;
use crate::codec::{DecodeError, from_bytes, to_bytes};

const WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";
const PVT_K1: &str = "PVT_K1_2bfGi9rYsXQSXXTvJbDAPhHLQUojjaNLomdm3cEJ1XTzMqUt3V";
const LEGACY: &str = "EOS6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5GDW5CV";
const PUB_K1: &str = "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63";

// Written by @wharfkit/antelope 1.2.0 (an independent implementation): the R1 key with scalar
// 0x0102…20, and signatures by both keys over sha256("rempart key vectors").
const R1_SCALAR: [u8; 32] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
    27, 28, 29, 30, 31, 32,
];
const PVT_R1: &str = "PVT_R1_SkB92YpWm4Q2ijQHH34cqbKkCZWszsiQgHVjtNeFF2Gk4Tyx";
const PUB_R1: &str = "PUB_R1_5WKbPCbDSvpmYEKzxnZXLVpcVVxWHZDWDNdhUapQwTUDsb5GBV";
const WHARF_SIG_K1: &str = "SIG_K1_K2z7uijmaYaCBohNx2VxikbhgexkAUJD2QLKiFzrcWXp34wQfFq6co9HumYg43D2qXACWqPyocuDa1YQFhjqdEorxQdqsX";
const WHARF_SIG_R1: &str = "SIG_R1_KruofMXEdrBZEPZkiePHLSVZWYhkwybbLDzuzWiD4XEFATqddj7BYjqDQyg61Lp33i7My2FHR7Zn4o8iisCWDVp7cgkxKk";

fn random_digest() -> Checksum256 {
    let mut d = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut d);
    Checksum256(d)
}

fn vector_digest() -> Checksum256 {
    Checksum256::hash(b"rempart key vectors")
}

/// Replaces the last character with another base58 character.
fn tamper_last(s: &str) -> String {
    let mut t = s[..s.len() - 1].to_owned();
    t.push(if s.ends_with('2') { '3' } else { '2' });
    t
}

#[test]
fn k1_vectors_all_forms_agree() {
    let from_wif: PrivateKey = WIF.parse().unwrap();
    let from_pvt: PrivateKey = PVT_K1.parse().unwrap();
    assert_eq!(from_wif.key_type(), KeyType::K1);
    assert_eq!(from_wif.public_key(), from_pvt.public_key());
    assert_eq!(from_wif.to_secret_string().as_str(), PVT_K1);
    assert_eq!(from_pvt.to_wif().unwrap().as_str(), WIF);

    let public = from_wif.public_key();
    assert_eq!(public.to_string(), PUB_K1);
    assert_eq!(public.to_legacy_string().unwrap(), LEGACY);
    assert_eq!(LEGACY.parse::<PublicKey>().unwrap(), public);
    assert_eq!(PUB_K1.parse::<PublicKey>().unwrap(), public);
    assert_eq!(public.key_type(), KeyType::K1);
    assert!(public.is_valid());
}

#[test]
fn r1_vectors_match_an_independent_implementation() {
    let key = PrivateKey::from_bytes(KeyType::R1, &R1_SCALAR).unwrap();
    assert_eq!(key.to_secret_string().as_str(), PVT_R1);
    assert_eq!(key.public_key().to_string(), PUB_R1);
    let parsed: PrivateKey = PVT_R1.parse().unwrap();
    assert_eq!(parsed.public_key(), key.public_key());
    assert_eq!(PUB_R1.parse::<PublicKey>().unwrap(), key.public_key());
    assert!(key.to_wif().is_none());
    assert!(matches!(key.public_key().to_legacy_string(), Err(KeyError::Unsupported { .. })));
}

#[test]
fn signatures_from_an_independent_implementation_recover() {
    let digest = vector_digest();
    let k1: Signature = WHARF_SIG_K1.parse().unwrap();
    assert_eq!(k1.to_string(), WHARF_SIG_K1);
    assert_eq!(k1.recover(&digest).unwrap().to_string(), PUB_K1);
    assert!(k1.verify(&digest, &PUB_K1.parse().unwrap()));
    assert!(k1.is_canonical());

    let r1: Signature = WHARF_SIG_R1.parse().unwrap();
    assert_eq!(r1.key_type(), KeyType::R1);
    assert_eq!(r1.to_string(), WHARF_SIG_R1);
    assert_eq!(r1.recover(&digest).unwrap().to_string(), PUB_R1);
    assert!(r1.verify(&digest, &PUB_R1.parse().unwrap()));
    assert!(!r1.verify(&Checksum256::hash(b"other"), &PUB_R1.parse().unwrap()));
}

#[test]
fn k1_sign_recover_verify_round_trips_and_is_always_canonical() {
    let key = PrivateKey::generate(KeyType::K1);
    let other = PrivateKey::generate(KeyType::K1).public_key();
    for _ in 0..300 {
        let digest = random_digest();
        let sig = key.sign(&digest);
        assert_eq!(sig.key_type(), KeyType::K1);
        assert!(sig.is_canonical(), "{sig} is not canonical");
        assert!((31..=34).contains(&sig.header()));
        assert_eq!(sig.recover(&digest).unwrap(), key.public_key());
        assert!(sig.verify(&digest, &key.public_key()));
        assert!(!sig.verify(&digest, &other));
        assert!(!sig.verify(&random_digest(), &key.public_key()));
        assert_eq!(sig.to_string().parse::<Signature>().unwrap(), sig);
    }
}

#[test]
fn k1_signing_is_deterministic() {
    let key: PrivateKey = WIF.parse().unwrap();
    let digest = vector_digest();
    assert_eq!(key.sign(&digest), key.sign(&digest));
}

#[test]
fn r1_sign_recover_verify_round_trips_low_s() {
    // Fewer rounds than K1: unoptimised P-256 arithmetic costs about 40 ms a recovery.
    let key = PrivateKey::generate(KeyType::R1);
    let other = PrivateKey::generate(KeyType::R1).public_key();
    for _ in 0..64 {
        let digest = random_digest();
        let sig = key.sign(&digest);
        assert_eq!(sig.key_type(), KeyType::R1);
        assert!(sig.is_canonical(), "{sig} is not low-S");
        assert!((31..=34).contains(&sig.header()));
        assert_eq!(sig.recover(&digest).unwrap(), key.public_key());
        assert!(sig.verify(&digest, &key.public_key()));
        assert!(!sig.verify(&digest, &other));
        assert_eq!(sig.to_string().parse::<Signature>().unwrap(), sig);
    }
}

#[test]
fn verify_refuses_a_key_of_the_other_curve() {
    let digest = random_digest();
    let k1 = PrivateKey::generate(KeyType::K1);
    let sig = k1.sign(&digest);
    let r1_with_same_bytes = PublicKey::R1(*k1.public_key().as_bytes());
    assert!(!sig.verify(&digest, &r1_with_same_bytes));
}

/// A K1 signature string with the given header byte, checksummed correctly.
fn with_header(sig: &Signature, header: u8) -> String {
    let mut b = *sig.as_bytes();
    b[0] = header;
    Signature::K1(b).to_string()
}

#[test]
fn parse_accepts_headers_27_to_34_and_rejects_26_and_35() {
    let key: PrivateKey = WIF.parse().unwrap();
    let digest = random_digest();
    let sig = key.sign(&digest);
    let recid = sig.recovery_id();
    // pyntelope writes 27 + recid, eosjs and wharfkit 31 + recid: both recover the key.
    for header in [27 + recid, 31 + recid] {
        let parsed: Signature = with_header(&sig, header).parse().unwrap();
        assert_eq!(parsed.header(), header);
        assert_eq!(parsed.recover(&digest).unwrap(), key.public_key());
    }
    for header in 27..=34 {
        assert!(with_header(&sig, header).parse::<Signature>().is_ok(), "header {header}");
    }
    for header in [0, 26, 35, 255] {
        assert_eq!(
            with_header(&sig, header).parse::<Signature>(),
            Err(KeyError::BadHeader(header)),
            "header {header}"
        );
    }
}

#[test]
fn tampered_checksums_are_rejected() {
    let digest = random_digest();
    let sig = PrivateKey::from_str(WIF).unwrap().sign(&digest).to_string();
    assert!(matches!(
        tamper_last(PUB_K1).parse::<PublicKey>(),
        Err(KeyError::BadChecksum { form: "PUB_K1 ripemd160", .. })
    ));
    assert!(matches!(
        tamper_last(LEGACY).parse::<PublicKey>(),
        Err(KeyError::BadChecksum { form: "legacy EOS ripemd160", .. })
    ));
    assert!(matches!(
        tamper_last(PUB_R1).parse::<PublicKey>(),
        Err(KeyError::BadChecksum { form: "PUB_R1 ripemd160", .. })
    ));
    assert!(matches!(tamper_last(&sig).parse::<Signature>(), Err(KeyError::BadChecksum { .. })));
    assert!(matches!(
        tamper_last(PVT_K1).parse::<PrivateKey>(),
        Err(KeyError::BadChecksum { form: "PVT_K1 ripemd160", .. })
    ));
    assert!(matches!(
        tamper_last(WIF).parse::<PrivateKey>(),
        Err(KeyError::BadChecksum { form: "WIF sha256d", .. })
    ));
    // A K1 body under the R1 prefix fails its checksum: the suffix is part of it.
    let swapped = PUB_K1.replace("PUB_K1_", "PUB_R1_");
    assert!(matches!(swapped.parse::<PublicKey>(), Err(KeyError::BadChecksum { .. })));
}

#[test]
fn malformed_strings_get_typed_errors() {
    assert!(matches!("".parse::<PublicKey>(), Err(KeyError::BadPrefix { .. })));
    assert!(matches!("PUB_X1_abc".parse::<PublicKey>(), Err(KeyError::BadPrefix { .. })));
    assert!(matches!("PUB_WA_abc".parse::<PublicKey>(), Err(KeyError::Unsupported { .. })));
    assert!(matches!("SIG_WA_abc".parse::<Signature>(), Err(KeyError::Unsupported { .. })));
    assert!(matches!("SIG_K2_abc".parse::<Signature>(), Err(KeyError::BadPrefix { .. })));
    assert!(matches!("PUB_K1_0OIl".parse::<PublicKey>(), Err(KeyError::BadBase58 { .. })));
    assert!(matches!("PUB_K1_abc".parse::<PublicKey>(), Err(KeyError::WrongLength { .. })));
    assert!(matches!("PVT_X1_abc".parse::<PrivateKey>(), Err(KeyError::BadPrefix { .. })));
    assert!(matches!("5abc".parse::<PrivateKey>(), Err(KeyError::WrongLength { .. })));
    // A long string is refused before the quadratic base58 decoder sees it.
    let long = format!("PUB_K1_{}", "2".repeat(1_000_000));
    assert!(matches!(long.parse::<PublicKey>(), Err(KeyError::TooLong { .. })));
    assert!(matches!(long.parse::<PrivateKey>(), Err(KeyError::TooLong { .. })));
    // A valid checksum over a payload of the wrong size.
    let short = encode_checked("PUB_K1_", &[2u8; 32], Check::Ripemd(b"K1"));
    assert_eq!(
        short.parse::<PublicKey>(),
        Err(KeyError::WrongLength { what: "public key", expected: 37, found: 36 })
    );
    assert_eq!("K3".parse::<KeyType>().ok(), None);
    assert_eq!("R1".parse::<KeyType>(), Ok(KeyType::R1));
}

#[test]
fn points_off_the_curve_are_rejected() {
    // x = 2^256 - 1 is not a field element of either curve.
    let mut off = [0xffu8; 33];
    off[0] = 0x02;
    let k1 = encode_checked("PUB_K1_", &off, Check::Ripemd(b"K1"));
    let r1 = encode_checked("PUB_R1_", &off, Check::Ripemd(b"R1"));
    let legacy = encode_checked("EOS", &off, Check::Ripemd(b""));
    assert_eq!(k1.parse::<PublicKey>(), Err(KeyError::InvalidPoint(KeyType::K1)));
    assert_eq!(r1.parse::<PublicKey>(), Err(KeyError::InvalidPoint(KeyType::R1)));
    assert_eq!(legacy.parse::<PublicKey>(), Err(KeyError::InvalidPoint(KeyType::K1)));
    assert!(!PublicKey::K1(off).is_valid());
    // A bad SEC1 tag byte.
    let mut tag = *PUB_K1.parse::<PublicKey>().unwrap().as_bytes();
    tag[0] = 0x05;
    assert_eq!(PublicKey::from_bytes(KeyType::K1, &tag), Err(KeyError::InvalidPoint(KeyType::K1)));
}

#[test]
fn uncompressed_sec1_points_are_compressed() {
    let key = PrivateKey::generate(KeyType::R1);
    let pk = p256::PublicKey::from_sec1_bytes(key.public_key().as_bytes()).unwrap();
    let uncompressed = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&pk, false);
    assert_eq!(
        PublicKey::from_sec1(KeyType::R1, uncompressed.as_bytes()).unwrap(),
        key.public_key()
    );
    let k1 = PrivateKey::generate(KeyType::K1);
    let sk = secp256k1::SecretKey::from_secret_bytes(secret_of(&k1)).unwrap();
    let full = sk.public_key().serialize_uncompressed();
    assert_eq!(PublicKey::from_sec1(KeyType::K1, &full).unwrap(), k1.public_key());
}

/// The scalar of a key, through its `PVT_` string (tests only).
fn secret_of(key: &PrivateKey) -> [u8; 32] {
    let s = key.to_secret_string();
    let body = &s[7..];
    let payload =
        decode_checked(body, "test", "test", 32, Check::Ripemd(key.key_type().as_str().as_bytes()))
            .unwrap();
    payload[..].try_into().unwrap()
}

#[test]
fn invalid_scalars_are_rejected() {
    for key_type in [KeyType::K1, KeyType::R1] {
        assert_eq!(
            PrivateKey::from_bytes(key_type, &[0; 32]).unwrap_err(),
            KeyError::InvalidScalar(key_type)
        );
        assert_eq!(
            PrivateKey::from_bytes(key_type, &[0xff; 32]).unwrap_err(),
            KeyError::InvalidScalar(key_type)
        );
        let prefix = if key_type == KeyType::K1 { "PVT_K1_" } else { "PVT_R1_" };
        let zero = encode_checked(prefix, &[0; 32], Check::Ripemd(key_type.as_str().as_bytes()));
        assert_eq!(zero.parse::<PrivateKey>().unwrap_err(), KeyError::InvalidScalar(key_type));
    }
    let mut wif = [0u8; 33];
    wif[0] = 0x80;
    let zero_wif = encode_checked("", &wif, Check::DoubleSha256);
    assert_eq!(zero_wif.parse::<PrivateKey>().unwrap_err(), KeyError::InvalidScalar(KeyType::K1));
    wif[0] = 0x81;
    wif[32] = 1;
    let bad_version = encode_checked("", &wif, Check::DoubleSha256);
    assert!(matches!(bad_version.parse::<PrivateKey>(), Err(KeyError::BadPrefix { .. })));
}

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    let key: PrivateKey = WIF.parse().unwrap();
    let debug = format!("{key:?}");
    let scalar = secret_of(&key);
    assert!(debug.contains(PUB_K1), "{debug}");
    for secret in [WIF, PVT_K1, &PVT_K1[7..], &hex::encode(scalar), &format!("{scalar:?}")] {
        assert!(!debug.contains(secret), "{debug}");
    }
    let r1 = PrivateKey::from_bytes(KeyType::R1, &R1_SCALAR).unwrap();
    let debug = format!("{r1:?}");
    assert!(!debug.contains(&PVT_R1[7..]) && !debug.contains(&hex::encode(R1_SCALAR)));

    // Parse errors do not quote the (nearly right) secret they were given.
    for bad in [tamper_last(WIF), tamper_last(PVT_K1), tamper_last(PVT_R1), format!("{WIF}0")] {
        let err = bad.parse::<PrivateKey>().unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&bad[8..40]), "{shown}");
    }
}

#[test]
fn generated_keys_round_trip_through_their_strings() {
    for key_type in [KeyType::K1, KeyType::R1] {
        let key = PrivateKey::generate(key_type);
        assert_eq!(key.key_type(), key_type);
        let again: PrivateKey = key.to_secret_string().parse().unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(key.public_key().to_string().parse::<PublicKey>().unwrap(), key.public_key());
        if let Some(wif) = key.to_wif() {
            assert_eq!(wif.parse::<PrivateKey>().unwrap().public_key(), key.public_key());
        }
        assert_ne!(PrivateKey::generate(key_type).public_key(), key.public_key());
    }
}

#[test]
fn fc_canonical_rule() {
    let mut b = [0u8; 65];
    b[0] = 31;
    b[1] = 0x10;
    b[33] = 0x10;
    assert!(Signature::K1(b).is_canonical());
    let cases: [(usize, u8, u8, bool); 6] = [
        (1, 0x80, 0x00, false), // r top bit set
        (1, 0x00, 0x7f, false), // r has a needless zero byte
        (1, 0x00, 0x80, true),  // r's zero byte is needed
        (33, 0x80, 0x00, false),
        (33, 0x00, 0x7f, false),
        (33, 0x00, 0x80, true),
    ];
    for (at, first, second, canonical) in cases {
        let mut c = b;
        c[at] = first;
        c[at + 1] = second;
        assert_eq!(
            Signature::K1(c).is_canonical(),
            canonical,
            "byte {at} = {first:#x} {second:#x}"
        );
    }
}

/// n - s for a secp256k1 scalar, using the secret-key negation of libsecp256k1.
fn negate_k1(s: &[u8]) -> [u8; 32] {
    let s: [u8; 32] = s.try_into().unwrap();
    secp256k1::SecretKey::from_secret_bytes(s).unwrap().negate().to_secret_bytes()
}

#[test]
fn from_raw_rs_k1_normalises_high_s_and_finds_the_recovery_id() {
    let key = PrivateKey::generate(KeyType::K1);
    let sk = secp256k1::SecretKey::from_secret_bytes(secret_of(&key)).unwrap();
    let public = key.public_key();
    let (mut ok, mut not_canonical) = (0, 0);
    for attempt in 0u8..200 {
        let digest = random_digest();
        // A plain (non-recoverable) signature, made high-S as an HSM may return it.
        let plain = secp256k1::ecdsa::sign_with_noncedata(
            secp256k1::Message::from_digest(digest.0),
            &sk,
            &[attempt; 32],
        );
        let mut rs = plain.serialize_compact();
        let low_s: [u8; 32] = rs[32..].try_into().unwrap();
        let high_s = negate_k1(&low_s);
        rs[32..].copy_from_slice(&high_s);
        match Signature::from_raw_rs(KeyType::K1, &rs, &digest, &public) {
            Ok(sig) => {
                ok += 1;
                assert!(sig.is_canonical());
                assert!(sig.verify(&digest, &public));
                assert_eq!(&sig.rs()[32..], &low_s[..], "s was not normalised");
            }
            Err(KeyError::NotCanonical) => {
                not_canonical += 1;
                let mut low = rs;
                low[32..].copy_from_slice(&low_s);
                assert!(!super::signature::fc_canonical(&low));
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // About a quarter of raw signatures are canonical.
    assert!(ok > 10 && not_canonical > 10, "ok {ok}, not canonical {not_canonical}");

    // The wrong key or the wrong curve is refused.
    let digest = random_digest();
    let rs = key.sign(&digest).rs().try_into().unwrap();
    let other = PrivateKey::generate(KeyType::K1).public_key();
    assert_eq!(
        Signature::from_raw_rs(KeyType::K1, &rs, &digest, &other),
        Err(KeyError::RecoveryMismatch)
    );
    let r1 = PrivateKey::generate(KeyType::R1).public_key();
    assert!(matches!(
        Signature::from_raw_rs(KeyType::K1, &rs, &digest, &r1),
        Err(KeyError::KeyTypeMismatch { .. })
    ));
    assert_eq!(
        Signature::from_raw_rs(KeyType::K1, &[0; 64], &digest, &public),
        Err(KeyError::InvalidSignature(KeyType::K1))
    );
    assert_eq!(
        Signature::from_raw_rs(KeyType::K1, &[0xff; 64], &digest, &public),
        Err(KeyError::InvalidSignature(KeyType::K1))
    );
}

#[test]
fn from_raw_rs_r1_normalises_high_s_and_finds_the_recovery_id() {
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;

    let key = PrivateKey::generate(KeyType::R1);
    let sk = p256::ecdsa::SigningKey::from_bytes(&secret_of(&key).into()).unwrap();
    let public = key.public_key();
    for _ in 0..32 {
        let digest = random_digest();
        let plain: p256::ecdsa::Signature = sk.sign_prehash(&digest.0).unwrap();
        let low = plain.normalize_s().unwrap_or(plain);
        let (r, s) = low.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert!(high.normalize_s().is_some(), "the test signature must be high-S");
        let rs: [u8; 64] = high.to_bytes().into();
        let sig = Signature::from_raw_rs(KeyType::R1, &rs, &digest, &public).unwrap();
        assert!(sig.is_canonical());
        assert!(sig.verify(&digest, &public));
        assert_eq!(sig.rs(), &low.to_bytes()[..]);
        // The DER form a YubiKey returns gives the same signature.
        let der = high.to_der();
        assert_eq!(Signature::from_der_rs(KeyType::R1, der.as_bytes(), &digest, &public), Ok(sig));
    }
    let digest = random_digest();
    let rs: [u8; 64] = key.sign(&digest).rs().try_into().unwrap();
    let other = PrivateKey::generate(KeyType::R1).public_key();
    assert_eq!(
        Signature::from_raw_rs(KeyType::R1, &rs, &digest, &other),
        Err(KeyError::RecoveryMismatch)
    );
    assert_eq!(
        Signature::from_der_rs(KeyType::R1, b"\x30\x00", &digest, &public),
        Err(KeyError::InvalidSignature(KeyType::R1))
    );
}

#[test]
fn from_der_rs_k1() {
    let key = PrivateKey::generate(KeyType::K1);
    let sk = secp256k1::SecretKey::from_secret_bytes(secret_of(&key)).unwrap();
    let mut found = false;
    for attempt in 0u8..64 {
        let digest = random_digest();
        let plain = secp256k1::ecdsa::sign_with_noncedata(
            secp256k1::Message::from_digest(digest.0),
            &sk,
            &[attempt; 32],
        );
        let der = plain.serialize_der();
        match Signature::from_der_rs(KeyType::K1, &der, &digest, &key.public_key()) {
            Ok(sig) => {
                assert!(sig.verify(&digest, &key.public_key()));
                found = true;
            }
            Err(e) => assert_eq!(e, KeyError::NotCanonical),
        }
    }
    assert!(found);
}

#[test]
fn binary_forms_round_trip_and_reject_bad_input() {
    let key: PrivateKey = WIF.parse().unwrap();
    let public = key.public_key();
    let bytes = to_bytes(&public);
    assert_eq!(bytes.len(), 34);
    assert_eq!(bytes[0], 0);
    assert_eq!(from_bytes::<PublicKey>(&bytes).unwrap(), public);
    let r1 = PUB_R1.parse::<PublicKey>().unwrap();
    assert_eq!(to_bytes(&r1)[0], 1);
    assert_eq!(from_bytes::<PublicKey>(&to_bytes(&r1)).unwrap(), r1);
    assert_eq!(<PublicKey as crate::codec::Unpack>::MIN_SIZE, 34);

    let mut wa = bytes.clone();
    wa[0] = 2;
    let err = from_bytes::<PublicKey>(&wa).unwrap_err();
    assert!(err.to_string().contains("WebAuthn keys are not supported"), "{err}");
    wa[0] = 3;
    assert!(matches!(from_bytes::<PublicKey>(&wa), Err(DecodeError::UnknownTag { tag: 3, .. })));
    let mut off = bytes.clone();
    off[1] = 0x07;
    assert!(matches!(from_bytes::<PublicKey>(&off), Err(DecodeError::Invalid { at: 1, .. })));
    assert!(matches!(
        from_bytes::<PublicKey>(&bytes[..20]),
        Err(DecodeError::UnexpectedEnd { .. })
    ));

    let sig = key.sign(&random_digest());
    let bytes = to_bytes(&sig);
    assert_eq!(bytes.len(), 66);
    assert_eq!(from_bytes::<Signature>(&bytes).unwrap(), sig);
    assert_eq!(<Signature as crate::codec::Unpack>::MIN_SIZE, 66);
    let mut bad = bytes.clone();
    bad[1] = 35;
    assert!(matches!(from_bytes::<Signature>(&bad), Err(DecodeError::Invalid { at: 1, .. })));
    bad[0] = 2;
    let err = from_bytes::<Signature>(&bad).unwrap_err();
    assert!(err.to_string().contains("WebAuthn"), "{err}");
    // A vector of keys cannot claim more entries than its bytes hold.
    assert!(matches!(
        from_bytes::<Vec<PublicKey>>(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
        Err(DecodeError::LengthTooLarge { .. })
    ));
}

#[test]
fn serde_uses_the_string_forms() {
    let public: PublicKey = PUB_K1.parse().unwrap();
    assert_eq!(serde_json::to_string(&public).unwrap(), format!("\"{PUB_K1}\""));
    assert_eq!(serde_json::from_str::<PublicKey>(&format!("\"{LEGACY}\"")).unwrap(), public);
    let sig: Signature = WHARF_SIG_R1.parse().unwrap();
    let json = serde_json::to_string(&sig).unwrap();
    assert_eq!(json, format!("\"{WHARF_SIG_R1}\""));
    assert_eq!(serde_json::from_str::<Signature>(&json).unwrap(), sig);
    assert!(serde_json::from_str::<PublicKey>("\"EOS1\"").is_err());
    assert_eq!(serde_json::to_string(&KeyType::R1).unwrap(), "\"R1\"");
}

#[test]
fn debug_and_order() {
    let k1: PublicKey = PUB_K1.parse().unwrap();
    let r1: PublicKey = PUB_R1.parse().unwrap();
    assert_eq!(format!("{k1:?}"), format!("PublicKey({PUB_K1})"));
    assert!(k1 < r1, "K1 keys sort before R1 keys, as the variant index does in fc");
    let sig: Signature = WHARF_SIG_K1.parse().unwrap();
    assert_eq!(format!("{sig:?}"), format!("Signature({WHARF_SIG_K1})"));
}

#[test]
fn r1_signing_matches_an_independent_implementation_byte_for_byte() {
    // Both sides use RFC 6979 with SHA-256 and low-S, so the signature is the same.
    let key = PrivateKey::from_bytes(KeyType::R1, &R1_SCALAR).unwrap();
    assert_eq!(key.sign(&vector_digest()).to_string(), WHARF_SIG_R1);
}

#[test]
fn vartime_linear_combination_matches_the_constant_time_one() {
    use p256::elliptic_curve::Field as _;
    use p256::elliptic_curve::ops::LinearCombination as _;
    use p256::{ProjectivePoint, Scalar};

    let g = ProjectivePoint::GENERATOR;
    let q = g * Scalar::random(&mut rand_core::OsRng);
    // Edge scalars (zero, one, the largest, a run of ones that carries through every limb)
    // and random ones.
    let mut scalars = vec![Scalar::ZERO, Scalar::ONE, -Scalar::ONE, Scalar::from(u64::MAX)];
    scalars.extend((0..6).map(|_| Scalar::random(&mut rand_core::OsRng)));
    let (gt, qt) = (signature::PointTables::new(&g), signature::PointTables::new(&q));
    for (i, a) in scalars.iter().enumerate() {
        let b = &scalars[(i + 3) % scalars.len()];
        let want = ProjectivePoint::lincomb(&g, a, &q, b);
        assert_eq!(signature::lincomb_vartime(&gt, a, &qt, b), want, "scalar pair {i}");
    }
}

#[test]
fn r1_recovery_id_by_verification_matches_trial_recovery() {
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;

    for _ in 0..64 {
        let key = PrivateKey::generate(KeyType::R1);
        let sk = p256::ecdsa::SigningKey::from_bytes(&secret_of(&key).into()).unwrap();
        let public = key.public_key();
        let digest = random_digest();
        let plain: p256::ecdsa::Signature = sk.sign_prehash(&digest.0).unwrap();
        let sig = plain.normalize_s().unwrap_or(plain);
        let by_trial = (0..4u8)
            .find(|&id| Signature::recover_p256(&sig, id, &digest).as_ref() == Ok(&public))
            .expect("one recovery id gives the key back");
        assert_eq!(signature::r1_recovery_id(&sig, &digest, &public), Some(by_trial));
        // Another digest or another key does not verify, so there is no recovery id.
        assert_eq!(signature::r1_recovery_id(&sig, &random_digest(), &public), None);
        let other = PrivateKey::generate(KeyType::R1).public_key();
        assert_eq!(signature::r1_recovery_id(&sig, &digest, &other), None);
        let k1 = PrivateKey::generate(KeyType::K1).public_key();
        assert_eq!(signature::r1_recovery_id(&sig, &digest, &k1), None);
    }
}

#[test]
fn trusted_decode_gives_the_checked_key_and_skips_only_the_curve_check() {
    use crate::codec::from_trusted_bytes;
    for t in [KeyType::K1, KeyType::R1] {
        let k = PrivateKey::generate(t).public_key();
        let packed = crate::to_bytes(&k);
        assert_eq!(crate::from_bytes::<PublicKey>(&packed).expect("checked"), k);
        assert_eq!(from_trusted_bytes::<PublicKey>(&packed).expect("trusted"), k);
    }
    // x = 5 is not on secp256k1: the checked decoder refuses it, the trusted one does not look.
    let mut off_curve = vec![0u8, 2];
    off_curve.extend_from_slice(&[0; 31]);
    off_curve.push(5);
    assert!(crate::from_bytes::<PublicKey>(&off_curve).is_err());
    assert!(from_trusted_bytes::<PublicKey>(&off_curve).is_ok());
    // A prefix that is no compressed point is still refused, trusted or not.
    off_curve[1] = 4;
    assert!(from_trusted_bytes::<PublicKey>(&off_curve).is_err());
}
