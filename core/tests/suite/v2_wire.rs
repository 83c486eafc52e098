//! The v2 message layout (`v2::wire`, spec §7.1, §8, §12): the limits the spec states,
//! the exact length at which a message is too short, and refusals that read as what
//! went wrong.

use seguro_core::v2::wire::{
    self, FLAG_PRELUDE, HEADER_LEN, InnerError, MAX_BODY, MAX_INNER, PRELUDE_LEN, TAG_LEN,
    WireError,
};

/// The figures of the spec's limits table (§12), which hosts size buffers and the
/// server's `relay2` limit by.
#[test]
fn the_limits_are_the_specs() {
    assert_eq!(HEADER_LEN, 42);
    assert_eq!(PRELUDE_LEN, 40);
    assert_eq!(TAG_LEN, 16);
    assert_eq!(MAX_INNER, 1029, "type, id and 1024 bytes of text");
    assert_eq!(MAX_BODY, 1127, "82 + 1029 + 16");
}

fn message(flags: u8, len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len];
    m[0] = 2; // the version
    m[1] = flags;
    m
}

/// A message must hold its header (and prelude, if flagged) and a whole tag: one byte
/// less is too short; exactly that much parses, with the cipher text holding the tag.
#[test]
fn a_message_is_too_short_one_byte_below_header_prelude_and_tag() {
    for (flags, auth) in [(0, HEADER_LEN), (FLAG_PRELUDE, HEADER_LEN + PRELUDE_LEN)] {
        for len in [auth, auth + 1, auth + TAG_LEN - 1] {
            assert_eq!(
                wire::parse(&message(flags, len)).err(),
                Some(WireError::TooShort),
                "flags {flags}, {len} bytes"
            );
        }
        let m = message(flags, auth + TAG_LEN);
        let v = wire::parse(&m).unwrap();
        assert_eq!(v.authenticated.len(), auth);
        assert_eq!(v.ciphertext.len(), TAG_LEN);
        assert_eq!(v.prelude.is_some(), flags == FLAG_PRELUDE);
    }
    assert!(wire::parse(&message(0, MAX_BODY)).is_ok());
    assert_eq!(
        wire::parse(&message(0, MAX_BODY + 1)).err(),
        Some(WireError::TooLong)
    );
}

/// Every refusal has its own words (hosts show them in their warnings).
#[test]
fn refusals_read_as_what_happened() {
    let wire_errors = [
        (WireError::TooShort, "v2 message too short"),
        (WireError::TooLong, "v2 message longer than 1127 bytes"),
        (
            WireError::UnsupportedVersion(3),
            "unsupported protocol version 3",
        ),
        (WireError::BadFlags(0x84), "undefined header flags 0x84"),
    ];
    for (e, text) in wire_errors {
        assert_eq!(e.to_string(), text);
    }
    let inner_errors = [
        InnerError::Empty,
        InnerError::UnknownType(0x7f),
        InnerError::BadLength,
        InnerError::NotUtf8,
        InnerError::TextTooLong,
        InnerError::BadReceipt,
        InnerError::BadReason(9),
    ];
    let texts: std::collections::BTreeSet<String> =
        inner_errors.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), inner_errors.len(), "{texts:?}");
    assert!(texts.iter().all(|t| t.len() > 10), "{texts:?}");
    assert_eq!(
        InnerError::UnknownType(0x7f).to_string(),
        "unknown inner message type 0x7f"
    );
    assert_eq!(
        InnerError::TextTooLong.to_string(),
        "text longer than 1024 bytes"
    );
    use seguro_core::v2::wire::EmitError;
    for (e, text) in [
        (
            EmitError::BufferTooSmall { needed: 18 },
            "output buffer too small: 18 bytes needed",
        ),
        (EmitError::TextTooLong, "text longer than 1024 bytes"),
        (EmitError::BadReceipt, "a receipt carries 1 to 16 ids"),
    ] {
        assert_eq!(e.to_string(), text);
    }
}

/// `sas_cancel`'s reason byte (§8): 1 user, 2 mismatch, 3 protocol error, 4 timeout,
/// each read back as itself and written as its byte; any other byte is refused.
#[test]
fn every_cancel_reason_reads_back_as_itself_and_others_are_refused() {
    use seguro_core::v2::wire::{CancelReason, Inner};
    let sid = [5u8; 16];
    for (byte, reason) in [
        (1u8, CancelReason::User),
        (2, CancelReason::Mismatch),
        (3, CancelReason::Protocol),
        (4, CancelReason::Timeout),
    ] {
        let mut bytes = vec![0x14];
        bytes.extend_from_slice(&sid);
        bytes.push(byte);
        assert_eq!(
            Inner::parse(&bytes),
            Ok(Inner::SasCancel { sid, reason }),
            "reason {byte}"
        );
        let mut out = [0u8; 18];
        assert_eq!(Inner::SasCancel { sid, reason }.emit(&mut out), Ok(18));
        assert_eq!(out[..], bytes[..]);
    }
    for byte in [0u8, 5, 0xff] {
        let mut bytes = vec![0x14];
        bytes.extend_from_slice(&sid);
        bytes.push(byte);
        assert_eq!(Inner::parse(&bytes), Err(InnerError::BadReason(byte)));
    }
}

/// A receipt's ids as the receiver reads them: in order, counted, never empty.
#[test]
fn a_receipt_lists_its_ids_in_order() {
    use seguro_core::v2::wire::Inner;
    let Ok(Inner::Receipt(ids)) = Inner::parse(&[0x02, 2, 0, 0, 0, 7, 0xff, 0, 0, 1]) else {
        panic!("a receipt")
    };
    assert_eq!(ids.len(), 2);
    assert!(!ids.is_empty());
    assert_eq!(ids.iter().collect::<Vec<_>>(), [7, 0xff00_0001]);
}
