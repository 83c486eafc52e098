//! Messages of protocol v1 (PROTOCOL.md §3): parse any form the reference writes, emit compact JSON.
//!
//! [`parse`] accepts Python's `json.dumps` output (`", "`/`": "` spacing, `\uXXXX`
//! escapes, surrogate pairs), compact JSON, raw UTF-8, any key order and unknown extra
//! fields. Strings without escapes are borrowed from the line; escaped ones are decoded
//! into a caller-provided scratch buffer, and a scratch buffer as long as the line is
//! always enough. [`Message::emit_line`] writes compact JSON and the final `\n`,
//! escaping only `"`, `\` and control characters; on failure the output buffer is left
//! untouched and the error says how many bytes were needed.

use core::fmt;

use base64ct::{Base64, Encoding};

use crate::json::{self, Counter, Reader, Sink, SliceSink, Value};
use crate::limits::{KEY_LEN, MAX_NAME_CHARS, NONCE_LEN};

/// The only end-to-end algorithm of protocol v1, carried in `relay.alg`.
pub const ALG_V1: &str = "X25519+AESGCM";

/// One protocol message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Client → server, the first line: register `user` with X25519 public key `key`.
    Hello {
        /// Requested user name.
        user: &'a str,
        /// The user's X25519 public key (`pub` on the wire, base64).
        key: [u8; KEY_LEN],
        /// A join token for a private server (`token` on the wire; the invite's `t=`).
        /// An extra field the reference server ignores; absent, the line is exactly
        /// protocol v1's.
        token: Option<&'a str>,
    },
    /// Server → client, the reply to `hello`: the directory, including the new user.
    Welcome {
        /// Every connected user and their key.
        users: UserList<'a>,
    },
    /// Client → server: ask for the directory.
    List,
    /// Server → client: the directory (reply to `list`, or pushed on joins and leaves).
    Users {
        /// Every connected user and their key.
        users: UserList<'a>,
    },
    /// Client → server: text for the server itself.
    Chat {
        /// The text.
        text: &'a str,
    },
    /// Server → client: the server's own text (e.g. `echo: …`).
    Server {
        /// The text.
        text: &'a str,
    },
    /// Client → server → client: an end-to-end encrypted message.
    Relay(Relay<'a>),
    /// Server → client: a human-readable error.
    Error {
        /// The text.
        text: &'a str,
    },
}

/// The fields of a `relay` message. `nonce` and `cipher` are kept as the base64 text
/// they travel as: a server forwards them without ever decoding them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relay<'a> {
    /// Recipient.
    pub to: &'a str,
    /// Sender; the server rewrites it to the sender's registered name. Optional on input.
    pub from: Option<&'a str>,
    /// Algorithm, [`ALG_V1`]; optional on input.
    pub alg: Option<&'a str>,
    /// Base64 of the 12-byte nonce.
    pub nonce: &'a str,
    /// Base64 of cipher text and tag.
    pub cipher: &'a str,
}

/// A directory: (name, key) pairs packed in a byte buffer (2-byte little-endian name
/// length, name, 32-byte key), in wire order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UserList<'a> {
    data: &'a [u8],
    count: usize,
}

impl fmt::Debug for UserList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(|(n, _)| n)).finish()
    }
}

/// A buffer was too small: this many bytes were needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// Bytes the operation needed.
    pub needed: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "buffer too small: {} bytes needed", self.needed)
    }
}

impl core::error::Error for BufferTooSmall {}

/// Bytes one entry takes in a packed [`UserList`].
pub const fn packed_entry_len(name: &str) -> usize {
    2 + name.len() + KEY_LEN
}

