//! Short authentication strings (spec §9): a commit-then-reveal exchange over inner
//! control messages that gives both users the same 7 emoji or three 4-digit groups,
//! unless someone in the middle substituted keys.
//!
//! ```text
//! starter A                                responder B
//! Sas::start ──── Inner::SasStart ──────►  Sas::accept
//! on_key     ◄─── Inner::SasKey ─────────
//!            ──── Inner::SasReveal ─────►  on_reveal        (both: code())
//! confirm    ──── Inner::SasConfirm ────►  on_confirm       (after each user said "match")
//! on_confirm ◄─── Inner::SasConfirm ───── confirm
//! ```
//!
//! [`Sas::is_verified`] is true once the local user confirmed and the peer's
//! confirmation verified: then mark the contact verified in the trust store.

use core::fmt;

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::identity::PublicIdentity;
use crate::v2::identity::subtle_eq;
use crate::v2::wire::{Inner, SID_LEN};
use crate::v2::{
    Concat, KEY_LEN, MAX_NAME_BYTES, Z32, dh, hkdf, hmac, label, name_ok, x25519_public,
};

/// Why an SAS step was refused.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SasError {
    /// The message belongs to another run (`sid` differs).
    WrongRun,
    /// The message does not fit the current step.
    OutOfOrder,
    /// The revealed key does not match the commitment: someone changed it.
    BadCommitment,
    /// The peer's confirmation does not verify: the codes differ.
    Mismatch,
    /// A key is a low-order point.
    WeakKey,
    /// A name is empty or longer than 128 bytes (caller mistake).
    BadName,
    /// Key derivation failed (cannot happen; no panicking path).
    KeyDerivation,
}

impl fmt::Display for SasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WrongRun => "SAS message for another verification",
            Self::OutOfOrder => "unexpected SAS message",
            Self::BadCommitment => "SAS key does not match its commitment",
            Self::Mismatch => "SAS confirmation does not match: the codes differ",
            Self::WeakKey => "SAS key is a low-order point",
            Self::BadName => "name must be 1 to 128 bytes",
            Self::KeyDerivation => "key derivation failed",
        })
    }
}

impl core::error::Error for SasError {}

/// The two parties as the SAS transcript names them: `a` started the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SasParties<'a> {
    /// The starter's name.
    pub a_name: &'a str,
    /// The starter's keys.
    pub a: PublicIdentity,
    /// The responder's name.
    pub b_name: &'a str,
    /// The responder's keys.
    pub b: PublicIdentity,
}

/// The 6 code bytes both users compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SasCode([u8; 6]);

impl SasCode {
    /// Wraps code bytes (test vectors).
    pub fn from_bytes(bytes: [u8; 6]) -> Self {
        Self(bytes)
    }

    /// Three numbers from 1000 to 9191 (39 bits), shown `1234 5678 9012`.
    pub fn decimal(&self) -> [u16; 3] {
        let b = self.0.map(u16::from);
        let [b0, b1, b2, b3, b4, _] = b;
        [
            ((b0 << 5) | (b1 >> 3)) + 1000,
            (((b1 & 7) << 10) | (b2 << 2) | (b3 >> 6)) + 1000,
            (((b3 & 0x3f) << 7) | (b4 >> 1)) + 1000,
        ]
    }

    /// Seven indices into [`EMOJI`] (42 bits).
    pub fn emoji_indices(&self) -> [u8; 7] {
        let mut wide = [0u8; 8];
        if let Some(dst) = wide.get_mut(2..) {
            dst.copy_from_slice(&self.0);
        }
        let bits = u64::from_be_bytes(wide) >> 6;
        let mut out = [0u8; 7];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::try_from((bits >> (6 * (6 - i))) & 0x3f).unwrap_or(0);
        }
        out
    }

    /// The seven emoji with their names.
    pub fn emoji(&self) -> [(&'static str, &'static str); 7] {
        self.emoji_indices()
            .map(|i| EMOJI.get(usize::from(i)).copied().unwrap_or(("?", "?")))
    }
}

impl fmt::Display for SasCode {
    /// The digits, `1234 5678 9012`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.decimal();
        write!(f, "{a} {b} {c}")
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Zeroize)]
enum Step {
    /// A sent its start and waits for B's key.
    Started,
    /// B sent its key and waits for A's reveal.
    Accepted,
    /// Codes known; waiting for confirmations.
    Shown,
    /// Refused or cancelled; nothing more happens.
    Failed,
}

/// One SAS run. Secrets are wiped when dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Sas {
    starter: bool,
    step: Step,
    sid: [u8; SID_LEN],
    esk: [u8; KEY_LEN],
    epk: [u8; KEY_LEN],
    commit: [u8; 32],
    code: [u8; 6],
    mac_key: [u8; 32],
    confirmed_local: bool,
    confirmed_peer: bool,
}

fn commitment(sid: &[u8; SID_LEN], epk: &[u8; KEY_LEN]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label!("sas-commit"));
    h.update(sid);
    h.update(epk);
    h.finalize().into()
}

