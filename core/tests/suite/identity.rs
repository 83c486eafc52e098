//! The long-term identity as hosts use it (`seguro_core::identity`, its storage record in
//! `seguro_core::store`, what v2 signs with it in `seguro_core::v2::identity`): sizes
//! hosts allocate from, what `Debug` may show, what a stored record must hold, and the
//! attacks the proof and signatures must refuse.

use seguro_core::identity::{Identity, PublicIdentity};
use seguro_core::limits::MAX_NAME_BYTES;
use seguro_core::store::{
    self, IDENTITY_BODY_MAX, RECORD_OVERHEAD, Reader, SEED_BODY_LEN, Seed, StoreError, Writer,
    file_type, kind,
};
use seguro_core::v2::identity::{Challenge, HelloProof, IdentityError, verify_binding};

fn id() -> Identity {
    Identity::from_secrets(&[0x11; 32], &[0x22; 32], 1_700_000_000)
}

/// The longest name a record holds: 32 four-byte characters.
fn longest_name() -> String {
    "🚀".repeat(MAX_NAME_BYTES / 4)
}

#[test]
fn the_longest_name_fills_identity_body_max_exactly() {
    // Hosts size their flash values and buffers from IDENTITY_BODY_MAX.
    let name = longest_name();
    assert_eq!(name.len(), MAX_NAME_BYTES);
    let mut buf = vec![0u8; 1024];
    let n = id().encode_record(&name, &mut buf).unwrap();
    assert_eq!(n, RECORD_OVERHEAD + IDENTITY_BODY_MAX);
    let (rec, rest) = store::read_record(&buf[..n]).unwrap();
    assert!(rest.is_empty());
    assert_eq!(rec.body.len(), IDENTITY_BODY_MAX);
    let (back, stored) = Identity::from_record(&rec).unwrap();
    assert_eq!(stored.as_str(), name);
    assert_eq!(back.public_keys(), id().public_keys());
    // One byte short of the record is refused with the size needed.
    assert_eq!(
        id().encode_record(&name, &mut buf[..n - 1]),
        Err(StoreError::BufferTooSmall { needed: n })
    );
}

#[test]
fn a_record_holds_both_public_keys_and_refuses_a_swapped_half() {
    let a = id();
    let mut buf = [0u8; 512];
    let n = a.encode_record("alice", &mut buf).unwrap();
    let body = &buf[4..n - 4];
    // Layout: name, X secret, X public, Ed seed, Ed public, created.
    assert_eq!(&body[6..38], &a.secrets().0);
    assert_eq!(&body[38..70], &a.public());
    assert_eq!(&body[70..102], &a.secrets().1);
    assert_eq!(&body[102..134], &a.ed25519_public());
    assert_eq!(&body[134..142], &1_700_000_000u64.to_le_bytes());
    // Another identity's Ed25519 half with this X25519 half: refused, not mixed.
    let b = Identity::from_secrets(&[0x11; 32], &[0x33; 32], 0);
    let mut mixed = body.to_vec();
    mixed[70..102].copy_from_slice(&b.secrets().1);
    let mut out = [0u8; 512];
    let m = store::write_record(&mut out, kind::IDENTITY, 1, &mixed).unwrap();
    let (rec, _) = store::read_record(&out[..m]).unwrap();
    assert_eq!(
        Identity::from_record(&rec).unwrap_err(),
        StoreError::KeyMismatch
    );
    // A seed record is not an identity.
    let s = Seed {
        seed: [5; 32],
        boots: 2,
    };
    let m = s.encode_record(&mut out).unwrap();
    let (rec, _) = store::read_record(&out[..m]).unwrap();
    assert_eq!(
        Identity::from_record(&rec).unwrap_err(),
        StoreError::Missing {
            kind: kind::IDENTITY
        }
    );
    assert_eq!(m, RECORD_OVERHEAD + SEED_BODY_LEN);
    assert_eq!(Seed::from_record(&rec).unwrap(), s);
}

#[test]
fn identity_files_carry_one_identity_and_the_public_key_users_compare() {
    let a = id();
    let mut buf = [0u8; 512];
    let n = a.encode_file("alice", &mut buf).unwrap();
    let (back, name) = Identity::decode_file(&buf[..n]).unwrap();
    assert_eq!(name.as_str(), "alice");
    assert_eq!(back.public(), a.public());
    assert_eq!(back.fingerprint(), a.fingerprint());
    assert_eq!(back.safety_code(), a.safety_code());
    assert_eq!(back.created(), a.created());
    // The file is an identity file: a trust file is not.
    let w = Writer::new(&mut buf, file_type::TRUST);
    let m = w.finish().unwrap();
    assert_eq!(
        Identity::decode_file(&buf[..m]).unwrap_err(),
        StoreError::WrongFileType {
            found: file_type::TRUST
        }
    );
    let mut w = Writer::new(&mut buf, file_type::BUNDLE);
    a.write("alice", &mut w);
    let m = w.finish().unwrap();
    let mut r = Reader::new(&buf[..m], file_type::BUNDLE).unwrap();
    let rec = r.next().unwrap().unwrap();
    assert_eq!(Identity::from_record(&rec).unwrap().0.public(), a.public());
}