impl<'a> UserList<'a> {
    /// An empty list.
    pub const EMPTY: UserList<'static> = UserList {
        data: &[],
        count: 0,
    };

    /// Packs `entries` into `buf` (see [`packed_entry_len`] for the size needed).
    pub fn pack<'n, I>(entries: I, buf: &'a mut [u8]) -> Result<Self, BufferTooSmall>
    where
        I: IntoIterator<Item = (&'n str, &'n [u8; KEY_LEN])>,
        I::IntoIter: Clone,
    {
        let entries = entries.into_iter();
        let needed: usize = entries.clone().map(|(n, _)| packed_entry_len(n)).sum();
        if needed > buf.len()
            || entries
                .clone()
                .any(|(n, _)| n.len() > usize::from(u16::MAX))
        {
            return Err(BufferTooSmall { needed });
        }
        let mut pos = 0;
        let mut count = 0;
        for (name, key) in entries {
            let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
            let end = pos + packed_entry_len(name);
            let Some(dst) = buf.get_mut(pos..end) else {
                return Err(BufferTooSmall { needed });
            };
            let (l, rest) = dst.split_at_mut(2);
            l.copy_from_slice(&len.to_le_bytes());
            let (n, k) = rest.split_at_mut(name.len());
            n.copy_from_slice(name.as_bytes());
            k.copy_from_slice(key);
            pos = end;
            count += 1;
        }
        let data = buf.get(..pos).unwrap_or(&[]);
        Ok(Self { data, count })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if there are no users.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The users in wire order.
    pub fn iter(&self) -> UserIter<'a> {
        UserIter { rest: self.data }
    }

    /// The key of `name`, if listed.
    pub fn get(&self, name: &str) -> Option<&'a [u8; KEY_LEN]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, k)| k)
    }
}

/// Iterator over a [`UserList`].
#[derive(Clone)]
pub struct UserIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for UserIter<'a> {
    type Item = (&'a str, &'a [u8; KEY_LEN]);

    fn next(&mut self) -> Option<Self::Item> {
        let (len, rest) = self.rest.split_first_chunk::<2>()?;
        let (name, rest) = rest.split_at_checked(usize::from(u16::from_le_bytes(*len)))?;
        let (key, rest) = rest.split_first_chunk::<KEY_LEN>()?;
        self.rest = rest;
        Some((core::str::from_utf8(name).ok()?, key))
    }
}

/// Why a line is not a valid message. Every variant means the peer sent something
/// wrong, except [`ParseError::ScratchTooSmall`], which means the caller's scratch
/// buffer was shorter than the line.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The line is not UTF-8.
    NotUtf8,
    /// The line is not a JSON object.
    InvalidJson {
        /// Byte offset where reading stopped.
        offset: usize,
        /// What was wrong there.
        what: &'static str,
    },
    /// The object has no `type` string.
    MissingType,
    /// The `type` is not one of protocol v1.
    UnknownType,
    /// A required field is missing.
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    WrongType(&'static str),
    /// A field is not valid base64.
    BadBase64(&'static str),
    /// A key does not decode to 32 bytes.
    BadKeyLength {
        /// The field.
        field: &'static str,
        /// Its decoded length (a lower bound for very long values).
        len: usize,
    },
    /// Caller misuse: the scratch buffer must be at least as long as the line.
    ScratchTooSmall {
        /// Bytes of scratch needed.
        needed: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("line is not valid UTF-8"),
            Self::InvalidJson { offset, what } => {
                write!(f, "invalid JSON at byte {offset}: {what}")
            }
            Self::MissingType => f.write_str("missing \"type\""),
            Self::UnknownType => f.write_str("unknown message type"),
            Self::MissingField(n) => write!(f, "missing field \"{n}\""),
            Self::WrongType(n) => write!(f, "field \"{n}\" has the wrong type"),
            Self::BadBase64(n) => write!(f, "field \"{n}\" is not valid base64"),
            Self::BadKeyLength { field, len } => {
                write!(
                    f,
                    "field \"{field}\" must be a 32-byte key, got {len} bytes"
                )
            }
            Self::ScratchTooSmall { needed } => {
                write!(f, "scratch buffer too small: {needed} bytes needed")
            }
        }
    }
}

impl core::error::Error for ParseError {}

impl From<json::Malformed> for ParseError {
    fn from(m: json::Malformed) -> Self {
        Self::InvalidJson {
            offset: m.offset,
            what: m.what,
        }
    }
}

/// Hands out disjoint pieces of the scratch buffer.
struct Bump<'a> {
    rest: &'a mut [u8],
    needed: usize,
}

impl<'a> Bump<'a> {
    /// Decodes a string, borrowing it from the line when it has no escapes.
    fn string(&mut self, raw: json::RawStr<'a>) -> Result<&'a str, ParseError> {
        if let Some(s) = raw.as_plain() {
            return Ok(s);
        }
        let buf = core::mem::take(&mut self.rest);
        let n = json::unescape(raw, buf).map_err(|_| ParseError::ScratchTooSmall {
            needed: self.needed,
        })?;
        let (head, tail) = buf.split_at_mut(n);
        self.rest = tail;
        core::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)
    }
}

