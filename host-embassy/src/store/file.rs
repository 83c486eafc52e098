//! A file as NOR flash, for the Linux runner and tests (feature `std`).
//!
//! It behaves like the strictest internal flash: erasing sets a whole page
//! ([`ERASE_SIZE`] bytes) to `0xFF`; a write must be aligned to and a multiple of the
//! word ([`WRITE_SIZE`] bytes) and may only go to words that are erased (`0xFF…`), so a
//! word is written once between erases and bits only go from 1 to 0. Reads are
//! byte-granular. Every operation goes to the file at once (positioned writes, no
//! cache), so killing the process leaves the file as a board's flash would be after a
//! power cut between two operations.
//!
//! [`CutFlash`] wraps any flash and simulates a power cut in the middle of its K-th
//! operation (a write programs half of its words and half the bits of the next one; an
//! erase clears half the page), after which every operation fails.

extern crate std;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::vec;

use embedded_storage_async::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Erase page size of the file flash.
pub const ERASE_SIZE: usize = 4096;
/// Write word size of the file flash.
pub const WRITE_SIZE: usize = 4;

/// Why a file flash operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFlashError {
    /// Offset or length not aligned to the word or page.
    NotAligned,
    /// Beyond the end of the flash.
    OutOfBounds,
    /// A write to a word that is not erased.
    NotErased,
    /// The file could not be read or written.
    Io,
    /// (CutFlash) the power is off.
    PowerCut,
}

impl NorFlashError for FileFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// A file of `pages × 4096` bytes used as NOR flash. Reads come from a copy in memory;
/// every write and erase goes to the file before it returns.
#[derive(Debug)]
pub struct FileFlash {
    file: File,
    size: u32,
    image: std::vec::Vec<u8>,
}

impl FileFlash {
    /// Opens `path`, creating it erased (all `0xFF`, mode 0600) with `pages` pages if it
    /// does not exist. An existing file must have exactly that size.
    pub fn open(path: &Path, pages: u32) -> std::io::Result<Self> {
        let size = pages
            .checked_mul(ERASE_SIZE as u32)
            .ok_or_else(|| std::io::Error::other("flash too large"))?;
        let mut o = OpenOptions::new();
        o.read(true).write(true).create(true).truncate(false);
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let file = o.open(path)?;
        let len = file.metadata()?.len();
        let mut image = vec![0xFF; size as usize];
        if len == 0 {
            file.write_all_at(&image, 0)?;
            file.sync_all()?;
        } else if len != u64::from(size) {
            return Err(std::io::Error::other(std::format!(
                "{} is {len} bytes, not a flash image of {size} bytes",
                path.display()
            )));
        } else {
            file.read_exact_at(&mut image, 0)?;
        }
        Ok(Self { file, size, image })
    }

    /// The flash size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<(), FileFlashError> {
        let end = u64::from(offset) + len as u64;
        if end > u64::from(self.size) {
            return Err(FileFlashError::OutOfBounds);
        }
        if !(offset as usize).is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(FileFlashError::NotAligned);
        }
        Ok(())
    }

    fn read_now(&self, offset: u32, bytes: &mut [u8]) -> Result<(), FileFlashError> {
        self.check(offset, bytes.len(), 1)?;
        let src = self
            .image
            .get(offset as usize..offset as usize + bytes.len())
            .ok_or(FileFlashError::OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }

    fn put(&mut self, offset: u32, data: &[u8]) -> Result<(), FileFlashError> {
        self.file
            .write_all_at(data, u64::from(offset))
            .map_err(|_| FileFlashError::Io)?;
        if let Some(dst) = self
            .image
            .get_mut(offset as usize..offset as usize + data.len())
        {
            dst.copy_from_slice(data);
        }
        Ok(())
    }

    /// Programs `bytes` at `offset` (word aligned, erased words only). `partial`
    /// (for [`CutFlash`]) programs only the first `partial` words fully and half the
    /// bits of the next one.
    fn write_now(
        &mut self,
        offset: u32,
        bytes: &[u8],
        partial: Option<usize>,
    ) -> Result<(), FileFlashError> {
        self.check(offset, bytes.len(), WRITE_SIZE)?;
        let mut current = vec![0u8; bytes.len()];
        self.read_now(offset, &mut current)?;
        // A programmed word cannot be written again before an erase (writing all ones
        // changes nothing and is allowed).
        for (old, new) in current.chunks(WRITE_SIZE).zip(bytes.chunks(WRITE_SIZE)) {
            if old.iter().any(|b| *b != 0xFF) && new.iter().any(|b| *b != 0xFF) {
                return Err(FileFlashError::NotErased);
            }
        }
        let mut out = bytes.to_vec();
        if let Some(words) = partial {
            let full = words * WRITE_SIZE;
            for (i, b) in out.iter_mut().enumerate().skip(full) {
                // The word being programmed when power failed gets only some of its
                // zero bits; the words after it stay erased.
                *b = if i < full + WRITE_SIZE {
                    *b | 0x0F
                } else {
                    0xFF
                };
            }
        }
        self.put(offset, &out)
    }

    /// Erases `[from, to)` (page aligned). `partial` erases only the first half of
    /// the first page.
    fn erase_now(&mut self, from: u32, to: u32, partial: bool) -> Result<(), FileFlashError> {
        if to < from {
            return Err(FileFlashError::OutOfBounds);
        }
        self.check(from, (to - from) as usize, ERASE_SIZE)?;
        let len = if partial {
            ERASE_SIZE / 2
        } else {
            (to - from) as usize
        };
        self.put(from, &vec![0xFF; len])
    }
}

