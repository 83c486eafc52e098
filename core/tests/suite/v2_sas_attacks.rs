//! The v2 SAS verification run refuses what a lying server or a confused peer sends:
//! messages of another run, steps out of order or replayed, a revealed key that does not
//! match its commitment, a low-order key, a forged confirmation. A refused step ends the
//! run (except a message of another run, which is ignored), so a run that failed never
//! reports verified.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use seguro_core::identity::PublicIdentity;
use seguro_core::v2::sas::{Sas, SasError, SasParties};
use seguro_core::v2::wire::Inner;

fn parties() -> SasParties<'static> {
    SasParties {
        a_name: "alice",
        a: PublicIdentity {
            x: [1; 32],
            ed: [2; 32],
        },
        b_name: "bob",
        b: PublicIdentity {
            x: [3; 32],
            ed: [4; 32],
        },
    }
}

/// Both sides up to the codes being shown: (alice, bob, sid, alice's epk, bob's epk).
fn shown(seed: u64) -> (Sas, Sas, [u8; 16], [u8; 32], [u8; 32]) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (mut a, start) = Sas::start(&mut rng);
    let Inner::SasStart { sid, commit } = start else {
        panic!("start")
    };
    let (mut b, key) = Sas::accept(&mut rng, sid, commit);
    let Inner::SasKey { epk: epk_b, .. } = key else {
        panic!("key")
    };
    let Inner::SasReveal { epk: epk_a, .. } = a.on_key(&parties(), &sid, &epk_b).unwrap() else {
        panic!("reveal")
    };
    b.on_reveal(&parties(), &sid, &epk_a).unwrap();
    assert!(a.code().is_some());
    assert_eq!(a.code(), b.code());
    (a, b, sid, epk_a, epk_b)
}

fn mac(m: Inner<'_>) -> [u8; 32] {
    let Inner::SasConfirm { mac, .. } = m else {
        panic!("confirm")
    };
    mac
}

#[test]
fn an_honest_run_verifies_both_sides() {
    let (mut a, mut b, sid, _, _) = shown(1);
    let ma = mac(a.confirm().unwrap());
    let mb = mac(b.confirm().unwrap());
    b.on_confirm(&sid, &ma).unwrap();
    a.on_confirm(&sid, &mb).unwrap();
    assert!(a.is_verified() && b.is_verified());
    assert!(!a.has_failed() && !b.has_failed());
}

#[test]
fn a_message_of_another_run_is_refused_and_ignored() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (mut a, start) = Sas::start(&mut rng);
    let Inner::SasStart { sid, commit } = start else {
        panic!()
    };
    let (_b, key) = Sas::accept(&mut rng, sid, commit);
    let Inner::SasKey { epk: epk_b, .. } = key else {
        panic!()
    };
    let mut other = sid;
    other[0] ^= 1;
    assert_eq!(
        a.on_key(&parties(), &other, &epk_b).err(),
        Some(SasError::WrongRun)
    );
    assert!(
        !a.has_failed(),
        "another run's message does not end this one"
    );
    assert!(a.code().is_none());
    // The right run still goes on.
    a.on_key(&parties(), &sid, &epk_b).unwrap();
    assert!(a.code().is_some());
}

#[test]
fn a_message_of_another_run_for_the_other_role_is_ignored_too() {
    // Both users started at once: the starter of one run gets the other run's reveal,
    // the responder of one run gets the other's key. Neither ends the run it belongs
    // to (it is another run's): ignored, and each run still completes.
    let (mut a, mut b, sid, epk_a, epk_b) = {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let (a, start) = Sas::start(&mut rng);
        let Inner::SasStart { sid, commit } = start else {
            panic!()
        };
        let (b, key) = Sas::accept(&mut rng, sid, commit);
        let Inner::SasKey { epk: epk_b, .. } = key else {
            panic!()
        };
        (a, b, sid, [9u8; 32], epk_b)
    };
    let mut other = sid;
    other[15] ^= 0x80;
    assert_eq!(
        a.on_reveal(&parties(), &other, &epk_a).err(),
        Some(SasError::WrongRun)
    );
    assert!(!a.has_failed());
    assert_eq!(
        b.on_key(&parties(), &other, &epk_b).err(),
        Some(SasError::WrongRun)
    );
    assert!(!b.has_failed());
    // The run's own messages still work on both sides.
    let Inner::SasReveal { epk: real_a, .. } = a.on_key(&parties(), &sid, &epk_b).unwrap() else {
        panic!()
    };
    b.on_reveal(&parties(), &sid, &real_a).unwrap();
    assert!(a.code().is_some());
    assert_eq!(a.code(), b.code());
    // The same role mix-up within the run itself still ends it.
    assert_eq!(
        a.on_reveal(&parties(), &sid, &real_a).err(),
        Some(SasError::OutOfOrder)
    );
    assert!(a.has_failed());
    assert_eq!(
        b.on_key(&parties(), &sid, &epk_b).err(),
        Some(SasError::OutOfOrder)
    );
    assert!(b.has_failed());
}