/// Decodes base64 text (a JSON string) that must hold a 32-byte key.
fn decode_key(raw: json::RawStr<'_>, field: &'static str) -> Result<[u8; KEY_LEN], ParseError> {
    let mut text = [0u8; 96];
    let n = match json::unescape(raw, &mut text) {
        Ok(n) => n,
        Err(_) => {
            return Err(ParseError::BadKeyLength {
                field,
                len: raw.max_len() / 4 * 3,
            });
        }
    };
    let text = text.get(..n).unwrap_or(&[]);
    let mut out = [0u8; 72];
    let decoded = Base64::decode(text, &mut out).map_err(|_| ParseError::BadBase64(field))?;
    <[u8; KEY_LEN]>::try_from(decoded).map_err(|_| ParseError::BadKeyLength {
        field,
        len: decoded.len(),
    })
}

fn need_str<'a>(v: Option<Value<'a>>, name: &'static str) -> Result<json::RawStr<'a>, ParseError> {
    match v {
        None => Err(ParseError::MissingField(name)),
        Some(Value::Str(s)) => Ok(s),
        Some(_) => Err(ParseError::WrongType(name)),
    }
}

fn opt_str<'a>(
    v: Option<Value<'a>>,
    name: &'static str,
) -> Result<Option<json::RawStr<'a>>, ParseError> {
    match v {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(_) => Err(ParseError::WrongType(name)),
    }
}

/// The members of a message object that protocol v1 knows.
#[derive(Default)]
struct Fields<'i> {
    ty: Option<Value<'i>>,
    user: Option<Value<'i>>,
    key: Option<Value<'i>>,
    users: Option<Value<'i>>,
    text: Option<Value<'i>>,
    to: Option<Value<'i>>,
    from: Option<Value<'i>>,
    alg: Option<Value<'i>>,
    nonce: Option<Value<'i>>,
    cipher: Option<Value<'i>>,
    token: Option<Value<'i>>,
}

/// Parses one line (without its `\n`) into a message.
///
/// Strings with escapes are decoded into `scratch`; `scratch.len() >= line.len()` is
/// always enough. Duplicate keys: the last one wins, as in Python's `json`.
pub fn parse<'a>(line: &'a [u8], scratch: &'a mut [u8]) -> Result<Message<'a>, ParseError> {
    core::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let mut f = Fields::default();
    let mut reader = Reader::new(line)?;
    let mut key_buf = [0u8; 8];
    while let Some((key, value)) = reader.next_member(&mut key_buf)? {
        let slot = match key {
            Some("type") => &mut f.ty,
            Some("user") => &mut f.user,
            Some("pub") => &mut f.key,
            Some("users") => &mut f.users,
            Some("text") => &mut f.text,
            Some("to") => &mut f.to,
            Some("from") => &mut f.from,
            Some("alg") => &mut f.alg,
            Some("nonce") => &mut f.nonce,
            Some("cipher") => &mut f.cipher,
            Some("token") => &mut f.token,
            _ => continue,
        };
        *slot = Some(value);
    }
    let mut bump = Bump {
        rest: scratch,
        needed: line.len(),
    };
    let ty = match f.ty {
        None => return Err(ParseError::MissingType),
        Some(Value::Str(s)) => s,
        Some(_) => return Err(ParseError::WrongType("type")),
    };
    let mut ty_buf = [0u8; 8];
    let ty = match json::unescape(ty, &mut ty_buf) {
        Ok(n) => ty_buf.get(..n).unwrap_or(&[]),
        Err(_) => return Err(ParseError::UnknownType),
    };
    let msg = match ty {
        b"hello" => {
            let user = need_str(f.user, "user")?;
            let key = decode_key(need_str(f.key, "pub")?, "pub")?;
            let token = opt_str(f.token, "token")?;
            Message::Hello {
                user: bump.string(user)?,
                key,
                token: match token {
                    Some(t) => Some(bump.string(t)?),
                    None => None,
                },
            }
        }
        b"welcome" => Message::Welcome {
            users: parse_users(f.users, &mut bump)?,
        },
        b"users" => Message::Users {
            users: parse_users(f.users, &mut bump)?,
        },
        b"list" => Message::List,
        b"chat" => Message::Chat {
            text: bump.string(need_str(f.text, "text")?)?,
        },
        b"server" => Message::Server {
            text: bump.string(need_str(f.text, "text")?)?,
        },
        b"error" => Message::Error {
            text: bump.string(need_str(f.text, "text")?)?,
        },
        b"relay" => {
            let to = need_str(f.to, "to")?;
            let nonce = need_str(f.nonce, "nonce")?;
            let cipher = need_str(f.cipher, "cipher")?;
            let from = opt_str(f.from, "from")?;
            let alg = opt_str(f.alg, "alg")?;
            Message::Relay(Relay {
                to: bump.string(to)?,
                from: match from {
                    Some(s) => Some(bump.string(s)?),
                    None => None,
                },
                alg: match alg {
                    Some(s) => Some(bump.string(s)?),
                    None => None,
                },
                nonce: bump.string(nonce)?,
                cipher: bump.string(cipher)?,
            })
        }
        _ => return Err(ParseError::UnknownType),
    };
    Ok(msg)
}

