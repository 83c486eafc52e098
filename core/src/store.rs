//! Seguro's storage format: versioned, checksummed records, and the files made of them.
//!
//! Core decides *what* is kept and how it is laid out in bytes; hosts decide *where*
//! (a file written atomically on the desktop, a flash map on a board). Everything kept
//! is a **record**:
//!
//! ```text
//! offset  size  field
//! 0       1     kind      what the record holds (see [`kind`])
//! 1       1     version   layout version of that kind (1 for everything today)
//! 2       2     length    L, length of the body, little-endian u16
//! 4       L     body      kind-specific (see each kind's documentation)
//! 4+L     4     crc       CRC-32 (IEEE 802.3, as zlib's crc32) of bytes 0..4+L, little-endian
//! ```
//!
//! A **file** (or any stream of records meant to be read whole) is a header record, any
//! number of records, and an end record:
//!
//! ```text
//! header  kind 0x00, version 1, body: b"SEGURO" (6 bytes) + file type (1 byte, see [`file_type`])
//! ...     records
//! end     kind 0xFF, version 1, body: number of records between header and end (u32 LE)
//! ```
//!
//! So a torn or truncated file is detected (the end record is missing, or a record's
//! CRC fails), bytes after the end record are refused, and every byte, header included,
//! is covered by a CRC. CRC-32 detects every error burst of up to 32 bits within one
//! record; a wider corruption goes unnoticed with probability 2⁻³². It protects against
//! accidents (torn writes, bit rot, a wrong file), not against someone who can write
//! the file: such a person can replace the identity anyway.
//!
//! **Compatibility rules.** A reader skips records of kinds it does not know (a later
//! version of Seguro may add kinds, e.g. issue 18's nonce windows or v2 ratchet state,
//! without breaking older files or older readers); hosts that rewrite a file keep such
//! records verbatim ([`Writer::raw`]). A record of a known kind with a version this build
//! does not read, or a container version it does not read, is an error
//! ([`StoreError::UnsupportedVersion`]): the file comes from a newer Seguro and must not
//! be misread or overwritten. Records that concern one peer begin their body with the
//! peer's name (one length byte, then UTF-8), so per-peer data of any later kind can be
//! matched to its contact.
//!
//! On a board the records are the values of a flash map (the flash crate adds its own
//! CRC); a file is used for the identity and the contact list on the desktop and for
//! export bundles.

mod identity;
mod seed;

pub use identity::IDENTITY_BODY_MAX;
pub use seed::{SEED_BODY_LEN, Seed};

use heapless::String;

use crate::limits::MAX_NAME_BYTES;

/// Bytes a record adds around its body: 4 of header, 4 of CRC.
pub const RECORD_OVERHEAD: usize = 8;
/// The longest record body.
pub const MAX_BODY: usize = u16::MAX as usize;
/// The magic at the start of every file's header body.
pub const MAGIC: &[u8; 6] = b"SEGURO";
/// Length of a file's header record.
pub const HEADER_LEN: usize = RECORD_OVERHEAD + MAGIC.len() + 1;
/// Length of a file's end record.
pub const END_LEN: usize = RECORD_OVERHEAD + 4;

/// Record kinds. Values below 0x80 that are not listed are free for later use;
/// 0x80..=0xFE are reserved for host-specific records.
pub mod kind {
    /// A file's first record.
    pub const HEADER: u8 = 0x00;
    /// The long-term identity ([`crate::identity::Identity`]).
    pub const IDENTITY: u8 = 0x01;
    /// A board's RNG seed and boot counter ([`super::Seed`]).
    pub const SEED: u8 = 0x02;
    /// One known contact ([`crate::trust::Contact`]).
    pub const CONTACT: u8 = 0x10;
    /// Reserved: a peer's sent and received nonce windows (replay and reflection
    /// defence). Body starts with the peer's name.
    pub const NONCES: u8 = 0x11;
    /// Reserved: a peer's v2 session (ratchet) state. Body starts with the peer's name.
    pub const RATCHET: u8 = 0x12;
    /// A file's last record.
    pub const END: u8 = 0xFF;
}

