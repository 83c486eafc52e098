//! The JSON messages of v2 (spec §2, §4, §5.5, §7.2, §11) in `msg`'s style: [`parse`]
//! reads one line (any key order, unknown fields ignored, strings borrowed or unescaped
//! into a caller scratch buffer), [`V2Message::emit_line`] writes compact JSON and the
//! final `\n`, leaving the buffer untouched on failure and saying how many bytes were
//! needed. [`parse_hello_v2`] reads the `v2` field a Seguro client adds to `hello`.
//!
//! Messages still to come with the wiring step (`prekeys`, `dir`, the `v2` sections of
//! `welcome`/`users`) follow the same pattern.

use core::fmt;

use base64ct::{Base64, Encoding};

use crate::json::{self, Counter, Reader, Sink, SliceSink, Value};
use crate::msg::BufferTooSmall;
use crate::v2::{KEY_LEN, SIG_LEN};

/// A v2 message between a v2 client and a Seguro server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Message<'a> {
    /// Server → client after a v2 `hello` (§4.1).
    Challenge {
        /// Fresh 32-byte nonce.
        nonce: [u8; 32],
        /// The server's ephemeral X25519 key for this connection.
        eph: [u8; KEY_LEN],
        /// The server's capabilities, words separated by spaces.
        caps: &'a str,
    },
    /// Client → server: the answer to the challenge (§4.2).
    Proof {
        /// Ed25519 signature.
        sig: [u8; SIG_LEN],
        /// HMAC proving possession of the X25519 key.
        mac: [u8; 32],
    },
    /// A v2 message, client → server (`to`, `id`) or server → client (`from`) (§7.2).
    Relay2 {
        /// Recipient (client → server).
        to: Option<&'a str>,
        /// Sender, set by the server.
        from: Option<&'a str>,
        /// The sender's id for the acknowledgement (client → server).
        id: Option<u32>,
        /// Base64 of the v2 body, forwarded unread.
        body: &'a str,
    },
    /// Server → client: what happened to a relay (§11).
    Ack {
        /// The relay's `id`.
        id: u32,
        /// Forwarded or not.
        status: AckStatus,
    },
    /// Either side: are you there? (§11)
    Ping {
        /// Echoed in the pong.
        id: u32,
    },
    /// The answer to a ping.
    Pong {
        /// The ping's id.
        id: u32,
    },
    /// Client → server: the prekey bundle of `user` (§5.5).
    BundleReq {
        /// Whose bundle.
        user: &'a str,
    },
}

/// The `status` of an `ack`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Written to the recipient's connection.
    Forwarded,
    /// The recipient is not connected.
    NotConnected,
    /// Prekeys stored.
    Stored,
    /// Refused (for example a prekey whose signature does not verify).
    Refused,
    /// No room for more one-time prekeys.
    Full,
}

impl AckStatus {
    /// The wire word.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::NotConnected => "not_connected",
            Self::Stored => "stored",
            Self::Refused => "refused",
            Self::Full => "full",
        }
    }

    fn from_wire(s: &str) -> Option<Self> {
        Some(match s {
            "forwarded" => Self::Forwarded,
            "not_connected" => Self::NotConnected,
            "stored" => Self::Stored,
            "refused" => Self::Refused,
            "full" => Self::Full,
            _ => return None,
        })
    }
}

