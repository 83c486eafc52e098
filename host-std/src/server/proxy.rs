//! The PROXY protocol (HAProxy's, versions 1 and 2), as a tunnel or load balancer
//! sends it before the client's bytes: the real client address.
//!
//! The header is read exactly (never a byte of the TLS handshake after it): v1 up to
//! its `\r\n` (at most 107 bytes), v2 its 16-byte preamble then the length it states.
//! The parsing itself is the `ppp` crate's.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use smol::io::{AsyncRead, AsyncReadExt};

/// Longest v1 header, `\r\n` included (the specification's figure).
const V1_MAX: usize = 107;
/// The v2 signature.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v2 address block (with TLVs) accepted: tunnels send a few dozen bytes.
pub const V2_MAX_BODY: usize = 1024;

/// Where a connection comes from, per its PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's address and port.
    Client(SocketAddr),
    /// No client address: v2 `LOCAL` (the proxy's own health check) or v1 `UNKNOWN`, or
    /// an address family other than TCP over IPv4/IPv6. The peer's address stands.
    Local,
}

/// Why a header was refused.
#[derive(Debug)]
pub enum HeaderError {
    /// The connection does not start with a PROXY header.
    Missing {
        /// What it starts with, for the log (`TLS` if it looks like a TLS handshake).
        looks_like: &'static str,
    },
    /// A v1 header longer than the maximum.
    V1TooLong,
    /// A v2 header announcing more than [`V2_MAX_BODY`] bytes.
    V2TooLong(usize),
    /// A header the parser refused.
    Invalid(String),
    /// The connection ended or failed before the header did.
    Io(std::io::Error),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { looks_like } => write!(
                f,
                "no PROXY protocol header (--proxy-protocol is set; the connection starts \
                 with {looks_like}: is it reaching the server around the proxy?)"
            ),
            Self::V1TooLong => write!(f, "PROXY v1 header longer than {V1_MAX} bytes"),
            Self::V2TooLong(n) => {
                write!(f, "PROXY v2 header of {n} bytes (at most {V2_MAX_BODY})")
            }
            Self::Invalid(e) => write!(f, "invalid PROXY header: {e}"),
            Self::Io(e) => write!(f, "connection ended inside the PROXY header: {e}"),
        }
    }
}

impl From<std::io::Error> for HeaderError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

fn looks_like(first: &[u8]) -> &'static str {
    match first {
        [0x16, 0x03, ..] => "a TLS handshake",
        [] => "nothing",
        _ => "other bytes",
    }
}

/// Reads one PROXY header (v1 or v2) from `rd`, and not a byte more.
pub async fn read_header<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Source, HeaderError> {
    // "PROXY " (v1) and the first 6 bytes of the v2 signature are both 6 bytes, and
    // the shortest v1 header is 15: reading 6 never reads past a header.
    let mut head = [0u8; 6];
    let mut got = 0;
    while got < head.len() {
        let n = rd.read(&mut head[got..]).await?;
        if n == 0 {
            return Err(HeaderError::Missing {
                looks_like: looks_like(&head[..got]),
            });
        }
        got += n;
        if !b"PROXY ".starts_with(&head[..got]) && !V2_SIG.starts_with(&head[..got]) {
            return Err(HeaderError::Missing {
                looks_like: looks_like(&head[..got]),
            });
        }
    }
    if &head == b"PROXY " {
        read_v1(rd).await
    } else {
        read_v2(rd, head).await
    }
}