/// File types, the last byte of the header body.
pub mod file_type {
    /// One identity: header, an identity record, end.
    pub const IDENTITY: u8 = 1;
    /// The contact list and other per-peer state: header, contact records (and later
    /// per-peer records), end.
    pub const TRUST: u8 = 2;
    /// An export bundle (backup): header, an identity record, contact records, end.
    pub const BUNDLE: u8 = 3;
}

/// What went wrong reading or writing stored data.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The output buffer is too small; `needed` is the length it must have.
    BufferTooSmall {
        /// Required output length in bytes.
        needed: usize,
    },
    /// The data ends inside a record, or before the end record: a torn or truncated
    /// write.
    Truncated,
    /// A record's checksum does not match its contents: the data is corrupt.
    Checksum,
    /// The data does not start with a Seguro header: not a Seguro file.
    NotSeguro,
    /// A Seguro file of another type (e.g. a contact list where an identity was
    /// expected).
    WrongFileType {
        /// The type found (see [`file_type`]).
        found: u8,
    },
    /// A record (or the file container, kind 0) of a version this build cannot read:
    /// written by a newer Seguro.
    UnsupportedVersion {
        /// The record kind.
        kind: u8,
        /// Its version.
        version: u8,
    },
    /// A record's checksum is right but its body does not parse (wrong lengths, bad
    /// UTF-8, unknown flags, a record count that does not match).
    Malformed {
        /// The record kind.
        kind: u8,
    },
    /// There are bytes after the end record.
    TrailingData,
    /// A record the file must hold is absent (e.g. an identity file without identity).
    Missing {
        /// The record kind.
        kind: u8,
    },
    /// A record that may appear once appears twice (e.g. two identities, or the same
    /// contact twice).
    Duplicate {
        /// The record kind.
        kind: u8,
    },
    /// A stored public key does not belong to the stored secret key.
    KeyMismatch,
    /// A body longer than [`MAX_BODY`] bytes.
    TooLarge,
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
            Self::Truncated => f.write_str("truncated (torn or incomplete write)"),
            Self::Checksum => f.write_str("corrupt (checksum mismatch)"),
            Self::NotSeguro => f.write_str("not a Seguro state file"),
            Self::WrongFileType { found } => {
                write!(f, "a Seguro file of another type ({found})")
            }
            Self::UnsupportedVersion { kind, version } => write!(
                f,
                "written by a newer Seguro (record kind {kind:#04x} version {version})"
            ),
            Self::Malformed { kind } => write!(f, "corrupt (malformed record {kind:#04x})"),
            Self::TrailingData => f.write_str("corrupt (data after the end record)"),
            Self::Missing { kind } => write!(f, "incomplete (no record of kind {kind:#04x})"),
            Self::Duplicate { kind } => write!(f, "corrupt (duplicate record {kind:#04x})"),
            Self::KeyMismatch => f.write_str("corrupt (public key does not match secret key)"),
            Self::TooLarge => f.write_str("record too large"),
        }
    }
}

impl core::error::Error for StoreError {}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320, as zlib's `crc32`) of
/// `data`, continuing from `crc` (start with 0).
///
/// Bitwise, without a table: 8 shifts per byte, fine for kilobytes of state and
/// costing no flash for a table.
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = (c >> 1) ^ (0xEDB8_8320 & 0u32.wrapping_sub(c & 1));
        }
    }
    !c
}

/// One record as read: its kind, version and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record kind (see [`kind`]).
    pub kind: u8,
    /// Its layout version.
    pub version: u8,
    /// Its body.
    pub body: &'a [u8],
}

impl Record<'_> {
    /// The record's encoded length.
    pub fn encoded_len(&self) -> usize {
        RECORD_OVERHEAD + self.body.len()
    }

    /// Errors unless the record has `version`.
    pub fn expect_version(&self, version: u8) -> Result<(), StoreError> {
        if self.version == version {
            Ok(())
        } else {
            Err(StoreError::UnsupportedVersion {
                kind: self.kind,
                version: self.version,
            })
        }
    }
}

