//! Admission to a private server (`seguro serve --private`): join tokens, the allow
//! list of identity keys, and the decision for one `hello`. Pure: no I/O, no clock
//! (the caller passes the time in Unix seconds), no randomness (the caller passes the
//! token it drew); the files are read and written by `crate::tokens`.
//!
//! The rules, in order, for a `hello` with key `K`, name `U` and maybe token `T`:
//!
//! 1. `K` is on the allow list (the `allowed-keys` file or `--allow-key`): admitted.
//! 2. `K` joined before with a token that has not been revoked since: admitted (a
//!    token admits a person, not a connection: reconnecting costs no use).
//! 3. No `T`: refused ("this server is private ..."), which is also what reference
//!    clients get, since they never send a token.
//! 4. `T` is compared, in constant time, with the SHA-256 of every token issued
//!    (tokens are stored hashed only); no match: refused. A match that is revoked,
//!    expired or used up: refused, saying which.
//! 5. Otherwise one use is counted and `K` is remembered as admitted by that token
//!    (with `U` and the time, for `seguro invite --list`).
//!
//! Revoking a token refuses it from then on, and refuses the keys that joined with it
//! at their next connection (rule 2 no longer applies to them).
//!
//! The token store's text form (one record a line, fields separated by one space):
//!
//! ```text
//! seguro-join-tokens 1
//! next ID
//! token ID SHA256-HEX USED MAX|- CREATED EXPIRES|- REVOKED|- LABEL|-
//! key BASE64-KEY VIA-ID AT USER
//! ```
//!
//! Times are Unix seconds; `LABEL` and `USER` are percent-encoded (every byte outside
//! `A-Z a-z 0-9 . _ ~ -`), so a record is always one line of printable ASCII.

use std::fmt;

use base64ct::{Base64, Encoding};
use seguro_core::limits::KEY_LEN;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// The first line of a token store.
pub const HEADER: &str = "seguro-join-tokens 1";
/// Random bytes in a new token (128 bits: 26 base32 characters).
pub const TOKEN_BYTES: usize = 16;
/// The longest label accepted, in bytes.
pub const MAX_LABEL: usize = 200;

/// SHA-256 of a token's text: all a store keeps of it.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A token's text from `TOKEN_BYTES` random bytes: lower-case base32 (RFC 4648, no
/// padding), the alphabet invites carry (`t=`).
pub fn token_text(random: &[u8; TOKEN_BYTES]) -> String {
    const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in random {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(B32[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(B32[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// One issued token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Its number, for `--list` and `--revoke`.
    pub id: u32,
    /// SHA-256 of the token's text.
    pub hash: [u8; 32],
    /// Keys admitted with it so far.
    pub used: u32,
    /// How many keys it may admit (`None`: no limit).
    pub max_uses: Option<u32>,
    /// When it was made.
    pub created: u64,
    /// When it stops admitting (`None`: never).
    pub expires: Option<u64>,
    /// When it was revoked.
    pub revoked: Option<u64>,
    /// The operator's note ("for Bob").
    pub label: String,
}

/// What a token is, at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// It admits new keys.
    Active,
    /// Revoked: it admits no one, and the keys it admitted are refused too.
    Revoked,
    /// Past its lifetime (the keys it admitted stay admitted).
    Expired,
    /// Every use taken (the keys it admitted stay admitted).
    UsedUp,
}

impl fmt::Display for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::UsedUp => "used up",
        })
    }
}

impl TokenRecord {
    /// Its state at `now`.
    pub fn state(&self, now: u64) -> TokenState {
        if self.revoked.is_some() {
            TokenState::Revoked
        } else if self.expires.is_some_and(|e| now >= e) {
            TokenState::Expired
        } else if self.max_uses.is_some_and(|m| self.used >= m) {
            TokenState::UsedUp
        } else {
            TokenState::Active
        }
    }
}

/// A key admitted by a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The identity (X25519) key.
    pub key: [u8; KEY_LEN],
    /// The token that admitted it.
    pub via: u32,
    /// When.
    pub at: u64,
    /// The name it first joined under.
    pub user: String,
}