impl Sas {
    fn new(starter: bool, sid: [u8; SID_LEN], esk: &[u8; KEY_LEN]) -> Self {
        let epk = x25519_public(esk);
        Self {
            starter,
            step: if starter {
                Step::Started
            } else {
                Step::Accepted
            },
            sid,
            esk: *esk,
            epk,
            commit: [0; 32],
            code: [0; 6],
            mac_key: [0; 32],
            confirmed_local: false,
            confirmed_peer: false,
        }
    }

    /// Starts a run: draws the transaction id (16 bytes) and the ephemeral key (32) from
    /// `rng`; send the returned [`Inner::SasStart`].
    pub fn start(rng: &mut impl rand_core::CryptoRngCore) -> (Self, Inner<'static>) {
        let mut sid = [0u8; SID_LEN];
        rng.fill_bytes(&mut sid);
        let mut esk = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(esk.as_mut());
        let mut s = Self::new(true, sid, &esk);
        s.commit = commitment(&sid, &s.epk);
        let msg = Inner::SasStart {
            sid,
            commit: s.commit,
        };
        (s, msg)
    }

    /// Answers a peer's `sas_start`: draws the ephemeral key (32 bytes) from `rng`; send
    /// the returned [`Inner::SasKey`].
    pub fn accept(
        rng: &mut impl rand_core::CryptoRngCore,
        sid: [u8; SID_LEN],
        commit: [u8; 32],
    ) -> (Self, Inner<'static>) {
        let mut esk = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(esk.as_mut());
        let mut s = Self::new(false, sid, &esk);
        s.commit = commit;
        let msg = Inner::SasKey { sid, epk: s.epk };
        (s, msg)
    }

    /// The transaction id.
    pub fn sid(&self) -> &[u8; SID_LEN] {
        &self.sid
    }

    /// Whether this side started the run (then it is `a` in [`SasParties`]).
    pub fn is_starter(&self) -> bool {
        self.starter
    }

    fn fail<T>(&mut self, e: SasError) -> Result<T, SasError> {
        self.step = Step::Failed;
        Err(e)
    }

    fn check(&mut self, sid: &[u8; SID_LEN], step: Step) -> Result<(), SasError> {
        if *sid != self.sid {
            return Err(SasError::WrongRun);
        }
        if self.step != step {
            return self.fail(SasError::OutOfOrder);
        }
        Ok(())
    }

    /// The starter receives the responder's key: derives the code and returns the
    /// [`Inner::SasReveal`] to send.
    pub fn on_key(
        &mut self,
        parties: &SasParties<'_>,
        sid: &[u8; SID_LEN],
        epk_b: &[u8; KEY_LEN],
    ) -> Result<Inner<'static>, SasError> {
        // Another run's message is ignored whatever its kind, this run goes on.
        if *sid != self.sid {
            return Err(SasError::WrongRun);
        }
        if !self.starter {
            return self.fail(SasError::OutOfOrder);
        }
        self.check(sid, Step::Started)?;
        let epk_a = self.epk;
        self.derive(parties, &epk_a, epk_b)?;
        Ok(Inner::SasReveal {
            sid: self.sid,
            epk: self.epk,
        })
    }

    /// The responder receives the starter's revealed key: checks the commitment and
    /// derives the code.
    pub fn on_reveal(
        &mut self,
        parties: &SasParties<'_>,
        sid: &[u8; SID_LEN],
        epk_a: &[u8; KEY_LEN],
    ) -> Result<(), SasError> {
        if *sid != self.sid {
            return Err(SasError::WrongRun);
        }
        if self.starter {
            return self.fail(SasError::OutOfOrder);
        }
        self.check(sid, Step::Accepted)?;
        if !subtle_eq(&commitment(sid, epk_a), &self.commit) {
            return self.fail(SasError::BadCommitment);
        }
        let epk_b = self.epk;
        self.derive(parties, epk_a, &epk_b)
    }

    fn derive(
        &mut self,
        p: &SasParties<'_>,
        epk_a: &[u8; KEY_LEN],
        epk_b: &[u8; KEY_LEN],
    ) -> Result<(), SasError> {
        if !name_ok(p.a_name) || !name_ok(p.b_name) {
            return self.fail(SasError::BadName);
        }
        let peer = if self.starter { epk_b } else { epk_a };
        let Some(shared) = dh(&self.esk, peer) else {
            return self.fail(SasError::WeakKey);
        };
        // Exactly the transcript's largest size: a name longer than 128 bytes does not fit.
        let mut t =
            Concat::<{ label!("sas").len() + SID_LEN + 7 * 32 + 2 + 2 * MAX_NAME_BYTES }>::new();
        t.push(label!("sas"))
            .push(&self.sid)
            .push(&self.commit)
            .push(epk_a)
            .push(epk_b)
            .push(&p.a.x)
            .push(&p.a.ed)
            .push(&p.b.x)
            .push(&p.b.ed)
            .push_name(p.a_name)
            .push_name(p.b_name);
        let Some(t) = t.bytes() else {
            return self.fail(SasError::BadName);
        };
        let mut okm = Zeroizing::new([0u8; 38]);
        if hkdf(&Z32, shared.as_ref(), &[t], okm.as_mut()).is_err() {
            return self.fail(SasError::KeyDerivation);
        }
        let (code, mac_key) = okm.split_at(6);
        self.code.copy_from_slice(code);
        self.mac_key.copy_from_slice(mac_key);
        self.esk.zeroize();
        self.step = Step::Shown;
        Ok(())
    }

    /// The code to show, once both keys are known.
    pub fn code(&self) -> Option<SasCode> {
        (self.step == Step::Shown).then_some(SasCode(self.code))
    }

    fn confirm_mac(&self, starter: bool) -> [u8; 32] {
        hmac(
            &self.mac_key,
            &[label!("sas-confirm"), &[u8::from(!starter)]],
        )
    }

    /// The local user compared the codes and said they match: returns the
    /// [`Inner::SasConfirm`] to send.
    pub fn confirm(&mut self) -> Result<Inner<'static>, SasError> {
        if self.step != Step::Shown {
            return Err(SasError::OutOfOrder);
        }
        self.confirmed_local = true;
        Ok(Inner::SasConfirm {
            sid: self.sid,
            mac: self.confirm_mac(self.starter),
        })
    }

    /// The peer's confirmation arrived. [`SasError::Mismatch`] means the codes differ
    /// (or someone tampered): warn loudly and cancel.
    pub fn on_confirm(&mut self, sid: &[u8; SID_LEN], mac: &[u8; 32]) -> Result<(), SasError> {
        self.check(sid, Step::Shown)?;
        if !subtle_eq(&self.confirm_mac(!self.starter), mac) {
            return self.fail(SasError::Mismatch);
        }
        self.confirmed_peer = true;
        Ok(())
    }

    /// Both users confirmed and the peer's confirmation verified.
    pub fn is_verified(&self) -> bool {
        self.step == Step::Shown && self.confirmed_local && self.confirmed_peer
    }

    /// Whether the run failed (any refused step ends it).
    pub fn has_failed(&self) -> bool {
        self.step == Step::Failed
    }
}

