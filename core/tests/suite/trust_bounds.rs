//! The bounds hosts size their buffers and flash pages by are the real ones: the largest
//! contact record is exactly [`CONTACT_RECORD_MAX`] bytes, and a store holds `N`.

use seguro_core::limits::MAX_NAME_BYTES;
use seguro_core::trust::{CONTACT_RECORD_MAX, Contact, TrustStore};

fn largest() -> Contact {
    let mut s = TrustStore::<2>::new();
    let name = "a".repeat(MAX_NAME_BYTES);
    s.observe(&name, &[1; 32], 10).unwrap();
    s.verify(&name, &[1; 32]).unwrap();
    s.mark_v2(&name, Some(&[2; 32])).unwrap();
    // A changed key of a verified contact is kept pending beside the verified one.
    s.observe(&name, &[3; 32], 20).unwrap();
    let c = s.get(&name).unwrap().clone();
    assert!(c.verified() && c.ed25519().is_some() && c.pending().is_some());
    c
}

#[test]
fn the_largest_contact_record_fills_contact_record_max_exactly() {
    let c = largest();
    let mut out = vec![0; CONTACT_RECORD_MAX];
    assert_eq!(c.encode_record(&mut out), Ok(CONTACT_RECORD_MAX));
    assert!(c.encode_record(&mut out[..CONTACT_RECORD_MAX - 1]).is_err());
}

#[test]
fn a_store_holds_its_capacity_and_no_more() {
    let mut s = TrustStore::<3>::new();
    assert_eq!(s.capacity(), 3);
    for (i, n) in ["ann", "ben", "cat", "dan"].iter().enumerate() {
        s.observe(n, &[i as u8 + 1; 32], i as u64).unwrap();
    }
    assert_eq!(s.len(), s.capacity());
}