/// The token store: issued tokens and the keys they admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    next: u32,
    tokens: Vec<TokenRecord>,
    members: Vec<Member>,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            next: 1,
            tokens: Vec::new(),
            members: Vec::new(),
        }
    }
}

/// A token store file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub what: &'static str,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

/// Why a token cannot be revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeError {
    /// No token has this number.
    Unknown,
    /// It is revoked already.
    AlreadyRevoked,
}

impl fmt::Display for RevokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("no token has this number (see `seguro invite --list`)"),
            Self::AlreadyRevoked => f.write_str("this token is revoked already"),
        }
    }
}

/// Why a `hello` is refused on a private server: the text of the `error` it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token, and the key is not admitted (every reference client).
    NotInvited,
    /// The token matches no token of this server.
    UnknownToken,
    /// The token was revoked.
    Revoked,
    /// The token is past its lifetime.
    Expired,
    /// The token admitted as many keys as it may.
    UsedUp,
    /// The server cannot read or write its admission files (it refuses the newcomers it
    /// cannot decide on until they are fixed).
    Unavailable,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotInvited => {
                "this server is private: it admits only invited users (a join token from \
                 an invite, or a key on its allow list); ask its operator for an invite \
                 and join with: seguro chat <user> --invite '<invite>'"
            }
            Self::UnknownToken => {
                "this server is private and your invite's join token is not one of its \
                 tokens: ask its operator for a new invite"
            }
            Self::Revoked => {
                "this server is private and your invite's join token was revoked: ask its \
                 operator for a new invite"
            }
            Self::Expired => {
                "this server is private and your invite's join token has expired: ask its \
                 operator for a new invite"
            }
            Self::UsedUp => {
                "this server is private and your invite's join token has been used as \
                 many times as it may: ask its operator for a new invite"
            }
            Self::Unavailable => {
                "this server is private and cannot check invites right now (its operator \
                 must fix its admission files); try again later"
            }
        })
    }
}

/// Why a `hello` is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// The key is on the allow list.
    AllowList,
    /// The key joined before with token `id`.
    Member {
        /// The token.
        id: u32,
    },
    /// The token `id` was used now: the store changed and must be saved.
    Redeemed {
        /// The token.
        id: u32,
    },
}

impl Tokens {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The issued tokens, oldest first.
    pub fn tokens(&self) -> &[TokenRecord] {
        &self.tokens
    }

    /// The keys admitted by tokens.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Records a new token (its text is hashed and forgotten) and returns its number.
    pub fn issue(
        &mut self,
        token: &str,
        max_uses: Option<u32>,
        expires: Option<u64>,
        now: u64,
        label: &str,
    ) -> u32 {
        let id = self.next;
        self.next = self.next.saturating_add(1);
        self.tokens.push(TokenRecord {
            id,
            hash: hash_token(token),
            used: 0,
            max_uses,
            created: now,
            expires,
            revoked: None,
            label: label.chars().filter(|c| !c.is_control()).collect(),
        });
        id
    }

    /// Revokes token `id` at `now`.
    pub fn revoke(&mut self, id: u32, now: u64) -> Result<(), RevokeError> {
        let t = self
            .tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or(RevokeError::Unknown)?;
        if t.revoked.is_some() {
            return Err(RevokeError::AlreadyRevoked);
        }
        t.revoked = Some(now);
        Ok(())
    }