fn parse_users<'a>(v: Option<Value<'a>>, bump: &mut Bump<'a>) -> Result<UserList<'a>, ParseError> {
    let obj = match v {
        None => return Err(ParseError::MissingField("users")),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(ParseError::WrongType("users")),
    };
    let too_small = ParseError::ScratchTooSmall {
        needed: bump.needed,
    };
    let region = core::mem::take(&mut bump.rest);
    let mut pos = 0;
    let mut count = 0;
    let mut reader = Reader::new(obj)?;
    while let Some((name, value)) = reader.next_raw()? {
        let Value::Str(k) = value else {
            return Err(ParseError::WrongType("users"));
        };
        let key = decode_key(k, "users")?;
        let name_area = region.get_mut(pos + 2..).ok_or(too_small)?;
        let n = json::unescape(name, name_area).map_err(|_| too_small)?;
        let len = u16::try_from(n).map_err(|_| ParseError::WrongType("users"))?;
        let entry = region
            .get_mut(pos..pos + 2 + n + KEY_LEN)
            .ok_or(too_small)?;
        let (l, rest) = entry.split_at_mut(2);
        l.copy_from_slice(&len.to_le_bytes());
        if let Some(k) = rest.get_mut(n..) {
            k.copy_from_slice(&key);
        }
        pos += 2 + n + KEY_LEN;
        count += 1;
    }
    let (data, tail) = region.split_at_mut(pos);
    bump.rest = tail;
    Ok(UserList { data, count })
}

impl Message<'_> {
    /// The wire name of this message's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Welcome { .. } => "welcome",
            Self::List => "list",
            Self::Users { .. } => "users",
            Self::Chat { .. } => "chat",
            Self::Server { .. } => "server",
            Self::Relay(_) => "relay",
            Self::Error { .. } => "error",
        }
    }

    /// Length of the line [`Message::emit_line`] writes, `\n` included.
    pub fn line_len(&self) -> usize {
        let mut c = Counter(0);
        self.write(&mut c);
        c.0
    }

    /// Writes the message as compact JSON followed by `\n` into `out` and returns the
    /// number of bytes written. If `out` is too small, nothing is written and the error
    /// says how many bytes are needed.
    pub fn emit_line(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let needed = self.line_len();
        let Some(dst) = out.get_mut(..needed) else {
            return Err(BufferTooSmall { needed });
        };
        let mut sink = SliceSink { out: dst, len: 0 };
        self.write(&mut sink);
        Ok(sink.len)
    }

    /// Like [`Message::emit_line`], in a single pass over the message: when the caller
    /// can size `out` (a forwarded line is about as long as the line it came from), the
    /// escape scan of every string runs once instead of twice. If `out` is too small,
    /// the error says how many bytes are needed and `out` holds a partial line.
    pub fn emit_line_once(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let room = out.len();
        let mut sink = SliceSink { out, len: 0 };
        self.write(&mut sink);
        // Every put lands at `len` and `len` only grows: a put that did not fit leaves
        // `len` past the end, so a final `len` within `out` means every put was written.
        if sink.len <= room {
            Ok(sink.len)
        } else {
            Err(BufferTooSmall { needed: sink.len })
        }
    }

    fn write(&self, s: &mut impl Sink) {
        s.put(b"{\"type\":");
        json::write_str(s, self.type_name());
        match self {
            Self::Hello { user, key, token } => {
                s.put(b",\"user\":");
                json::write_str(s, user);
                s.put(b",\"pub\":");
                write_key(s, key);
                if let Some(token) = token {
                    s.put(b",\"token\":");
                    json::write_str(s, token);
                }
            }
            Self::Welcome { users } | Self::Users { users } => {
                s.put(b",\"users\":{");
                for (i, (name, key)) in users.iter().enumerate() {
                    if i > 0 {
                        s.put(b",");
                    }
                    json::write_str(s, name);
                    s.put(b":");
                    write_key(s, key);
                }
                s.put(b"}");
            }
            Self::List => {}
            Self::Chat { text } | Self::Server { text } | Self::Error { text } => {
                s.put(b",\"text\":");
                json::write_str(s, text);
            }
            Self::Relay(r) => {
                s.put(b",\"to\":");
                json::write_str(s, r.to);
                if let Some(from) = r.from {
                    s.put(b",\"from\":");
                    json::write_str(s, from);
                }
                if let Some(alg) = r.alg {
                    s.put(b",\"alg\":");
                    json::write_str(s, alg);
                }
                s.put(b",\"nonce\":");
                json::write_str(s, r.nonce);
                s.put(b",\"cipher\":");
                json::write_str(s, r.cipher);
            }
        }
        s.put(b"}\n");
    }
}