#[test]
fn a_replayed_key_ends_the_run() {
    let (mut a, _b, sid, _, epk_b) = shown(3);
    let code = a.code();
    assert_eq!(
        a.on_key(&parties(), &sid, &epk_b).err(),
        Some(SasError::OutOfOrder)
    );
    assert!(a.has_failed());
    assert!(a.code().is_none(), "a failed run shows no code");
    assert!(code.is_some());
}

#[test]
fn a_replayed_reveal_ends_the_run() {
    let (_a, mut b, sid, epk_a, _) = shown(4);
    assert_eq!(
        b.on_reveal(&parties(), &sid, &epk_a).err(),
        Some(SasError::OutOfOrder)
    );
    assert!(b.has_failed());
}

#[test]
fn the_wrong_role_is_out_of_order() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (mut a, start) = Sas::start(&mut rng);
    let Inner::SasStart { sid, commit } = start else {
        panic!()
    };
    let (mut b, _) = Sas::accept(&mut rng, sid, commit);
    assert!(a.is_starter() && !b.is_starter());
    assert_eq!(
        b.on_key(&parties(), &sid, &[9; 32]).err(),
        Some(SasError::OutOfOrder)
    );
    assert!(b.has_failed());
    assert_eq!(
        a.on_reveal(&parties(), &sid, &[9; 32]).err(),
        Some(SasError::OutOfOrder)
    );
    assert!(a.has_failed());
}

#[test]
fn a_confirmation_before_the_codes_is_out_of_order() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let (mut a, start) = Sas::start(&mut rng);
    let Inner::SasStart { sid, commit } = start else {
        panic!()
    };
    assert_eq!(a.confirm().err(), Some(SasError::OutOfOrder));
    assert_eq!(
        a.on_confirm(&sid, &[0; 32]).err(),
        Some(SasError::OutOfOrder)
    );
    assert!(a.has_failed());
    assert!(!a.is_verified());
    let (mut b, _) = Sas::accept(&mut rng, sid, commit);
    assert_eq!(
        b.on_confirm(&sid, &[0; 32]).err(),
        Some(SasError::OutOfOrder)
    );
    assert!(b.has_failed());
}

#[test]
fn a_key_that_does_not_match_its_commitment_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let (mut a, start) = Sas::start(&mut rng);
    let Inner::SasStart { sid, commit } = start else {
        panic!()
    };
    let (mut b, key) = Sas::accept(&mut rng, sid, commit);
    let Inner::SasKey { epk: epk_b, .. } = key else {
        panic!()
    };
    let Inner::SasReveal { epk: epk_a, .. } = a.on_key(&parties(), &sid, &epk_b).unwrap() else {
        panic!()
    };
    // A server that substitutes its own key for alice's after seeing bob's.
    let mut forged = epk_a;
    forged[5] ^= 0x40;
    assert_eq!(
        b.on_reveal(&parties(), &sid, &forged).err(),
        Some(SasError::BadCommitment)
    );
    assert!(b.has_failed() && b.code().is_none());
}

#[test]
fn a_low_order_key_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let (mut a, start) = Sas::start(&mut rng);
    let Inner::SasStart { sid, .. } = start else {
        panic!()
    };
    assert_eq!(
        a.on_key(&parties(), &sid, &[0; 32]).err(),
        Some(SasError::WeakKey)
    );
    assert!(a.has_failed() && a.code().is_none());
}

#[test]
fn bad_names_are_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let (mut a, start) = Sas::start(&mut rng);
    let Inner::SasStart { sid, commit } = start else {
        panic!()
    };
    let (_, key) = Sas::accept(&mut rng, sid, commit);
    let Inner::SasKey { epk: epk_b, .. } = key else {
        panic!()
    };
    let p = SasParties {
        a_name: "",
        ..parties()
    };
    assert_eq!(a.on_key(&p, &sid, &epk_b).err(), Some(SasError::BadName));
    assert!(a.has_failed());
}