    /// The index of the token whose hash is `hash`. Every stored hash is compared, in
    /// constant time, whatever matches: the time taken says nothing about which one
    /// matched, or how much of it.
    pub fn find(&self, hash: &[u8; 32]) -> Option<usize> {
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, t) in self.tokens.iter().enumerate() {
            let eq = t.hash.ct_eq(hash);
            index = u64::conditional_select(&index, &(i as u64), eq);
            found |= eq;
        }
        bool::from(found).then_some(index as usize)
    }

    /// The token of a given number.
    pub fn get(&self, id: u32) -> Option<&TokenRecord> {
        self.tokens.iter().find(|t| t.id == id)
    }

    /// Decides on a `hello` with `key`, `user` and `token` at `now` (rules in the module
    /// documentation). On [`Admitted::Redeemed`] the store changed: save it.
    pub fn admit(
        &mut self,
        allowed: &AllowList,
        key: &[u8; KEY_LEN],
        user: &str,
        token: Option<&str>,
        now: u64,
    ) -> Result<Admitted, Denied> {
        if allowed.allows(key) {
            return Ok(Admitted::AllowList);
        }
        if let Some(m) = self.members.iter().find(|m| m.key == *key) {
            let via = m.via;
            if self.get(via).is_some_and(|t| t.revoked.is_none()) {
                return Ok(Admitted::Member { id: via });
            }
        }
        let token = token.ok_or(Denied::NotInvited)?;
        let i = self.find(&hash_token(token)).ok_or(Denied::UnknownToken)?;
        let t = self.tokens.get_mut(i).ok_or(Denied::UnknownToken)?;
        match t.state(now) {
            TokenState::Active => {}
            TokenState::Revoked => return Err(Denied::Revoked),
            TokenState::Expired => return Err(Denied::Expired),
            TokenState::UsedUp => return Err(Denied::UsedUp),
        }
        t.used = t.used.saturating_add(1);
        let id = t.id;
        self.members.retain(|m| m.key != *key);
        self.members.push(Member {
            key: *key,
            via: id,
            at: now,
            user: user.to_owned(),
        });
        Ok(Admitted::Redeemed { id })
    }

    /// The store's text form.
    pub fn to_text(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let mut s = format!("{HEADER}\nnext {}\n", self.next);
        for t in &self.tokens {
            s.push_str(&format!(
                "token {} {} {} {} {} {} {} {}\n",
                t.id,
                hex(&t.hash),
                t.used,
                opt(t.max_uses.map(u64::from)),
                t.created,
                opt(t.expires),
                opt(t.revoked),
                if t.label.is_empty() {
                    "-".to_owned()
                } else {
                    pct_encode(&t.label)
                }
            ));
        }
        for m in &self.members {
            s.push_str(&format!(
                "key {} {} {} {}\n",
                Base64::encode_string(&m.key),
                m.via,
                m.at,
                pct_encode(&m.user)
            ));
        }
        s
    }

    /// Reads the text form; any defect is an error (the store is never half read).
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let mut lines = text.lines().enumerate();
        let err = |line: usize, what| FormatError {
            line: line + 1,
            what,
        };
        match lines.next() {
            Some((_, HEADER)) => {}
            Some((_, l)) if l.starts_with("seguro-join-tokens ") => {
                return Err(err(0, "made by a newer Seguro (unknown format version)"));
            }
            _ => return Err(err(0, "not a Seguro token store")),
        }
        let mut store = Self::default();
        let mut saw_next = false;
        for (n, line) in lines {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[..] {
                ["next", v] if !saw_next => {
                    store.next = v.parse().map_err(|_| err(n, "bad next number"))?;
                    saw_next = true;
                }
                [
                    "token",
                    id,
                    hash,
                    used,
                    max,
                    created,
                    expires,
                    revoked,
                    label,
                ] => {
                    let id: u32 = id.parse().map_err(|_| err(n, "bad token number"))?;
                    if id == 0 || id >= store.next || store.get(id).is_some() {
                        return Err(err(n, "token number repeated or out of range"));
                    }
                    let num = |s: &str| s.parse::<u64>().map_err(|_| err(n, "bad number"));
                    let opt = |s: &str| match s {
                        "-" => Ok(None),
                        s => num(s).map(Some),
                    };
                    store.tokens.push(TokenRecord {
                        id,
                        hash: unhex(hash).ok_or_else(|| err(n, "bad token hash"))?,
                        used: used.parse().map_err(|_| err(n, "bad use count"))?,
                        max_uses: match max {
                            "-" => None,
                            m => Some(m.parse().map_err(|_| err(n, "bad use limit"))?),
                        },
                        created: num(created)?,
                        expires: opt(expires)?,
                        revoked: opt(revoked)?,
                        label: match label {
                            "-" => String::new(),
                            l => pct_decode(l).ok_or_else(|| err(n, "bad label"))?,
                        },
                    });
                }
                ["key", key, via, at, user] => {
                    let mut k = [0u8; KEY_LEN];
                    let decoded = Base64::decode(key, &mut k).map_err(|_| err(n, "bad key"))?;
                    if decoded.len() != KEY_LEN {
                        return Err(err(n, "bad key"));
                    }
                    let via: u32 = via.parse().map_err(|_| err(n, "bad token number"))?;
                    if store.get(via).is_none() {
                        return Err(err(n, "key admitted by an unknown token"));
                    }
                    if store.members.iter().any(|m| m.key == k) {
                        return Err(err(n, "key listed twice"));
                    }
                    store.members.push(Member {
                        key: k,
                        via,
                        at: at.parse().map_err(|_| err(n, "bad time"))?,
                        user: pct_decode(user).ok_or_else(|| err(n, "bad user name"))?,
                    });
                }
                _ => return Err(err(n, "not a record of a token store")),
            }
        }
        if !saw_next {
            return Err(err(1, "no next number"));
        }
        Ok(store)
    }
}