/// Why a line is not a valid v2 message. Every variant means the peer sent something
/// wrong, except [`ScratchTooSmall`](Self::ScratchTooSmall) (caller misuse).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2ParseError {
    /// The line is not UTF-8.
    NotUtf8,
    /// The line is not a JSON object.
    InvalidJson {
        /// Byte offset where reading stopped.
        offset: usize,
        /// What was wrong there.
        what: &'static str,
    },
    /// No `type` string.
    MissingType,
    /// Not a v2 message type (it may be a v1 one: try `msg::parse`).
    UnknownType,
    /// A required field is missing.
    MissingField(&'static str),
    /// A field has the wrong JSON type or an unknown value.
    WrongType(&'static str),
    /// A field is not valid base64.
    BadBase64(&'static str),
    /// A binary field has the wrong length.
    BadLength {
        /// The field.
        field: &'static str,
        /// Its decoded length (a lower bound for very long values).
        len: usize,
    },
    /// A decimal field is not a `u32`.
    BadNumber(&'static str),
    /// Caller misuse: the scratch buffer must be at least as long as the line.
    ScratchTooSmall {
        /// Bytes of scratch needed.
        needed: usize,
    },
}

impl fmt::Display for V2ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("line is not valid UTF-8"),
            Self::InvalidJson { offset, what } => {
                write!(f, "invalid JSON at byte {offset}: {what}")
            }
            Self::MissingType => f.write_str("missing \"type\""),
            Self::UnknownType => f.write_str("not a v2 message type"),
            Self::MissingField(n) => write!(f, "missing field \"{n}\""),
            Self::WrongType(n) => write!(f, "field \"{n}\" has the wrong type or value"),
            Self::BadBase64(n) => write!(f, "field \"{n}\" is not valid base64"),
            Self::BadLength { field, len } => {
                write!(f, "field \"{field}\" has the wrong length ({len} bytes)")
            }
            Self::BadNumber(n) => write!(f, "field \"{n}\" is not a decimal u32"),
            Self::ScratchTooSmall { needed } => {
                write!(f, "scratch buffer too small: {needed} bytes needed")
            }
        }
    }
}

impl core::error::Error for V2ParseError {}

impl From<json::Malformed> for V2ParseError {
    fn from(m: json::Malformed) -> Self {
        Self::InvalidJson {
            offset: m.offset,
            what: m.what,
        }
    }
}

#[derive(Default)]
struct Fields<'i> {
    ty: Option<Value<'i>>,
    nonce: Option<Value<'i>>,
    eph: Option<Value<'i>>,
    caps: Option<Value<'i>>,
    sig: Option<Value<'i>>,
    mac: Option<Value<'i>>,
    to: Option<Value<'i>>,
    from: Option<Value<'i>>,
    id: Option<Value<'i>>,
    body: Option<Value<'i>>,
    status: Option<Value<'i>>,
    user: Option<Value<'i>>,
}

/// Hands out disjoint pieces of the scratch buffer.
struct Bump<'a> {
    rest: &'a mut [u8],
    needed: usize,
}

impl<'a> Bump<'a> {
    fn string(&mut self, raw: json::RawStr<'a>) -> Result<&'a str, V2ParseError> {
        if let Some(s) = raw.as_plain() {
            return Ok(s);
        }
        let buf = core::mem::take(&mut self.rest);
        let n = json::unescape(raw, buf).map_err(|_| V2ParseError::ScratchTooSmall {
            needed: self.needed,
        })?;
        let (head, tail) = buf.split_at_mut(n);
        self.rest = tail;
        core::str::from_utf8(head).map_err(|_| V2ParseError::NotUtf8)
    }
}

fn need<'a>(v: Option<Value<'a>>, name: &'static str) -> Result<json::RawStr<'a>, V2ParseError> {
    match v {
        None => Err(V2ParseError::MissingField(name)),
        Some(Value::Str(s)) => Ok(s),
        Some(_) => Err(V2ParseError::WrongType(name)),
    }
}

fn opt<'a>(
    v: Option<Value<'a>>,
    name: &'static str,
) -> Result<Option<json::RawStr<'a>>, V2ParseError> {
    match v {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(_) => Err(V2ParseError::WrongType(name)),
    }
}

/// Decodes base64 text that must hold exactly `N` bytes.
fn bytes<const N: usize>(
    raw: json::RawStr<'_>,
    field: &'static str,
) -> Result<[u8; N], V2ParseError> {
    let mut text = [0u8; 128];
    let n = json::unescape(raw, &mut text).map_err(|_| V2ParseError::BadLength {
        field,
        len: raw.max_len() / 4 * 3,
    })?;
    let mut out = [0u8; 96];
    let decoded = Base64::decode(text.get(..n).unwrap_or(&[]), &mut out)
        .map_err(|_| V2ParseError::BadBase64(field))?;
    <[u8; N]>::try_from(decoded).map_err(|_| V2ParseError::BadLength {
        field,
        len: decoded.len(),
    })
}