/// Writes a `relay` line (compact JSON and `\n`) whose nonce and cipher text are given
/// as bytes and base64-encoded on the fly, so no base64 buffer is needed. On failure
/// `out` is untouched and the error says how many bytes were needed.
pub fn emit_relay_line(
    to: &str,
    from: &str,
    nonce: &[u8; NONCE_LEN],
    cipher: &[u8],
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let write = |s: &mut dyn Sink| {
        s.put(b"{\"type\":\"relay\",\"to\":");
        json::write_str(s, to);
        s.put(b",\"from\":");
        json::write_str(s, from);
        s.put(b",\"alg\":");
        json::write_str(s, ALG_V1);
        s.put(b",\"nonce\":\"");
        write_b64(s, nonce);
        s.put(b"\",\"cipher\":\"");
        write_b64(s, cipher);
        s.put(b"\"}\n");
    };
    let mut c = Counter(0);
    write(&mut c);
    let needed = c.0;
    let Some(dst) = out.get_mut(..needed) else {
        return Err(BufferTooSmall { needed });
    };
    let mut sink = SliceSink { out: dst, len: 0 };
    write(&mut sink);
    Ok(sink.len)
}

/// Base64 (standard, padded) of `bytes`, in chunks of whole 3-byte groups.
fn write_b64(s: &mut (impl Sink + ?Sized), bytes: &[u8]) {
    let mut text = [0u8; 64];
    for chunk in bytes.chunks(48) {
        if let Ok(t) = Base64::encode(chunk, &mut text) {
            s.put(t.as_bytes());
        }
    }
}

fn write_key(s: &mut impl Sink, key: &[u8; KEY_LEN]) {
    let mut b64 = [0u8; 44];
    let text = Base64::encode(key, &mut b64).unwrap_or("");
    s.put(b"\"");
    s.put(text.as_bytes());
    s.put(b"\"");
}

/// Why a user name is refused (PROTOCOL.md §3: 1–32 characters, no white space or
/// control characters).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name has more than [`MAX_NAME_CHARS`] characters.
    TooLong,
    /// The name contains white space or a control character.
    BadCharacter,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("user name is empty"),
            Self::TooLong => write!(f, "user name is longer than {MAX_NAME_CHARS} characters"),
            Self::BadCharacter => {
                f.write_str("user name contains white space or a control character")
            }
        }
    }
}

impl core::error::Error for NameError {}

