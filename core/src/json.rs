//! A strict, allocation-free JSON reader and writer for the protocol's flat objects.
//!
//! Reading: [`Reader`] walks one object, handing out each member's key (unescaped into a
//! small buffer) and value as a [`Value`]: strings stay raw (escapes validated, not yet
//! decoded) until [`unescape`] copies them into caller memory; nested objects are kept as
//! spans to walk again; any other value (number, literal, array) is validated and
//! skipped. Nesting is limited to [`MAX_DEPTH`], so hostile input cannot exhaust the
//! stack. Writing: [`Sink`] implementations count or copy bytes, and [`write_str`]
//! escapes a string the way every JSON reader accepts.

/// Deepest nesting of arrays/objects accepted inside skipped values.
pub const MAX_DEPTH: usize = 16;

/// A malformed document; `offset` is the byte where reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// Byte offset into the line.
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

/// A member's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'i> {
    /// A string: the raw bytes between the quotes, escapes validated but not decoded.
    Str(RawStr<'i>),
    /// An object: the raw bytes from `{` to `}` inclusive, already validated.
    Object(&'i [u8]),
    /// Anything else (number, true, false, null, array), validated and skipped.
    Other,
}

/// A string's raw bytes between the quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStr<'i> {
    raw: &'i [u8],
    escaped: bool,
}

impl<'i> RawStr<'i> {
    /// The decoded length is at most this.
    pub fn max_len(&self) -> usize {
        self.raw.len()
    }

    /// The string itself if it contains no escapes (then it can be borrowed as is).
    pub fn as_plain(&self) -> Option<&'i str> {
        if self.escaped {
            None
        } else {
            core::str::from_utf8(self.raw).ok()
        }
    }
}

/// Walks the members of one JSON object.
pub struct Reader<'i> {
    s: &'i [u8],
    pos: usize,
    first: bool,
    done: bool,
}

impl<'i> Reader<'i> {
    /// Starts reading `s`, which must hold exactly one object (surrounding white space allowed).
    pub fn new(s: &'i [u8]) -> Result<Self, Malformed> {
        let mut r = Self {
            s,
            pos: 0,
            first: true,
            done: false,
        };
        r.ws();
        if r.peek() != Some(b'{') {
            return Err(r.err("expected an object"));
        }
        r.pos += 1;
        Ok(r)
    }