/// A decimal `u32` without sign, leading `+` or leading zeros (except `0` itself).
fn number(raw: json::RawStr<'_>, field: &'static str) -> Result<u32, V2ParseError> {
    let s = raw.as_plain().ok_or(V2ParseError::BadNumber(field))?;
    let ok = !s.is_empty()
        && s.len() <= 10
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !ok {
        return Err(V2ParseError::BadNumber(field));
    }
    s.parse().map_err(|_| V2ParseError::BadNumber(field))
}

/// Parses one line (without its `\n`) into a v2 message. v1 types give
/// [`V2ParseError::UnknownType`]: a client tries [`crate::msg::parse`] for those.
/// `scratch.len() >= line.len()` is always enough.
pub fn parse<'a>(line: &'a [u8], scratch: &'a mut [u8]) -> Result<V2Message<'a>, V2ParseError> {
    core::str::from_utf8(line).map_err(|_| V2ParseError::NotUtf8)?;
    let mut f = Fields::default();
    let mut reader = Reader::new(line)?;
    let mut key_buf = [0u8; 8];
    while let Some((key, value)) = reader.next_member(&mut key_buf)? {
        let slot = match key {
            Some("type") => &mut f.ty,
            Some("nonce") => &mut f.nonce,
            Some("eph") => &mut f.eph,
            Some("caps") => &mut f.caps,
            Some("sig") => &mut f.sig,
            Some("mac") => &mut f.mac,
            Some("to") => &mut f.to,
            Some("from") => &mut f.from,
            Some("id") => &mut f.id,
            Some("body") => &mut f.body,
            Some("status") => &mut f.status,
            Some("user") => &mut f.user,
            _ => continue,
        };
        *slot = Some(value);
    }
    let mut bump = Bump {
        rest: scratch,
        needed: line.len(),
    };
    let ty = match f.ty {
        None => return Err(V2ParseError::MissingType),
        Some(Value::Str(s)) => s,
        Some(_) => return Err(V2ParseError::WrongType("type")),
    };
    let mut ty_buf = [0u8; 12];
    let ty = match json::unescape(ty, &mut ty_buf) {
        Ok(n) => ty_buf.get(..n).unwrap_or(&[]),
        Err(_) => return Err(V2ParseError::UnknownType),
    };
    Ok(match ty {
        b"challenge" => V2Message::Challenge {
            nonce: bytes(need(f.nonce, "nonce")?, "nonce")?,
            eph: bytes(need(f.eph, "eph")?, "eph")?,
            caps: bump.string(need(f.caps, "caps")?)?,
        },
        b"proof" => V2Message::Proof {
            sig: bytes(need(f.sig, "sig")?, "sig")?,
            mac: bytes(need(f.mac, "mac")?, "mac")?,
        },
        b"relay2" => {
            let body = need(f.body, "body")?;
            let to = opt(f.to, "to")?;
            let from = opt(f.from, "from")?;
            let id = opt(f.id, "id")?;
            V2Message::Relay2 {
                to: to.map(|s| bump.string(s)).transpose()?,
                from: from.map(|s| bump.string(s)).transpose()?,
                id: id.map(|s| number(s, "id")).transpose()?,
                body: body.as_plain().ok_or(V2ParseError::BadBase64("body"))?,
            }
        }
        b"ack" => V2Message::Ack {
            id: number(need(f.id, "id")?, "id")?,
            status: need(f.status, "status")?
                .as_plain()
                .and_then(AckStatus::from_wire)
                .ok_or(V2ParseError::WrongType("status"))?,
        },
        b"ping" => V2Message::Ping {
            id: number(need(f.id, "id")?, "id")?,
        },
        b"pong" => V2Message::Pong {
            id: number(need(f.id, "id")?, "id")?,
        },
        b"bundle_req" => V2Message::BundleReq {
            user: bump.string(need(f.user, "user")?)?,
        },
        _ => return Err(V2ParseError::UnknownType),
    })
}