/// The allow list: identity keys admitted whatever token they bring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    keys: Vec<[u8; KEY_LEN]>,
    /// SHA-256 of keys (the full fingerprint).
    hashes: Vec<[u8; 32]>,
    /// Short fingerprints (the first 8 bytes of the SHA-256, as `/fp` shows them).
    short: Vec<[u8; 8]>,
}

/// An allow-list entry that is neither a key nor a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry(pub String);

impl fmt::Display for BadEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an identity key (base64 of 32 bytes, as sent in hello), a \
             fingerprint (xxxxxxxx-xxxxxxxx, as /fp and `seguro id show` print it) or a \
             full SHA-256 of a key (64 hex digits)",
            self.0
        )
    }
}

impl AllowList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one entry: a key in base64, a fingerprint `xxxxxxxx-xxxxxxxx` or 64 hex
    /// digits of a key's SHA-256.
    pub fn add(&mut self, entry: &str) -> Result<(), BadEntry> {
        let e = entry.trim();
        let bad = || BadEntry(e.to_owned());
        if let Some((a, b)) = e.split_once('-')
            && a.len() == 8
            && b.len() == 8
        {
            let bytes = unhex_n::<8>(&format!("{a}{b}")).ok_or_else(bad)?;
            self.short.push(bytes);
            return Ok(());
        }
        if e.len() == 64 {
            self.hashes.push(unhex(e).ok_or_else(bad)?);
            return Ok(());
        }
        let mut k = [0u8; KEY_LEN];
        match Base64::decode(e, &mut k) {
            Ok(d) if d.len() == KEY_LEN => {
                self.keys.push(k);
                Ok(())
            }
            _ => Err(bad()),
        }
    }

    /// Reads an allow-list file: one entry a line, then optional words (a name, a
    /// note); `#` starts a comment; blank lines are ignored. The error names the line.
    pub fn parse(text: &str) -> Result<Self, (usize, BadEntry)> {
        let mut list = Self::new();
        list.extend(text)?;
        Ok(list)
    }

    /// Adds the entries of an allow-list file's text.
    pub fn extend(&mut self, text: &str) -> Result<(), (usize, BadEntry)> {
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            if let Some(entry) = line.split_whitespace().next() {
                self.add(entry).map_err(|e| (n + 1, e))?;
            }
        }
        Ok(())
    }

    /// Entries in the list.
    pub fn len(&self) -> usize {
        self.keys.len() + self.hashes.len() + self.short.len()
    }

    /// True if the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Is `key` on the list?
    pub fn allows(&self, key: &[u8; KEY_LEN]) -> bool {
        let hash: [u8; 32] = Sha256::digest(key).into();
        self.keys.iter().any(|k| k == key)
            || self.hashes.contains(&hash)
            || self.short.iter().any(|s| hash.starts_with(s))
    }
}

/// A token's lifetime in seconds (`None`: it never expires), as `--expires` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(pub Option<u64>);

impl Lifetime {
    /// [`parse_lifetime`], for the command line.
    pub fn parse(s: &str) -> Result<Self, String> {
        parse_lifetime(s).map(Self)
    }
}