/// Reads one record from the start of `data`; returns it and the bytes after it.
pub fn read_record(data: &[u8]) -> Result<(Record<'_>, &[u8]), StoreError> {
    let &[kind, version, l0, l1, ..] = data else {
        return Err(StoreError::Truncated);
    };
    let len = usize::from(u16::from_le_bytes([l0, l1]));
    let total = RECORD_OVERHEAD + len;
    let rec = data.get(..total).ok_or(StoreError::Truncated)?;
    let (covered, crc) = rec.split_at(4 + len);
    let stored = match crc {
        &[a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
        _ => return Err(StoreError::Truncated),
    };
    if crc32(0, covered) != stored {
        return Err(StoreError::Checksum);
    }
    let body = covered.get(4..).unwrap_or_default();
    Ok((
        Record {
            kind,
            version,
            body,
        },
        data.get(total..).unwrap_or_default(),
    ))
}

/// Writes one record (`kind`, `version`, `body`) to the start of `out`; returns its
/// length, `body.len() + 8`.
pub fn write_record(
    out: &mut [u8],
    kind: u8,
    version: u8,
    body: &[u8],
) -> Result<usize, StoreError> {
    encode_record(out, kind, version, |b| b.bytes(body))
}

/// Writes one record whose body `f` writes to the start of `out`; returns its length
/// (or [`StoreError::BufferTooSmall`] with the length needed).
pub fn encode_record<'b>(
    out: &'b mut [u8],
    kind: u8,
    version: u8,
    f: impl FnOnce(&mut Body<'_, 'b>),
) -> Result<usize, StoreError> {
    let mut w = Encoder::new(out);
    w.record(kind, version, f);
    w.finish()
}

/// Builds the body of one record.
pub struct Body<'e, 'b> {
    enc: &'e mut Encoder<'b>,
}

impl Body<'_, '_> {
    /// Appends bytes.
    pub fn bytes(&mut self, data: &[u8]) {
        self.enc.put(data);
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.enc.put(&[v]);
    }

    /// Appends a little-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.enc.put(&v.to_le_bytes());
    }

    /// Appends a little-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.enc.put(&v.to_le_bytes());
    }

    /// Appends a name: one length byte, then its UTF-8 bytes. Names longer than 255
    /// bytes cannot be encoded and make the whole write fail.
    pub fn name(&mut self, name: &str) {
        match u8::try_from(name.len()) {
            Ok(n) => {
                self.u8(n);
                self.bytes(name.as_bytes());
            }
            Err(_) => self.enc.failed = Some(StoreError::TooLarge),
        }
    }
}

/// Writes records into a caller buffer, counting what does not fit so that one
/// attempt with any buffer (even an empty one) reports the size needed.
struct Encoder<'b> {
    out: &'b mut [u8],
    /// Bytes produced so far (also past the end of `out`).
    len: usize,
    failed: Option<StoreError>,
}

impl<'b> Encoder<'b> {
    fn new(out: &'b mut [u8]) -> Self {
        Self {
            out,
            len: 0,
            failed: None,
        }
    }

    fn put(&mut self, data: &[u8]) {
        if let Some(dst) = self.out.get_mut(self.len..self.len + data.len()) {
            dst.copy_from_slice(data);
        }
        self.len += data.len();
    }

    fn record(&mut self, kind: u8, version: u8, f: impl FnOnce(&mut Body<'_, 'b>)) {
        let start = self.len;
        self.put(&[kind, version, 0, 0]);
        f(&mut Body { enc: self });
        let body_len = self.len - start - 4;
        let Ok(len16) = u16::try_from(body_len) else {
            self.failed = Some(StoreError::TooLarge);
            return;
        };
        if let Some(l) = self.out.get_mut(start + 2..start + 4) {
            l.copy_from_slice(&len16.to_le_bytes());
        }
        let crc = self
            .out
            .get(start..self.len)
            .map(|covered| crc32(0, covered))
            .unwrap_or(0);
        self.put(&crc.to_le_bytes());
    }

    fn finish(self) -> Result<usize, StoreError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.len > self.out.len() {
            return Err(StoreError::BufferTooSmall { needed: self.len });
        }
        Ok(self.len)
    }
}

/// Writes a file: the header at creation, records, the end record at
/// [`finish`](Self::finish).
///
/// Nothing fails until `finish`, which returns the file's length or
/// [`StoreError::BufferTooSmall`] with the length needed (so a host may first write
/// into an empty buffer to learn the size).
pub struct Writer<'b> {
    enc: Encoder<'b>,
    records: u32,
}