#[test]
fn a_forged_or_reflected_confirmation_is_a_mismatch() {
    let (mut a, mut b, sid, _, _) = shown(10);
    let ma = mac(a.confirm().unwrap());
    // The server reflects alice's own confirmation back to her.
    assert_eq!(a.on_confirm(&sid, &ma).err(), Some(SasError::Mismatch));
    assert!(a.has_failed() && !a.is_verified());
    // A flipped bit in a confirmation.
    let mut forged = ma;
    forged[31] ^= 1;
    assert_eq!(b.on_confirm(&sid, &forged).err(), Some(SasError::Mismatch));
    b.confirm().ok();
    assert!(!b.is_verified());
}

#[test]
fn different_parties_give_different_codes() {
    // The same keys under other names (a server that renames a user) give another code.
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let (mut a, start) = Sas::start(&mut rng);
    let Inner::SasStart { sid, commit } = start else {
        panic!()
    };
    let (mut b, key) = Sas::accept(&mut rng, sid, commit);
    let Inner::SasKey { epk: epk_b, .. } = key else {
        panic!()
    };
    let Inner::SasReveal { epk: epk_a, .. } = a.on_key(&parties(), &sid, &epk_b).unwrap() else {
        panic!()
    };
    let renamed = SasParties {
        b_name: "b0b",
        ..parties()
    };
    b.on_reveal(&renamed, &sid, &epk_a).unwrap();
    assert!(a.code().is_some() && b.code().is_some());
    assert_ne!(a.code(), b.code());
}

#[test]
fn every_refusal_has_its_own_words() {
    let all = [
        SasError::WrongRun,
        SasError::OutOfOrder,
        SasError::BadCommitment,
        SasError::Mismatch,
        SasError::WeakKey,
        SasError::BadName,
        SasError::KeyDerivation,
    ];
    let texts: std::collections::BTreeSet<String> = all.iter().map(|e| e.to_string()).collect();
    assert_eq!(texts.len(), all.len(), "{texts:?}");
    assert!(texts.iter().all(|t| t.len() > 10), "{texts:?}");
    assert!(SasError::Mismatch.to_string().contains("codes differ"));
}

#[test]
fn names_of_the_longest_length_give_a_code() {
    let long_a = "a".repeat(128);
    let long_b = "b".repeat(128);
    let p = SasParties {
        a_name: &long_a,
        b_name: &long_b,
        ..parties()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let (mut a, start) = Sas::start(&mut rng);
    let Inner::SasStart { sid, commit } = start else {
        panic!()
    };
    let (mut b, key) = Sas::accept(&mut rng, sid, commit);
    let Inner::SasKey { epk: epk_b, .. } = key else {
        panic!()
    };
    let Inner::SasReveal { epk: epk_a, .. } = a.on_key(&p, &sid, &epk_b).unwrap() else {
        panic!()
    };
    b.on_reveal(&p, &sid, &epk_a).unwrap();
    assert!(a.code().is_some());
    assert_eq!(a.code(), b.code());
    // One byte more is refused.
    let longer = "a".repeat(129);
    let (mut c, start) = Sas::start(&mut rng);
    let Inner::SasStart { sid, .. } = start else {
        panic!()
    };
    let q = SasParties {
        a_name: &longer,
        ..parties()
    };
    assert_eq!(c.on_key(&q, &sid, &epk_b).err(), Some(SasError::BadName));
}

#[test]
fn the_code_reads_as_three_groups_of_digits() {
    use seguro_core::v2::sas::SasCode;
    let code = SasCode::from_bytes([0xff; 6]);
    assert_eq!(code.decimal(), [9191, 9191, 9191]);
    assert_eq!(code.to_string(), "9191 9191 9191");
    let code = SasCode::from_bytes([0; 6]);
    assert_eq!(code.to_string(), "1000 1000 1000");
}

#[test]
fn debug_output_shows_the_role_and_state_and_no_secret() {
    let (mut a, mut b, sid, _, _) = shown(13);
    let shown_a = format!("{a:?}");
    assert!(shown_a.starts_with("Sas {"), "{shown_a}");
    assert!(shown_a.contains("starter: true") && shown_a.contains("verified: false"));
    assert!(
        !shown_a.contains("esk") && !shown_a.contains("mac_key"),
        "{shown_a}"
    );
    let ma = mac(a.confirm().unwrap());
    let mb = mac(b.confirm().unwrap());
    b.on_confirm(&sid, &ma).unwrap();
    a.on_confirm(&sid, &mb).unwrap();
    assert!(format!("{b:?}").contains("starter: false, verified: true"));
}
