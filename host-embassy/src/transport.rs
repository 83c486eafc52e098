//! The TCP socket under embedded-tls: shared with the session loop, and aware of TLS
//! record boundaries so the loop never blocks in the middle of nothing.

use core::cell::{Cell, RefCell};
use core::fmt;

use embassy_net::tcp::TcpSocket;
use embedded_io_async::{ErrorType, Read, Write};

/// The TCP socket shared between embedded-tls (which owns this handle) and the loop
/// that waits for it to become readable.
///
/// embedded-tls reads a record header and body with several reads and is not
/// cancel-safe, so the loop never races a TLS read against a command: it waits for
/// readability (which consumes nothing) and only then reads. The two borrows of the
/// cell are therefore never alive at the same time; if they were, the TLS side would
/// get an I/O error rather than a panic.
///
/// embedded-tls's `read_buffered` also keeps reading after a record that carries no
/// application data (a NewSessionTicket right after the handshake), which would block
/// the loop until the server's next line. To avoid that, this transport follows the
/// record framing of what it hands over, and once `idle_at_boundary` is set it answers
/// a read that would start a new record with [`TransportError::NoRecord`] when no byte
/// is waiting. The record reader has consumed nothing at that point, so the
/// connection stays usable and the loop simply waits again.
pub struct Shared<'c, 's> {
    socket: &'c RefCell<TcpSocket<'s>>,
    idle_at_boundary: &'c Cell<bool>,
    framing: RecordFraming,
}

impl<'c, 's> Shared<'c, 's> {
    /// The transport over `socket`; reads that would start a record while
    /// `idle_at_boundary` is set and nothing is waiting fail with
    /// [`TransportError::NoRecord`].
    pub fn new(socket: &'c RefCell<TcpSocket<'s>>, idle_at_boundary: &'c Cell<bool>) -> Self {
        Self {
            socket,
            idle_at_boundary,
            framing: RecordFraming::default(),
        }
    }
}

/// Follows TLS record boundaries (5-byte header with a 16-bit length, then the body)
/// over a byte stream delivered in arbitrary pieces.
#[derive(Debug, Default)]
struct RecordFraming {
    /// The current record header so far.
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current record body still to come.
    body_left: usize,
}

impl RecordFraming {
    /// True between two records.
    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.body_left == 0
    }

    /// Accounts for `data`, the next bytes of the stream.
    fn track(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len());
                self.body_left -= n;
                data = data.get(n..).unwrap_or(&[]);
            } else if let (Some(&b), Some(slot)) =
                (data.first(), self.header.get_mut(self.header_len))
            {
                *slot = b;
                self.header_len += 1;
                data = data.get(1..).unwrap_or(&[]);
                if self.header_len == self.header.len() {
                    self.header_len = 0;
                    self.body_left =
                        usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                }
            } else {
                self.header_len = 0;
            }
        }
    }
}

/// Why the transport could not read or write.
#[derive(Debug, Clone, Copy)]
pub enum TransportError {
    /// The TCP socket failed.
    Tcp(embassy_net::tcp::Error),
    /// No record has started arriving (see [`Shared`]).
    NoRecord,
    /// The socket is borrowed elsewhere (never happens by construction).
    Busy,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(e) => write!(f, "{e:?}"),
            Self::NoRecord => f.write_str("no record waiting"),
            Self::Busy => f.write_str("socket busy"),
        }
    }
}

impl core::error::Error for TransportError {}

impl embedded_io_async::Error for TransportError {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        match self {
            Self::Tcp(e) => e.kind(),
            Self::NoRecord => embedded_io_async::ErrorKind::Interrupted,
            Self::Busy => embedded_io_async::ErrorKind::Other,
        }
    }
}

impl ErrorType for Shared<'_, '_> {
    type Error = TransportError;
}

impl Read for Shared<'_, '_> {
    #[allow(clippy::await_holding_refcell_ref)]
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = {
            let mut socket = self
                .socket
                .try_borrow_mut()
                .map_err(|_| TransportError::Busy)?;
            if self.idle_at_boundary.get()
                && self.framing.at_boundary()
                && !socket.can_recv()
                && socket.may_recv()
            {
                return Err(TransportError::NoRecord);
            }
            socket.read(buf).await.map_err(TransportError::Tcp)?
        };
        self.framing.track(buf.get(..n).unwrap_or(&[]));
        Ok(n)
    }
}

impl Write for Shared<'_, '_> {
    #[allow(clippy::await_holding_refcell_ref)]
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let mut socket = self
            .socket
            .try_borrow_mut()
            .map_err(|_| TransportError::Busy)?;
        socket.write(buf).await.map_err(TransportError::Tcp)
    }

    #[allow(clippy::await_holding_refcell_ref)]
    async fn flush(&mut self) -> Result<(), Self::Error> {
        let mut socket = self
            .socket
            .try_borrow_mut()
            .map_err(|_| TransportError::Busy)?;
        socket.flush().await.map_err(TransportError::Tcp)
    }
}

#[cfg(test)]
mod tests {
    use super::RecordFraming;

    fn record(len: u16) -> std::vec::Vec<u8> {
        let mut r = std::vec![23, 3, 3];
        r.extend_from_slice(&len.to_be_bytes());
        r.extend(core::iter::repeat_n(0xaa, usize::from(len)));
        r
    }

    extern crate std;

    #[test]
    fn boundaries_in_any_split() {
        let mut stream = record(3);
        stream.extend(record(0));
        stream.extend(record(300));
        // Offsets at which a record ends (a boundary), the stream start included.
        let boundaries = [0, 8, 13, stream.len()];
        for chunk in 1..=stream.len() {
            let mut f = RecordFraming::default();
            let mut at = 0;
            for piece in stream.chunks(chunk) {
                f.track(piece);
                at += piece.len();
                assert_eq!(
                    f.at_boundary(),
                    boundaries.contains(&at),
                    "chunk {chunk}, at {at}"
                );
            }
            assert!(f.at_boundary());
        }
    }

    #[test]
    fn partial_header_is_not_a_boundary() {
        let mut f = RecordFraming::default();
        f.track(&[23, 3]);
        assert!(!f.at_boundary());
        f.track(&[3, 0, 1]);
        assert!(!f.at_boundary());
        f.track(&[9]);
        assert!(f.at_boundary());
    }
}