impl<'b> Writer<'b> {
    /// Starts a file of type `file_type` in `out`.
    pub fn new(out: &'b mut [u8], file_type: u8) -> Self {
        let mut enc = Encoder::new(out);
        enc.record(kind::HEADER, 1, |b| {
            b.bytes(MAGIC);
            b.u8(file_type);
        });
        Self { enc, records: 0 }
    }

    /// Appends a record whose body `f` writes.
    pub fn record(&mut self, kind: u8, version: u8, f: impl FnOnce(&mut Body<'_, 'b>)) {
        self.enc.record(kind, version, f);
        self.records = self.records.saturating_add(1);
    }

    /// Appends a record as it was read (to keep records of kinds this build does not
    /// know when rewriting a file).
    pub fn raw(&mut self, record: &Record<'_>) {
        self.record(record.kind, record.version, |b| b.bytes(record.body));
    }

    /// Writes the end record; returns the file's length.
    pub fn finish(mut self) -> Result<usize, StoreError> {
        let n = self.records;
        self.enc.record(kind::END, 1, |b| b.u32(n));
        self.enc.finish()
    }
}

/// Reads a file record by record, checking the header, every checksum, the end record
/// and that nothing follows it.
pub struct Reader<'a> {
    rest: &'a [u8],
    records: u32,
    done: bool,
}

impl<'a> Reader<'a> {
    /// Checks the header of `data` (it must be a file of type `file_type`).
    pub fn new(data: &'a [u8], file_type: u8) -> Result<Self, StoreError> {
        // Tell "not ours" apart from "ours but cut short" before checking the CRC.
        let magic_at = data.get(4..).unwrap_or_default();
        let magic_seen = magic_at.len().min(MAGIC.len());
        if data.first().is_some_and(|k| *k != kind::HEADER)
            || magic_at.get(..magic_seen) != MAGIC.get(..magic_seen)
        {
            return Err(StoreError::NotSeguro);
        }
        let (header, rest) = read_record(data)?;
        if header.body.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
            return Err(StoreError::NotSeguro);
        }
        header.expect_version(1)?;
        match header.body {
            [_, _, _, _, _, _, t] if *t == file_type => Ok(Self {
                rest,
                records: 0,
                done: false,
            }),
            [_, _, _, _, _, _, t] => Err(StoreError::WrongFileType { found: *t }),
            _ => Err(StoreError::Malformed { kind: kind::HEADER }),
        }
    }

    /// The next record, or `None` after a valid end record. Once an error is
    /// returned, the file must be considered unusable.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record<'a>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        if self.rest.is_empty() {
            return Err(StoreError::Truncated);
        }
        let (rec, rest) = read_record(self.rest)?;
        self.rest = rest;
        if rec.kind == kind::END {
            rec.expect_version(1)?;
            let count = match rec.body {
                [a, b, c, d] => u32::from_le_bytes([*a, *b, *c, *d]),
                _ => return Err(StoreError::Malformed { kind: kind::END }),
            };
            if count != self.records {
                return Err(StoreError::Malformed { kind: kind::END });
            }
            if !self.rest.is_empty() {
                return Err(StoreError::TrailingData);
            }
            self.done = true;
            return Ok(None);
        }
        if rec.kind == kind::HEADER {
            return Err(StoreError::Duplicate { kind: kind::HEADER });
        }
        self.records = self.records.saturating_add(1);
        Ok(Some(rec))
    }
}

/// Parses a record body field by field; every read is bounds-checked.
#[derive(Debug)]
pub struct Cursor<'a> {
    data: &'a [u8],
    kind: u8,
}

impl<'a> Cursor<'a> {
    /// A cursor over `record`'s body.
    pub fn new(record: &Record<'a>) -> Self {
        Self {
            data: record.body,
            kind: record.kind,
        }
    }