async fn read_v1<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Source, HeaderError> {
    let mut line = b"PROXY ".to_vec();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(HeaderError::V1TooLong);
        }
        rd.read_exact(&mut b).await?;
        line.push(b[0]);
    }
    let text = std::str::from_utf8(&line).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    let header =
        ppp::v1::Header::try_from(text).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    Ok(match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => {
            Source::Client(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v1::Addresses::Tcp6(a) => {
            Source::Client(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        ppp::v1::Addresses::Unknown => Source::Local,
    })
}

async fn read_v2<R: AsyncRead + Unpin>(rd: &mut R, head: [u8; 6]) -> Result<Source, HeaderError> {
    let mut buf = vec![0u8; 16];
    buf[..6].copy_from_slice(&head);
    rd.read_exact(&mut buf[6..]).await?;
    if buf[..12] != V2_SIG[..] {
        return Err(HeaderError::Missing {
            looks_like: "other bytes",
        });
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > V2_MAX_BODY {
        return Err(HeaderError::V2TooLong(len));
    }
    buf.resize(16 + len, 0);
    rd.read_exact(&mut buf[16..]).await?;
    let header =
        ppp::v2::Header::try_from(&buf[..]).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    if header.command == ppp::v2::Command::Local {
        return Ok(Source::Local);
    }
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            Source::Client(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::IPv6(a) => {
            Source::Client(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::Unix(_) | ppp::v2::Addresses::Unspecified => Source::Local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> (Result<Source, HeaderError>, Vec<u8>) {
        let mut rd = bytes;
        let r = smol::block_on(read_header(&mut rd));
        (r, rd.to_vec())
    }

    fn v2(cmd: ppp::v2::Command, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | cmd,
            ppp::v2::Protocol::Stream,
            (src, dst),
        )
        .write_tlv(ppp::v2::Type::NoOp, b"pad")
        .unwrap()
        .build()
        .unwrap()
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown_and_nothing_more_is_read() {
        let (r, rest) = read(b"PROXY TCP4 203.0.113.9 192.0.2.1 40000 5000\r\n\x16\x03\x01");
        assert_eq!(
            r.unwrap(),
            Source::Client("203.0.113.9:40000".parse().unwrap())
        );
        assert_eq!(rest, b"\x16\x03\x01");
        let (r, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 1234 5000\r\n");
        assert_eq!(
            r.unwrap(),
            Source::Client("[2001:db8::7]:1234".parse().unwrap())
        );
        let (r, rest) = read(b"PROXY UNKNOWN\r\nX");
        assert_eq!(r.unwrap(), Source::Local);
        assert_eq!(rest, b"X");
    }

    #[test]
    fn v2_proxy_and_local_and_nothing_more_is_read() {
        let src: SocketAddr = "198.51.100.4:5555".parse().unwrap();
        let dst: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let mut h = v2(ppp::v2::Command::Proxy, src, dst);
        h.extend_from_slice(b"\x16\x03");
        let (r, rest) = read(&h);
        assert_eq!(r.unwrap(), Source::Client(src));
        assert_eq!(rest, b"\x16\x03");
        let src6: SocketAddr = "[2001:db8::9]:77".parse().unwrap();
        let dst6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let (r, _) = read(&v2(ppp::v2::Command::Proxy, src6, dst6));
        assert_eq!(r.unwrap(), Source::Client(src6));
        let (r, _) = read(&v2(ppp::v2::Command::Local, src, dst));
        assert_eq!(r.unwrap(), Source::Local);
    }

    #[test]
    fn refusals_say_why() {
        let (r, _) = read(b"\x16\x03\x01\x02\x00\x01\x00");
        let e = r.unwrap_err();
        assert!(e.to_string().contains("no PROXY protocol header"), "{e}");
        assert!(e.to_string().contains("a TLS handshake"), "{e}");
        let (r, _) = read(b"GET / HTTP/1.1\r\n");
        assert!(matches!(
            r,
            Err(HeaderError::Missing {
                looks_like: "other bytes"
            })
        ));
        let (r, _) = read(b"");
        assert!(matches!(
            r,
            Err(HeaderError::Missing {
                looks_like: "nothing"
            })
        ));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(matches!(
            read(long.as_bytes()).0,
            Err(HeaderError::V1TooLong)
        ));
        let (r, _) = read(b"PROXY TCP4 not-an-address 192.0.2.1 1 2\r\n");
        assert!(matches!(r, Err(HeaderError::Invalid(_))), "{r:?}");
        let (r, _) = read(b"PROXY TCP4 203.0.113.9 192.0.2.1 40000");
        assert!(matches!(r, Err(HeaderError::Io(_))), "{r:?}");
        let mut big = V2_SIG.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(read(&big).0, Err(HeaderError::V2TooLong(65535))));
        // A v2 header whose address block is shorter than its family needs.
        let mut short = V2_SIG.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert!(matches!(read(&short).0, Err(HeaderError::Invalid(_))));
    }
}