impl fmt::Debug for Sas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sas")
            .field("starter", &self.starter)
            .field("verified", &self.is_verified())
            .finish_non_exhaustive()
    }
}

/// The 64 SAS emoji of the Matrix specification, in index order, with their names.
pub const EMOJI: [(&str, &str); 64] = [
    ("🐶", "Dog"),
    ("🐱", "Cat"),
    ("🦁", "Lion"),
    ("🐎", "Horse"),
    ("🦄", "Unicorn"),
    ("🐷", "Pig"),
    ("🐘", "Elephant"),
    ("🐰", "Rabbit"),
    ("🐼", "Panda"),
    ("🐓", "Rooster"),
    ("🐧", "Penguin"),
    ("🐢", "Turtle"),
    ("🐟", "Fish"),
    ("🐙", "Octopus"),
    ("🦋", "Butterfly"),
    ("🌷", "Flower"),
    ("🌳", "Tree"),
    ("🌵", "Cactus"),
    ("🍄", "Mushroom"),
    ("🌏", "Globe"),
    ("🌙", "Moon"),
    ("☁️", "Cloud"),
    ("🔥", "Fire"),
    ("🍌", "Banana"),
    ("🍎", "Apple"),
    ("🍓", "Strawberry"),
    ("🌽", "Corn"),
    ("🍕", "Pizza"),
    ("🎂", "Cake"),
    ("❤️", "Heart"),
    ("😀", "Smiley"),
    ("🤖", "Robot"),
    ("🎩", "Hat"),
    ("👓", "Glasses"),
    ("🔧", "Spanner"),
    ("🎅", "Santa"),
    ("👍", "Thumbs Up"),
    ("☂️", "Umbrella"),
    ("⌛", "Hourglass"),
    ("⏰", "Clock"),
    ("🎁", "Gift"),
    ("💡", "Light Bulb"),
    ("📕", "Book"),
    ("✏️", "Pencil"),
    ("📎", "Paperclip"),
    ("✂️", "Scissors"),
    ("🔒", "Lock"),
    ("🔑", "Key"),
    ("🔨", "Hammer"),
    ("☎️", "Telephone"),
    ("🏁", "Flag"),
    ("🚂", "Train"),
    ("🚲", "Bicycle"),
    ("✈️", "Aeroplane"),
    ("🚀", "Rocket"),
    ("🏆", "Trophy"),
    ("⚽", "Ball"),
    ("🎸", "Guitar"),
    ("🎺", "Trumpet"),
    ("🔔", "Bell"),
    ("⚓", "Anchor"),
    ("🎧", "Headphones"),
    ("📁", "Folder"),
    ("📌", "Pin"),
];