/// Checks a user name against the protocol's rules.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\u{200b}' || c == '\u{feff}')
    {
        return Err(NameError::BadCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str<'a>(s: &'a str, scratch: &'a mut [u8]) -> Result<Message<'a>, ParseError> {
        parse(s.as_bytes(), scratch)
    }

    #[test]
    fn hello_roundtrip() {
        let key = [7u8; 32];
        let m = Message::Hello {
            user: "José",
            key,
            token: None,
        };
        let mut out = [0u8; 128];
        let n = m.emit_line(&mut out).unwrap();
        assert_eq!(out[n - 1], b'\n');
        let mut scratch = [0u8; 128];
        assert_eq!(parse(&out[..n - 1], &mut scratch).unwrap(), m);
    }

    #[test]
    fn hello_with_a_token() {
        let key = [7u8; 32];
        let bare = Message::Hello {
            user: "ana",
            key,
            token: None,
        };
        let with = Message::Hello {
            user: "ana",
            key,
            token: Some("abcdefghijklmnop"),
        };
        let mut a = [0u8; 160];
        let mut b = [0u8; 160];
        let na = bare.emit_line(&mut a).unwrap();
        let nb = with.emit_line(&mut b).unwrap();
        // Without a token, the v1 bytes; with one, the same plus the extra field.
        assert_eq!(
            &a[..na],
            b"{\"type\":\"hello\",\"user\":\"ana\",\"pub\":\"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\"}\n"
        );
        assert_eq!(&b[..na - 2], &a[..na - 2]);
        assert_eq!(&b[na - 2..nb], b",\"token\":\"abcdefghijklmnop\"}\n");
        let mut scratch = [0u8; 160];
        assert_eq!(parse(&b[..nb - 1], &mut scratch).unwrap(), with);
        // The reference's spacing and escapes, in any order.
        let spaced = br#"{"token": "ab\u0063d", "type": "hello", "pub": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=", "user": "ana"}"#;
        match parse(spaced, &mut scratch).unwrap() {
            Message::Hello { token, .. } => assert_eq!(token, Some("abcd")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(
                br#"{"type":"hello","user":"a","pub":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","token":7}"#,
                &mut scratch
            ),
            Err(ParseError::WrongType("token"))
        );
    }

    #[test]
    fn emit_line_once_matches_emit_line_or_says_what_it_needs() {
        let msgs = [
            Message::Chat {
                text: "hello \"q\" \u{1}",
            },
            Message::Relay(Relay {
                to: "bob",
                from: Some("ana"),
                alg: Some(ALG_V1),
                nonce: "AAAAAAAAAAAAAAAA",
                cipher: "Y2lwaGVy",
            }),
            Message::List,
        ];
        for m in msgs {
            let need = m.line_len();
            let mut a = [0u8; 256];
            let mut b = [0u8; 256];
            let na = m.emit_line(&mut a).unwrap();
            assert_eq!(m.emit_line_once(&mut b), Ok(na));
            assert_eq!(&a[..na], &b[..na]);
            // Exactly long enough, then one byte short, then empty.
            assert_eq!(m.emit_line_once(&mut b[..need]), Ok(need));
            assert_eq!(
                m.emit_line_once(&mut b[..need - 1]),
                Err(BufferTooSmall { needed: need })
            );
            assert_eq!(
                m.emit_line_once(&mut []),
                Err(BufferTooSmall { needed: need })
            );
        }
    }

    #[test]
    fn emit_reports_needed_and_leaves_buffer() {
        let m = Message::Chat { text: "hello" };
        let mut out = [0xAAu8; 10];
        let err = m.emit_line(&mut out).unwrap_err();
        assert_eq!(err.needed, m.line_len());
        assert!(out.iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn errors() {
        let mut s = [0u8; 256];
        assert_eq!(
            parse_str(r#"{"type":"chat"}"#, &mut s),
            Err(ParseError::MissingField("text"))
        );
        assert_eq!(
            parse_str(r#"{"type":"chat","text":5}"#, &mut s),
            Err(ParseError::WrongType("text"))
        );
        assert_eq!(
            parse_str(r#"{"type":"nope"}"#, &mut s),
            Err(ParseError::UnknownType)
        );
        assert_eq!(
            parse_str(r#"{"text":"x"}"#, &mut s),
            Err(ParseError::MissingType)
        );
        assert_eq!(
            parse_str(r#"{"type":"hello","user":"a","pub":"AAAA"}"#, &mut s),
            Err(ParseError::BadKeyLength {
                field: "pub",
                len: 3
            })
        );
        assert_eq!(
            parse_str(r#"{"type":"hello","user":"a","pub":"!!"}"#, &mut s),
            Err(ParseError::BadBase64("pub"))
        );
        assert!(matches!(
            parse_str(r#"{"type":"list""#, &mut s),
            Err(ParseError::InvalidJson { .. })
        ));
        assert_eq!(
            parse(b"{\"type\":\"\xff\"}", &mut s),
            Err(ParseError::NotUtf8)
        );
    }

    #[test]
    fn names() {
        assert!(validate_name("alice").is_ok());
        assert!(validate_name("José_Ñandú-🚀").is_ok());
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name("a b"), Err(NameError::BadCharacter));
        assert_eq!(validate_name("a\u{7}"), Err(NameError::BadCharacter));
        assert!(validate_name(&"é".repeat(32)).is_ok());
        assert_eq!(validate_name(&"é".repeat(33)), Err(NameError::TooLong));
    }
}