fn write_b64(s: &mut (impl Sink + ?Sized), bytes: &[u8]) {
    let mut text = [0u8; 128];
    s.put(b"\"");
    if let Ok(t) = Base64::encode(bytes, &mut text) {
        s.put(t.as_bytes());
    }
    s.put(b"\"");
}

fn write_u32(s: &mut (impl Sink + ?Sized), v: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + u8::try_from(v % 10).unwrap_or(0);
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    s.put(b"\"");
    s.put(digits.get(i..).unwrap_or(&[]));
    s.put(b"\"");
}

impl V2Message<'_> {
    /// The wire name of this message's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Challenge { .. } => "challenge",
            Self::Proof { .. } => "proof",
            Self::Relay2 { .. } => "relay2",
            Self::Ack { .. } => "ack",
            Self::Ping { .. } => "ping",
            Self::Pong { .. } => "pong",
            Self::BundleReq { .. } => "bundle_req",
        }
    }

    /// Length of the line [`emit_line`](Self::emit_line) writes, `\n` included.
    pub fn line_len(&self) -> usize {
        let mut c = Counter(0);
        self.write(&mut c);
        c.0
    }

    /// Writes compact JSON and `\n` into `out`; on failure nothing is written.
    pub fn emit_line(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let needed = self.line_len();
        let dst = out.get_mut(..needed).ok_or(BufferTooSmall { needed })?;
        let mut sink = SliceSink { out: dst, len: 0 };
        self.write(&mut sink);
        Ok(sink.len)
    }

    fn write(&self, s: &mut impl Sink) {
        s.put(b"{\"type\":");
        json::write_str(s, self.type_name());
        match self {
            Self::Challenge { nonce, eph, caps } => {
                s.put(b",\"nonce\":");
                write_b64(s, nonce);
                s.put(b",\"eph\":");
                write_b64(s, eph);
                s.put(b",\"caps\":");
                json::write_str(s, caps);
            }
            Self::Proof { sig, mac } => {
                s.put(b",\"sig\":");
                write_b64(s, sig);
                s.put(b",\"mac\":");
                write_b64(s, mac);
            }
            Self::Relay2 { to, from, id, body } => {
                if let Some(to) = to {
                    s.put(b",\"to\":");
                    json::write_str(s, to);
                }
                if let Some(from) = from {
                    s.put(b",\"from\":");
                    json::write_str(s, from);
                }
                if let Some(id) = id {
                    s.put(b",\"id\":");
                    write_u32(s, *id);
                }
                s.put(b",\"body\":");
                json::write_str(s, body);
            }
            Self::Ack { id, status } => {
                s.put(b",\"id\":");
                write_u32(s, *id);
                s.put(b",\"status\":");
                json::write_str(s, status.as_str());
            }
            Self::Ping { id } | Self::Pong { id } => {
                s.put(b",\"id\":");
                write_u32(s, *id);
            }
            Self::BundleReq { user } => {
                s.put(b",\"user\":");
                json::write_str(s, user);
            }
        }
        s.put(b"}\n");
    }
}

/// The `v2` field of a Seguro client's `hello` (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloV2<'a> {
    /// Capabilities, words separated by spaces.
    pub caps: &'a str,
    /// Ed25519 identity key.
    pub ed: [u8; KEY_LEN],
    /// Binding signature.
    pub bind: [u8; SIG_LEN],
}

impl HelloV2<'_> {
    /// Whether `caps` lists `word`.
    pub fn has_cap(&self, word: &str) -> bool {
        self.caps.split(' ').any(|w| w == word)
    }
}

