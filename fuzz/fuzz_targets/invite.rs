//! Invites: any text. Parsing never panics, and whatever parses writes back to exactly
//! the same line (one text form per invite), which parses to the same invite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro_core::invite::Invite;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(invite) = Invite::parse(text) {
        let written = invite.to_string();
        assert_eq!(written, text.trim());
        assert_eq!(Invite::parse(&written).as_ref(), Ok(&invite));
    }
});