    /// The next member, `Ok(None)` after the closing `}` (and checks nothing follows it).
    /// The key is unescaped into `key_buf`; a key longer than the buffer is returned as
    /// `None` (an unknown key, whose value is still validated).
    pub fn next_member<'k>(
        &mut self,
        key_buf: &'k mut [u8],
    ) -> Result<Option<(Option<&'k str>, Value<'i>)>, Malformed> {
        let Some((key_raw, value)) = self.next_raw()? else {
            return Ok(None);
        };
        let key = match unescape(key_raw, key_buf) {
            Ok(n) => key_buf.get(..n).and_then(|b| core::str::from_utf8(b).ok()),
            Err(_) => None,
        };
        Ok(Some((key, value)))
    }

    /// The next member with its key still raw, `Ok(None)` after the closing `}`.
    pub fn next_raw(&mut self) -> Result<Option<(RawStr<'i>, Value<'i>)>, Malformed> {
        if self.done {
            return Ok(None);
        }
        self.ws();
        if self.peek() == Some(b'}') {
            if !self.first {
                return Err(self.err("trailing comma"));
            }
            return self.finish().map(|()| None);
        }
        self.first = false;
        let key_raw = self.string()?;
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.err("expected ':'"));
        }
        self.pos += 1;
        self.ws();
        let value = self.value()?;
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    return Err(self.err("trailing comma"));
                }
            }
            Some(b'}') => {
                self.finish()?;
            }
            _ => return Err(self.err("expected ',' or '}'")),
        }
        Ok(Some((key_raw, value)))
    }

    fn finish(&mut self) -> Result<(), Malformed> {
        self.pos += 1;
        self.done = true;
        self.ws();
        if self.pos != self.s.len() {
            return Err(self.err("data after the object"));
        }
        Ok(())
    }

    fn err(&self, what: &'static str) -> Malformed {
        Malformed {
            offset: self.pos,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Value<'i>, Malformed> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'{') => {
                let start = self.pos;
                self.skip(0)?;
                let obj = self.s.get(start..self.pos).unwrap_or(&[]);
                Ok(Value::Object(obj))
            }
            _ => self.skip(0).map(|()| Value::Other),
        }
    }

    /// Reads a string starting at its opening quote.
    fn string(&mut self) -> Result<RawStr<'i>, Malformed> {
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a string"));
        }
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            for _ in 0..4 {
                                match self.peek() {
                                    Some(c) if c.is_ascii_hexdigit() => self.pos += 1,
                                    _ => return Err(self.err("bad \\u escape")),
                                }
                            }
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                Some(c) if c < 0x20 => return Err(self.err("control character in string")),
                Some(_) => {
                    // Skip the run of ordinary bytes in one go.
                    let rest = self.s.get(self.pos..).unwrap_or(&[]);
                    self.pos += rest
                        .iter()
                        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                        .unwrap_or(rest.len());
                }
            }
        }
        let raw = self.s.get(start..self.pos).unwrap_or(&[]);
        self.pos += 1;
        // Surrogates are checked now so that a string accepted here always decodes.
        let r = RawStr { raw, escaped };
        if escaped && check_surrogates(raw).is_err() {
            return Err(Malformed {
                offset: start,
                what: "unpaired surrogate",
            });
        }
        Ok(r)
    }

    /// Validates and skips any value.
    fn skip(&mut self, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => {
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    if self.peek() != Some(b':') {
                        return Err(self.err("expected ':'"));
                    }
                    self.pos += 1;
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("expected a value")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Malformed> {
        if self.s.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("bad literal"))
        }
    }

    fn number(&mut self) -> Result<(), Malformed> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err("bad number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err("bad number"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err("bad number"));
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

fn hex4(s: &[u8]) -> Option<u16> {
    let mut v: u16 = 0;
    for &c in s.get(..4)? {
        let d = (c as char).to_digit(16)?;
        v = (v << 4) | d as u16;
    }
    Some(v)
}

fn check_surrogates(raw: &[u8]) -> Result<(), ()> {
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        if c != b'\\' {
            i += 1;
            continue;
        }
        if raw.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let u = hex4(raw.get(i + 2..).unwrap_or(&[])).ok_or(())?;
        i += 6;
        if (0xD800..0xDC00).contains(&u) {
            let is_low = raw.get(i) == Some(&b'\\')
                && raw.get(i + 1) == Some(&b'u')
                && hex4(raw.get(i + 2..).unwrap_or(&[]))
                    .is_some_and(|l| (0xDC00..0xE000).contains(&l));
            if !is_low {
                return Err(());
            }
            i += 6;
        } else if (0xDC00..0xE000).contains(&u) {
            return Err(());
        }
    }
    Ok(())
}

/// The buffer given to [`unescape`] was too small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall;

/// Decodes a raw string into `out`, returning the number of UTF-8 bytes written.
/// The output is never longer than the raw input.
pub fn unescape(s: RawStr<'_>, out: &mut [u8]) -> Result<usize, TooSmall> {
    let raw = s.raw;
    if !s.escaped {
        let dst = out.get_mut(..raw.len()).ok_or(TooSmall)?;
        dst.copy_from_slice(raw);
        return Ok(raw.len());
    }
    let mut n = 0;
    let mut i = 0;
    let mut put = |bytes: &[u8], n: &mut usize| -> Result<(), TooSmall> {
        let dst = out.get_mut(*n..*n + bytes.len()).ok_or(TooSmall)?;
        dst.copy_from_slice(bytes);
        *n += bytes.len();
        Ok(())
    };
    while let Some(&c) = raw.get(i) {
        if c != b'\\' {
            // Copy the run of plain bytes up to the next escape.
            let end = raw
                .get(i..)
                .and_then(|r| r.iter().position(|&b| b == b'\\'))
                .map_or(raw.len(), |p| i + p);
            put(raw.get(i..end).unwrap_or(&[]), &mut n)?;
            i = end;
            continue;
        }
        let e = raw.get(i + 1).copied().unwrap_or(0);
        i += 2;
        let simple = match e {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(b) = simple {
            put(&[b], &mut n)?;
            continue;
        }
        // \uXXXX (validated by the reader, surrogates paired).
        let u = hex4(raw.get(i..).unwrap_or(&[])).unwrap_or(0xFFFD);
        i += 4;
        let cp = if (0xD800..0xDC00).contains(&u) {
            let lo = hex4(raw.get(i + 2..).unwrap_or(&[])).unwrap_or(0xDC00);
            i += 6;
            0x10000 + ((u32::from(u) - 0xD800) << 10) + (u32::from(lo).wrapping_sub(0xDC00) & 0x3FF)
        } else {
            u32::from(u)
        };
        let ch = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut tmp = [0u8; 4];
        put(ch.encode_utf8(&mut tmp).as_bytes(), &mut n)?;
    }
    Ok(n)
}

/// Where emitted bytes go.
pub trait Sink {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
}

/// Counts bytes without storing them.
pub struct Counter(pub usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Writes into a slice; the caller has checked with a [`Counter`] that it fits.
pub struct SliceSink<'o> {
    /// Destination.
    pub out: &'o mut [u8],
    /// Bytes written so far.
    pub len: usize,
}

impl Sink for SliceSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.out.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.len += bytes.len();
    }
}