impl ErrorType for FileFlash {
    type Error = FileFlashError;
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.read_now(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.size as usize
    }
}

impl NorFlash for FileFlash {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = ERASE_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.erase_now(from, to, false)
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.write_now(offset, bytes, None)
    }
}

/// A [`FileFlash`] whose power fails in the middle of its operation number `cut_at`
/// (counting writes and erases from 0; reads are not counted and fail once the power
/// is off).
#[derive(Debug)]
pub struct CutFlash {
    inner: FileFlash,
    /// The operation that is cut, if any.
    pub cut_at: Option<u64>,
    /// Writes and erases started so far.
    pub ops: u64,
    /// Erases started so far.
    pub erases: u64,
    /// True once the power is off.
    pub dead: bool,
}

impl CutFlash {
    /// Wraps `inner`; `cut_at: None` never cuts (to count a run's operations).
    pub fn new(inner: FileFlash, cut_at: Option<u64>) -> Self {
        Self {
            inner,
            cut_at,
            ops: 0,
            erases: 0,
            dead: false,
        }
    }

    /// The flash back, powered again.
    pub fn into_inner(self) -> FileFlash {
        self.inner
    }

    /// Counts an operation; true if this is the one that gets cut.
    fn start(&mut self) -> Result<bool, FileFlashError> {
        if self.dead {
            return Err(FileFlashError::PowerCut);
        }
        let n = self.ops;
        self.ops += 1;
        Ok(self.cut_at == Some(n))
    }
}

impl ErrorType for CutFlash {
    type Error = FileFlashError;
}

impl ReadNorFlash for CutFlash {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        if self.dead {
            return Err(FileFlashError::PowerCut);
        }
        self.inner.read_now(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.inner.size as usize
    }
}

impl NorFlash for CutFlash {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = ERASE_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.erases += u64::from(!self.dead);
        if self.start()? {
            self.dead = true;
            self.inner.erase_now(from, to, true)?;
            return Err(FileFlashError::PowerCut);
        }
        self.inner.erase_now(from, to, false)
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if self.start()? {
            self.dead = true;
            self.inner
                .write_now(offset, bytes, Some(bytes.len() / WRITE_SIZE / 2))?;
            return Err(FileFlashError::PowerCut);
        }
        self.inner.write_now(offset, bytes, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> std::path::PathBuf {
        let p =
            std::env::temp_dir().join(std::format!("seguro-flash-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn nor_rules() {
        let p = temp("rules");
        let mut f = FileFlash::open(&p, 2).unwrap();
        embassy_futures::block_on(async {
            let mut b = [0u8; 8];
            f.read(4090, &mut b[..6]).await.unwrap();
            assert_eq!(b[..6], [0xFF; 6]);
            f.write(8, &[1, 2, 3, 4]).await.unwrap();
            assert_eq!(
                f.write(8, &[0, 0, 0, 0]).await,
                Err(FileFlashError::NotErased)
            );
            assert_eq!(f.write(9, &[0; 4]).await, Err(FileFlashError::NotAligned));
            assert_eq!(f.write(12, &[0; 3]).await, Err(FileFlashError::NotAligned));
            assert_eq!(
                f.write(8192, &[0; 4]).await,
                Err(FileFlashError::OutOfBounds)
            );
            assert_eq!(f.erase(1, 4096).await, Err(FileFlashError::NotAligned));
            f.read(8, &mut b[..4]).await.unwrap();
            assert_eq!(b[..4], [1, 2, 3, 4]);
            f.erase(0, 4096).await.unwrap();
            f.read(8, &mut b[..4]).await.unwrap();
            assert_eq!(b[..4], [0xFF; 4]);
            f.write(8, &[0, 0, 0, 0]).await.unwrap();
        });
        drop(f);
        assert!(FileFlash::open(&p, 3).is_err());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn cut_flash_cuts_in_the_middle_then_stays_dead() {
        let p = temp("cut");
        let f = FileFlash::open(&p, 2).unwrap();
        let mut c = CutFlash::new(f, Some(1));
        embassy_futures::block_on(async {
            c.write(0, &[0; 8]).await.unwrap();
            assert_eq!(c.write(8, &[0; 16]).await, Err(FileFlashError::PowerCut));
            let mut b = [0u8; 4];
            assert_eq!(c.read(0, &mut b).await, Err(FileFlashError::PowerCut));
        });
        let mut f = c.into_inner();
        embassy_futures::block_on(async {
            let mut b = [0u8; 24];
            f.read(0, &mut b).await.unwrap();
            assert_eq!(b[..8], [0; 8]);
            assert_eq!(b[8..16], [0; 8]); // the first half of the cut write
            assert_eq!(b[16..20], [0x0F; 4]); // half programmed
            assert_eq!(b[20..24], [0xFF; 4]); // never reached
        });
        let _ = std::fs::remove_file(&p);
    }
}