    fn bad(&self) -> StoreError {
        StoreError::Malformed { kind: self.kind }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if n > self.data.len() {
            return Err(self.bad());
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A name written by [`Body::name`]: non-empty, at most [`MAX_NAME_BYTES`] bytes,
    /// valid UTF-8.
    pub fn name(&mut self) -> Result<String<MAX_NAME_BYTES>, StoreError> {
        let n = usize::from(self.u8()?);
        if n == 0 || n > MAX_NAME_BYTES {
            return Err(self.bad());
        }
        let bytes = self.bytes(n)?;
        let text = core::str::from_utf8(bytes).map_err(|_| self.bad())?;
        let mut name = String::new();
        name.push_str(text).map_err(|_| self.bad())?;
        Ok(name)
    }

    /// Errors unless the whole body was read.
    pub fn end(&self) -> Result<(), StoreError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(self.bad())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(0, b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(0, b""), 0);
        // Incremental equals one-shot.
        assert_eq!(crc32(crc32(0, b"1234"), b"56789"), 0xCBF4_3926);
    }

    #[test]
    fn record_layout() {
        let mut out = [0u8; 16];
        let n = write_record(&mut out, 0x42, 3, b"abc").unwrap();
        assert_eq!(n, 11);
        assert_eq!(&out[..7], &[0x42, 3, 3, 0, b'a', b'b', b'c']);
        assert_eq!(out[7..11], crc32(0, &out[..7]).to_le_bytes());
        let (rec, rest) = read_record(&out[..n]).unwrap();
        assert_eq!(
            rec,
            Record {
                kind: 0x42,
                version: 3,
                body: b"abc"
            }
        );
        assert!(rest.is_empty());
        assert_eq!(
            write_record(&mut [0u8; 10], 1, 1, b"abc"),
            Err(StoreError::BufferTooSmall { needed: 11 })
        );
    }

    #[test]
    fn file_layout_and_errors() {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf, file_type::TRUST);
        w.record(0x50, 1, |b| b.bytes(b"xy"));
        let n = w.finish().unwrap();
        assert_eq!(n, HEADER_LEN + 10 + END_LEN);
        assert_eq!(&buf[4..10], MAGIC);
        let data = &buf[..n];
        let mut r = Reader::new(data, file_type::TRUST).unwrap();
        assert_eq!(r.next().unwrap().unwrap().body, b"xy");
        assert_eq!(r.next(), Ok(None));
        assert_eq!(r.next(), Ok(None));
        assert!(matches!(
            Reader::new(data, file_type::IDENTITY),
            Err(StoreError::WrongFileType { found: 2 })
        ));
        assert!(matches!(
            Reader::new(b"hello world, not ours", 2),
            Err(StoreError::NotSeguro)
        ));
        assert!(matches!(
            Reader::new(&data[..5], 2),
            Err(StoreError::Truncated)
        ));
        for cut in HEADER_LEN..n {
            let mut r = Reader::new(&data[..cut], 2).unwrap();
            let res = (|| {
                while r.next()?.is_some() {}
                Ok::<_, StoreError>(())
            })();
            assert!(res.is_err(), "cut at {cut}");
        }
        let mut longer = [0u8; 64];
        longer[..n].copy_from_slice(data);
        let mut r = Reader::new(&longer[..n + 1], 2).unwrap();
        r.next().unwrap();
        assert_eq!(r.next(), Err(StoreError::TrailingData));
        // Sizing with an empty buffer.
        let mut w = Writer::new(&mut [], 2);
        w.record(0x50, 1, |b| b.bytes(b"xy"));
        assert_eq!(w.finish(), Err(StoreError::BufferTooSmall { needed: n }));
    }

    #[test]
    fn cursor_checks_bounds_and_names() {
        let mut buf = [0u8; 64];
        let n = write_record(&mut buf, 1, 1, &[3, b'b', b'o', b'b', 7, 0, 0, 0]).unwrap();
        let (rec, _) = read_record(&buf[..n]).unwrap();
        let mut c = Cursor::new(&rec);
        assert_eq!(c.name().unwrap().as_str(), "bob");
        assert!(c.end().is_err());
        assert_eq!(c.u32().unwrap(), 7);
        c.end().unwrap();
        assert_eq!(c.u8(), Err(StoreError::Malformed { kind: 1 }));
        for body in [&[0u8][..], &[2, 0xff, 0xfe], &[5, b'a']] {
            let n = write_record(&mut buf, 1, 1, body).unwrap();
            let (rec, _) = read_record(&buf[..n]).unwrap();
            assert!(Cursor::new(&rec).name().is_err(), "{body:?}");
        }
    }
}