/// Reads a lifetime: a number and a unit, `s`, `m`, `h`, `d` or `w` (`90m`, `12h`,
/// `7d`, `2w`), in seconds; `never` is `None`.
pub fn parse_lifetime(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if t == "never" {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: give a unit, e.g. 7d, 12h or 30m (or never)"))?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: a number then a unit, e.g. 7d, 12h or 30m"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (s, m, h, d or w, e.g. 7d)"
            ));
        }
    };
    match n.checked_mul(mult) {
        Some(0) => Err(format!("{s:?}: a lifetime must be longer than 0")),
        Some(v) if v <= 100 * 365 * 86_400 => Ok(Some(v)),
        _ => Err(format!("{s:?}: longer than 100 years (use never)")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    unhex_n::<32>(s)
}

fn unhex_n<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(b.chunks(2)) {
        let digit = |c: u8| char::from(c).to_digit(16);
        *o = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

pub(crate) fn pct_encode(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'~' | b'-') {
            out.push(c);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: [u8; 32] = [0x11; 32];
    const K2: [u8; 32] = [0x22; 32];
    const K3: [u8; 32] = [0x33; 32];
    const T1: &str = "abcdefghijklmnopqrstuvwxyz";
    const T2: &str = "zyxwvutsrqponmlkjihgfedcba";
    const DAY: u64 = 86_400;

    fn store() -> Tokens {
        let mut s = Tokens::new();
        assert_eq!(
            s.issue(T1, Some(2), Some(1000 + 7 * DAY), 1000, "for Bob"),
            1
        );
        assert_eq!(s.issue(T2, None, None, 1000, ""), 2);
        s
    }

    #[test]
    fn token_text_is_26_base32_characters_and_hashed() {
        let t = token_text(&[0xff; TOKEN_BYTES]);
        assert_eq!(t, "77777777777777777777777774");
        assert_eq!(token_text(&[0; TOKEN_BYTES]), "a".repeat(26));
        let mut r = [0u8; TOKEN_BYTES];
        r[0] = 0b0000_1000;
        assert_eq!(&token_text(&r)[..2], "ba");
        assert!(seguro_core::invite::Token::new(&t).is_ok());
        assert_eq!(
            hex(&hash_token("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn find_compares_every_hash() {
        let s = store();
        assert_eq!(s.find(&hash_token(T1)), Some(0));
        assert_eq!(s.find(&hash_token(T2)), Some(1));
        assert_eq!(s.find(&hash_token("abcdefghijklmnopqrstuvwxyy")), None);
        assert_eq!(Tokens::new().find(&hash_token(T1)), None);
        // The store keeps no token text.
        assert!(!s.to_text().contains(T1) && !s.to_text().contains(T2));
    }

    #[test]
    fn the_rules_of_admission() {
        let mut s = store();
        let mut allow = AllowList::new();
        allow.add(&Base64::encode_string(&K3)).unwrap();
        let now = 2000;
        // No token, unknown key: refused; an unknown token: refused.
        assert_eq!(
            s.admit(&allow, &K1, "a", None, now),
            Err(Denied::NotInvited)
        );
        assert_eq!(
            s.admit(&allow, &K1, "a", Some("nope"), now),
            Err(Denied::UnknownToken)
        );
        // The allow list needs no token.
        assert_eq!(
            s.admit(&allow, &K3, "c", None, now),
            Ok(Admitted::AllowList)
        );
        // A valid token admits, once per key; the key is then a member.
        assert_eq!(
            s.admit(&allow, &K1, "ana", Some(T1), now),
            Ok(Admitted::Redeemed { id: 1 })
        );
        assert_eq!(s.get(1).unwrap().used, 1);
        assert_eq!(
            s.admit(&allow, &K1, "ana", None, now),
            Ok(Admitted::Member { id: 1 })
        );
        assert_eq!(
            s.admit(&allow, &K1, "ana", Some(T1), now),
            Ok(Admitted::Member { id: 1 })
        );
        assert_eq!(s.get(1).unwrap().used, 1);
        // The second and last use.
        assert_eq!(
            s.admit(&allow, &K2, "bo", Some(T1), now),
            Ok(Admitted::Redeemed { id: 1 })
        );
        assert_eq!(s.get(1).unwrap().state(now), TokenState::UsedUp);
        assert_eq!(
            s.admit(&allow, &[0x44; 32], "x", Some(T1), now),
            Err(Denied::UsedUp)
        );
        // Members stay admitted after the token is used up or expires.
        let later = 1000 + 7 * DAY;
        assert_eq!(s.get(1).unwrap().state(later), TokenState::Expired);
        assert_eq!(
            s.admit(&allow, &K2, "bo", None, later),
            Ok(Admitted::Member { id: 1 })
        );
        // Revoking refuses the token and its members.
        s.revoke(1, later).unwrap();
        assert_eq!(s.revoke(1, later), Err(RevokeError::AlreadyRevoked));
        assert_eq!(s.revoke(9, later), Err(RevokeError::Unknown));
        assert_eq!(
            s.admit(&allow, &K2, "bo", None, later),
            Err(Denied::NotInvited)
        );
        assert_eq!(
            s.admit(&allow, &K2, "bo", Some(T1), later),
            Err(Denied::Revoked)
        );
        // ... until another token admits the key again.
        assert_eq!(
            s.admit(&allow, &K2, "bo", Some(T2), later),
            Ok(Admitted::Redeemed { id: 2 })
        );
        assert_eq!(s.members().iter().filter(|m| m.key == K2).count(), 1);
        assert_eq!(
            s.admit(&allow, &K2, "bo", None, later),
            Ok(Admitted::Member { id: 2 })
        );
        // The allow list wins over a revoked membership.
        s.revoke(2, later).unwrap();
        allow.add(&Base64::encode_string(&K2)).unwrap();
        assert_eq!(
            s.admit(&allow, &K2, "bo", None, later),
            Ok(Admitted::AllowList)
        );
    }

    #[test]
    fn expiry_is_at_the_second() {
        let mut s = store();
        let allow = AllowList::new();
        let end = 1000 + 7 * DAY;
        assert_eq!(s.get(1).unwrap().state(end - 1), TokenState::Active);
        assert_eq!(
            s.admit(&allow, &K1, "a", Some(T1), end),
            Err(Denied::Expired)
        );
        assert_eq!(s.get(1).unwrap().used, 0);
        assert_eq!(
            s.admit(&allow, &K1, "a", Some(T1), end - 1),
            Ok(Admitted::Redeemed { id: 1 })
        );
        // Unlimited token, no expiry.
        for (i, k) in (0u8..50).map(|i| (i, [i + 0x50; 32])) {
            assert_eq!(
                s.admit(&allow, &k, "x", Some(T2), u64::MAX - 1),
                Ok(Admitted::Redeemed { id: 2 }),
                "{i}"
            );
        }
        assert_eq!(s.get(2).unwrap().state(u64::MAX), TokenState::Active);
    }

    #[test]
    fn every_refusal_says_why() {
        for (d, words) in [
            (Denied::NotInvited, "private: it admits only invited users"),
            (Denied::UnknownToken, "not one of its tokens"),
            (Denied::Revoked, "was revoked"),
            (Denied::Expired, "has expired"),
            (Denied::UsedUp, "used as many times as it may"),
            (Denied::Unavailable, "cannot check invites"),
        ] {
            assert!(d.to_string().contains(words), "{d:?}");
        }
    }

    #[test]
    fn the_store_round_trips_and_refuses_defects() {
        let mut s = store();
        let allow = AllowList::new();
        s.admit(&allow, &K1, "José é", Some(T1), 5000).unwrap();
        s.revoke(2, 6000).unwrap();
        s.issue(
            "abcdefghijklmnopqrstuvwxya",
            Some(1),
            None,
            7000,
            "a b\tc%\n",
        );
        let text = s.to_text();
        assert!(text.starts_with("seguro-join-tokens 1\nnext 4\n"));
        assert!(
            text.lines()
                .all(|l| l.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        );
        let back = Tokens::parse(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.members()[0].user, "José é");
        assert_eq!(back.get(3).unwrap().label, "a bc%");
        assert_eq!(Tokens::parse(&Tokens::new().to_text()), Ok(Tokens::new()));

        let bad = |t: &str| Tokens::parse(t).unwrap_err();
        assert_eq!(bad("").what, "not a Seguro token store");
        assert_eq!(
            bad("seguro-join-tokens 2\nnext 1\n").what,
            "made by a newer Seguro (unknown format version)"
        );
        assert_eq!(bad("seguro-join-tokens 1\n").what, "no next number");
        let with = |line: &str| format!("seguro-join-tokens 1\nnext 3\n{line}\n");
        let h = hex(&hash_token(T1));
        let ok = format!("token 1 {h} 0 - 5 - - -");
        assert!(Tokens::parse(&with(&ok)).is_ok());
        for (line, what, at) in [
            (
                format!("token 1 {h} 0 - 5 - -"),
                "not a record of a token store",
                3,
            ),
            (
                format!("token 3 {h} 0 - 5 - - -"),
                "token number repeated or out of range",
                3,
            ),
            (
                format!("token 0 {h} 0 - 5 - - -"),
                "token number repeated or out of range",
                3,
            ),
            (
                format!("{ok}\n{ok}"),
                "token number repeated or out of range",
                4,
            ),
            (
                format!("token 1 {} 0 - 5 - - -", &h[1..]),
                "bad token hash",
                3,
            ),
            (format!("token 1 {h} x - 5 - - -"), "bad use count", 3),
            (format!("token 1 {h} 0 -1 5 - - -"), "bad use limit", 3),
            (format!("token 1 {h} 0 - 5 soon - -"), "bad number", 3),
            (format!("token 1 {h} 0 - 5 - - a%zz"), "bad label", 3),
            (
                format!("token 1 {h} 0 - 5 - - a b"),
                "not a record of a token store",
                3,
            ),
            (format!("{ok}\nkey AAAA 1 5 ana"), "bad key", 4),
            (
                format!("{ok}\nkey {} 2 5 ana", Base64::encode_string(&K1)),
                "key admitted by an unknown token",
                4,
            ),
            (
                format!(
                    "{ok}\nkey {k} 1 5 ana\nkey {k} 1 5 bo",
                    k = Base64::encode_string(&K1)
                ),
                "key listed twice",
                5,
            ),
            ("next 4".to_owned(), "not a record of a token store", 3),
            (String::new(), "not a record of a token store", 3),
        ] {
            let e = bad(&with(&line));
            assert_eq!((e.what, e.line), (what, at), "{line}");
        }
    }

    #[test]
    fn allow_list_entries() {
        let fp = seguro_core::fingerprint::short(&K1);
        let full = hex(&Sha256::digest(K2));
        let text = format!(
            "# friends\n{}  ana laptop\n\n{fp} # bo\n   {full}\n",
            Base64::encode_string(&K3)
        );
        let list = AllowList::parse(&text).unwrap();
        assert_eq!(list.len(), 3);
        assert!(list.allows(&K1) && list.allows(&K2) && list.allows(&K3));
        assert!(!list.allows(&[0x44; 32]));
        assert!(AllowList::new().is_empty() && !AllowList::new().allows(&K1));
        for bad in [
            "AAAA",
            "zz",
            "0123456-01234567",
            &full[1..],
            "gggggggg-gggggggg",
        ] {
            let e = AllowList::parse(&format!("# x\n{bad}\n")).unwrap_err();
            assert_eq!(e.0, 2, "{bad}");
            assert!(e.1.to_string().contains("is not an identity key"));
        }
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("7d"), Ok(Some(7 * DAY)));
        assert_eq!(parse_lifetime("12h"), Ok(Some(12 * 3600)));
        assert_eq!(parse_lifetime("30m"), Ok(Some(1800)));
        assert_eq!(parse_lifetime("45s"), Ok(Some(45)));
        assert_eq!(parse_lifetime("2w"), Ok(Some(14 * DAY)));
        assert_eq!(parse_lifetime(" never "), Ok(None));
        for bad in [
            "7",
            "d",
            "7y",
            "0d",
            "-1d",
            "99999999999999999999d",
            "36501d",
            "",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_lifetime("36500d"), Ok(Some(36500 * DAY)));
    }
}