/// Reads the `v2` field of a `hello` line: `Ok(None)` for a v1 `hello` (no such
/// field). The caller parses the v1 fields with [`crate::msg::parse`]. `caps` must be
/// plain (no escapes: its words are `[a-z0-9-]`).
pub fn parse_hello_v2(line: &[u8]) -> Result<Option<HelloV2<'_>>, V2ParseError> {
    core::str::from_utf8(line).map_err(|_| V2ParseError::NotUtf8)?;
    let mut reader = Reader::new(line)?;
    let mut key_buf = [0u8; 8];
    let mut v2 = None;
    while let Some((key, value)) = reader.next_member(&mut key_buf)? {
        if key == Some("v2") {
            v2 = Some(value);
        }
    }
    let obj = match v2 {
        None => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(V2ParseError::WrongType("v2")),
    };
    let (mut caps, mut ed, mut bind) = (None, None, None);
    let mut reader = Reader::new(obj)?;
    while let Some((key, value)) = reader.next_member(&mut key_buf)? {
        match key {
            Some("caps") => caps = Some(value),
            Some("ed") => ed = Some(value),
            Some("bind") => bind = Some(value),
            _ => {}
        }
    }
    let caps = need(caps, "caps")?;
    let caps = caps.as_plain().ok_or(V2ParseError::WrongType("caps"))?;
    let words_ok = caps.split(' ').count() <= 16
        && caps.split(' ').all(|w| {
            (1..=16).contains(&w.len())
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !words_ok {
        return Err(V2ParseError::WrongType("caps"));
    }
    Ok(Some(HelloV2 {
        caps,
        ed: bytes(need(ed, "ed")?, "ed")?,
        bind: bytes(need(bind, "bind")?, "bind")?,
    }))
}

/// Writes a v2 client's `hello` line: v1's fields, then the `v2` field.
pub fn emit_hello_line(
    user: &str,
    x: &[u8; KEY_LEN],
    v2: &HelloV2<'_>,
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let write = |s: &mut dyn Sink| {
        s.put(b"{\"type\":\"hello\",\"user\":");
        json::write_str(s, user);
        s.put(b",\"pub\":");
        write_b64(s, x);
        s.put(b",\"v2\":{\"caps\":");
        json::write_str(s, v2.caps);
        s.put(b",\"ed\":");
        write_b64(s, &v2.ed);
        s.put(b",\"bind\":");
        write_b64(s, &v2.bind);
        s.put(b"}}\n");
    };
    let mut c = Counter(0);
    write(&mut c);
    let needed = c.0;
    let dst = out.get_mut(..needed).ok_or(BufferTooSmall { needed })?;
    let mut sink = SliceSink { out: dst, len: 0 };
    write(&mut sink);
    Ok(sink.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{self, Message};

    fn round_trip(m: V2Message<'_>) {
        let mut out = [0u8; 512];
        let n = m.emit_line(&mut out).unwrap();
        assert_eq!(n, m.line_len());
        assert_eq!(out[n - 1], b'\n');
        let mut scratch = [0u8; 512];
        assert_eq!(parse(&out[..n - 1], &mut scratch).unwrap(), m);
        let mut small = [0xaau8; 8];
        assert_eq!(m.emit_line(&mut small), Err(BufferTooSmall { needed: n }));
        assert_eq!(small, [0xaa; 8]);
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(V2Message::Challenge {
            nonce: [1; 32],
            eph: [2; 32],
            caps: "v2 sas ack",
        });
        round_trip(V2Message::Proof {
            sig: [3; 64],
            mac: [4; 32],
        });
        round_trip(V2Message::Relay2 {
            to: Some("bob"),
            from: None,
            id: Some(17),
            body: "AAEC",
        });
        round_trip(V2Message::Relay2 {
            to: None,
            from: Some("José"),
            id: None,
            body: "AAEC",
        });
        round_trip(V2Message::Ack {
            id: 0,
            status: AckStatus::Forwarded,
        });
        round_trip(V2Message::Ack {
            id: u32::MAX,
            status: AckStatus::NotConnected,
        });
        round_trip(V2Message::Ping { id: 41 });
        round_trip(V2Message::Pong { id: 1_000_000 });
        round_trip(V2Message::BundleReq { user: "b\"o\\b" });
    }

    #[test]
    fn the_spec_examples_parse() {
        let mut s = [0u8; 256];
        assert_eq!(
            parse(br#"{"type": "ack", "status": "not_connected", "id": "17", "extra": [1, {"x": 2}]}"#, &mut s),
            Ok(V2Message::Ack { id: 17, status: AckStatus::NotConnected })
        );
        assert_eq!(
            parse(br#"{"type":"relay2","from":"alice","body":"AAEC"}"#, &mut s),
            Ok(V2Message::Relay2 {
                to: None,
                from: Some("alice"),
                id: None,
                body: "AAEC"
            })
        );
    }

    #[test]
    fn bad_lines_are_refused() {
        let mut s = [0u8; 256];
        let cases: [(&[u8], V2ParseError); 10] = [
            (br#"{"type":"ping"}"#, V2ParseError::MissingField("id")),
            (br#"{"type":"ping","id":5}"#, V2ParseError::WrongType("id")),
            (
                br#"{"type":"ping","id":"05"}"#,
                V2ParseError::BadNumber("id"),
            ),
            (
                br#"{"type":"ping","id":"4294967296"}"#,
                V2ParseError::BadNumber("id"),
            ),
            (
                br#"{"type":"ping","id":"-1"}"#,
                V2ParseError::BadNumber("id"),
            ),
            (
                br#"{"type":"ack","id":"1","status":"lost"}"#,
                V2ParseError::WrongType("status"),
            ),
            (
                br#"{"type":"proof","sig":"AAAA","mac":"AAAA"}"#,
                V2ParseError::BadLength {
                    field: "sig",
                    len: 3,
                },
            ),
            (
                br#"{"type":"proof","sig":"!!","mac":"AAAA"}"#,
                V2ParseError::BadBase64("sig"),
            ),
            (br#"{"type":"relay","to":"bob"}"#, V2ParseError::UnknownType),
            (br#"{"text":"x"}"#, V2ParseError::MissingType),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse(line, &mut s),
                Err(want),
                "{}",
                core::str::from_utf8(line).unwrap()
            );
        }
        assert!(matches!(
            parse(br#"{"type":"ping""#, &mut s),
            Err(V2ParseError::InvalidJson { .. })
        ));
        assert_eq!(
            parse(b"{\"type\":\"\xff\"}", &mut s),
            Err(V2ParseError::NotUtf8)
        );
    }

    #[test]
    fn hello_extension_is_invisible_to_v1_and_read_by_v2() {
        let v2 = HelloV2 {
            caps: "v2 sas receipts",
            ed: [5; 32],
            bind: [6; 64],
        };
        let mut out = [0u8; 400];
        let n = emit_hello_line("alice", &[7; 32], &v2, &mut out).unwrap();
        let line = &out[..n - 1];
        // The v1 parser (like the reference server) sees a plain hello.
        let mut scratch = [0u8; 400];
        assert_eq!(
            msg::parse(line, &mut scratch),
            Ok(Message::Hello {
                user: "alice",
                key: [7; 32]
            })
        );
        let got = parse_hello_v2(line).unwrap().unwrap();
        assert_eq!(got, v2);
        assert!(got.has_cap("sas") && !got.has_cap("pq"));
        assert_eq!(
            parse_hello_v2(br#"{"type":"hello","user":"a","pub":"x"}"#),
            Ok(None)
        );
        assert_eq!(
            parse_hello_v2(br#"{"type":"hello","v2":{"caps":"V2","ed":"","bind":""}}"#),
            Err(V2ParseError::WrongType("caps"))
        );
        assert_eq!(
            parse_hello_v2(br#"{"type":"hello","v2":"yes"}"#),
            Err(V2ParseError::WrongType("v2"))
        );
        assert_eq!(
            parse_hello_v2(br#"{"type":"hello","v2":{"caps":"v2","ed":"AAAA"}}"#),
            Err(V2ParseError::BadLength {
                field: "ed",
                len: 3
            })
        );
        let mut small = [0u8; 10];
        assert!(emit_hello_line("alice", &[7; 32], &v2, &mut small).is_err());
    }
}