/// Writes `s` as a quoted JSON string: `"` and `\` escaped, control characters as
/// `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`; everything else as raw UTF-8.
pub fn write_str(sink: &mut (impl Sink + ?Sized), s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    sink.put(b"\"");
    let bytes = s.as_bytes();
    let mut start = 0;
    let needs_escape = |b: &u8| *b == b'"' || *b == b'\\' || *b < 0x20;
    let mut i = 0;
    while let Some(off) = bytes.get(i..).and_then(|r| r.iter().position(needs_escape)) {
        i += off;
        let b = bytes.get(i).copied().unwrap_or(0);
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            _ => None,
        };
        sink.put(bytes.get(start..i).unwrap_or(&[]));
        i += 1;
        start = i;
        match esc {
            Some(e) => sink.put(e),
            None => {
                let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
                sink.put(&[b'\\', b'u', b'0', b'0', hi, lo]);
            }
        }
    }
    sink.put(bytes.get(start..).unwrap_or(&[]));
    sink.put(b"\"");
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn members(s: &str) -> Result<Vec<(String, String)>, Malformed> {
        let mut r = Reader::new(s.as_bytes())?;
        let mut out = Vec::new();
        let mut kb = [0u8; 32];
        while let Some((k, v)) = r.next_member(&mut kb)? {
            let k = String::from(k.unwrap_or("?"));
            let v = match v {
                Value::Str(raw) => {
                    let mut buf = [0u8; 256];
                    let n = unescape(raw, &mut buf).unwrap();
                    String::from_utf8(buf[..n].to_vec()).unwrap()
                }
                Value::Object(o) => format!("obj:{}", std::str::from_utf8(o).unwrap()),
                Value::Other => String::from("other"),
            };
            out.push((k, v));
        }
        Ok(out)
    }

    use std::format;

    #[test]
    fn reads_python_style() {
        let m = members(r#"{"type": "chat", "text": "\u00bfqu\u00e9 \ud83d\ude80 \"x\" \\ \t"}"#)
            .unwrap();
        assert_eq!(m[1].1, "¿qué 🚀 \"x\" \\ \t");
    }

    #[test]
    fn skips_other_values() {
        let m = members(r#"{"a": [1, -2.5e3, {"b": null}, true], "c": {"d": "e"}, "f": false}"#)
            .unwrap();
        assert_eq!(m[0].1, "other");
        assert_eq!(m[1].1, r#"obj:{"d": "e"}"#);
        assert_eq!(m[2].1, "other");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "[]",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1} x",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00\"}",
            "{\"a\":\"\\ud800\\u0041\"}",
            "{\"a\":01x}",
            "{\"a\":tru}",
            "{\"a\":\"\x01\"}",
            "{\"a\":1 \"b\":2}",
            "{,}",
        ] {
            assert!(members(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn depth_is_limited() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        assert!(members(&deep).is_err());
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(10), "]".repeat(10));
        assert!(members(&ok).is_ok());
    }

    #[test]
    fn writes_escapes() {
        let mut buf = [0u8; 64];
        let mut s = SliceSink {
            out: &mut buf,
            len: 0,
        };
        write_str(&mut s, "a\"b\\c\n\u{1}é");
        let n = s.len;
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "\"a\\\"b\\\\c\\n\\u0001é\""
        );
    }
}