#[test]
fn debug_output_never_shows_a_secret() {
    let a = id();
    let s = format!("{a:?}");
    assert!(s.starts_with("Identity"), "{s}");
    assert!(s.contains(a.fingerprint().as_str()), "{s}");
    assert!(s.contains("1700000000"), "{s}");
    for secret in [[0x11u8; 32], [0x22; 32]] {
        assert!(
            !s.contains(
                &format!("{:?}", &secret[..4])
                    .trim_end_matches(']')
                    .to_string()
            )
        );
        assert!(!s.contains("11111111") && !s.contains("22222222"), "{s}");
    }
    let seed = Seed {
        seed: [0x5a; 32],
        boots: 77,
    };
    let s = format!("{seed:?}");
    assert!(s.starts_with("Seed") && s.contains("77"), "{s}");
    assert!(!s.contains("90") && !s.contains("5a"), "{s}");
}

#[test]
fn the_proof_holds_for_the_longest_name() {
    let a = id();
    let name = longest_name();
    let challenge = Challenge::from_parts([9; 32], &[8; 32]);
    let spki = [7; 32];
    let proof = a
        .hello_proof(&name, &spki, challenge.nonce(), challenge.eph_public())
        .unwrap();
    let bind = a.bind(&name).unwrap();
    verify_binding(&name, &a.public_keys(), &bind).unwrap();
    challenge
        .verify(&name, &a.public_keys(), &bind, &spki, &proof)
        .unwrap();
    // One byte more is not a name.
    let longer = format!("{name}x");
    assert_eq!(a.bind(&longer), Err(IdentityError::BadName));
    assert_eq!(
        a.hello_proof(&longer, &spki, challenge.nonce(), challenge.eph_public()),
        Err(IdentityError::BadName)
    );
}

#[test]
fn a_mac_with_two_compensating_flips_is_still_refused() {
    // Flipping the same bit in two bytes leaves the XOR of all bytes unchanged: the
    // comparison must look at every byte, not at a parity.
    let a = id();
    let challenge = Challenge::from_parts([1; 32], &[2; 32]);
    let spki = [3; 32];
    let proof = a
        .hello_proof("alice", &spki, challenge.nonce(), challenge.eph_public())
        .unwrap();
    let bind = a.bind("alice").unwrap();
    for (i, j) in [(0, 1), (5, 31), (30, 31)] {
        let mut bad = proof;
        bad.mac[i] ^= 0x40;
        bad.mac[j] ^= 0x40;
        assert_eq!(
            challenge.verify("alice", &a.public_keys(), &bind, &spki, &bad),
            Err(IdentityError::BadMac)
        );
    }
    let zero = HelloProof {
        sig: proof.sig,
        mac: [0; 32],
    };
    assert_eq!(
        challenge.verify("alice", &a.public_keys(), &bind, &spki, &zero),
        Err(IdentityError::BadMac)
    );
}

#[test]
fn a_low_order_key_is_refused_not_used() {
    let a = id();
    let challenge = Challenge::from_parts([1; 32], &[2; 32]);
    // A server's all-zero ephemeral key: the client refuses to answer.
    assert_eq!(
        a.hello_proof("alice", &[3; 32], challenge.nonce(), &[0; 32]),
        Err(IdentityError::WeakKey)
    );
    // A client that binds its Ed25519 key to the all-zero X25519 key (any Ed25519 key
    // holder can sign that) is refused by the server's check.
    use ed25519_dalek::Signer as _;
    let claimed = PublicIdentity {
        x: [0; 32],
        ed: a.ed25519_public(),
    };
    let sign = |msg: &[u8]| a.signing_key().sign(msg).to_bytes();
    let mut bind_msg = b"seguro/v2/identity\0\x05alice".to_vec();
    bind_msg.extend_from_slice(&claimed.x);
    bind_msg.extend_from_slice(&claimed.ed);
    let bind = sign(&bind_msg);
    verify_binding("alice", &claimed, &bind).unwrap();
    let mut p = b"seguro/v2/hello\0".to_vec();
    for part in [
        &[3u8; 32][..],
        challenge.nonce(),
        challenge.eph_public(),
        b"\x05alice",
        &claimed.x,
        &claimed.ed,
    ] {
        p.extend_from_slice(part);
    }
    let proof = HelloProof {
        sig: sign(&p),
        mac: [0; 32],
    };
    assert_eq!(
        challenge.verify("alice", &claimed, &bind, &[3; 32], &proof),
        Err(IdentityError::WeakKey)
    );
}

#[test]
fn errors_have_distinct_messages() {
    let all = [
        IdentityError::BadName,
        IdentityError::BadSignature,
        IdentityError::BadMac,
        IdentityError::WeakKey,
        IdentityError::KeyDerivation,
    ];
    let texts: Vec<String> = all.iter().map(ToString::to_string).collect();
    for (i, t) in texts.iter().enumerate() {
        assert!(t.len() > 10, "{t}");
        assert!(!texts[..i].contains(t), "{t}");
    }
    assert!(texts[0].contains("128"));
}
