//! `serve --proxy-protocol` and the per-source limits, against the real server: clients
//! that send PROXY v1 and v2 headers before TLS, a spoof that skips the header, and a
//! flood from one source while another still gets in.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use common::*;
use rustls::pki_types::CertificateDer;

/// A TLS connection opened after a PROXY header.
struct Proxied {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

/// The v1 header of a TCP4 client.
fn v1(src: &str) -> Vec<u8> {
    let a: SocketAddr = src.parse().unwrap();
    format!("PROXY TCP4 {} 192.0.2.1 {} 5000\r\n", a.ip(), a.port()).into_bytes()
}

/// The v2 header (PROXY command, TCP over IPv6) of `src`, written out by hand from the
/// specification, with one NOOP TLV.
fn v2_tcp6(src: SocketAddr) -> Vec<u8> {
    let SocketAddr::V6(s) = src else { panic!() };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x21); // AF_INET6, STREAM
    let tlv = [0x04u8, 0x00, 0x02, 0xaa, 0xbb];
    h.extend_from_slice(&u16::try_from(36 + tlv.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&5000u16.to_be_bytes());
    h.extend_from_slice(&tlv);
    h
}

/// Connects, sends `header`, then opens TLS. `Err` if the server closed the connection
/// instead (the handshake failed).
fn connect(port: u16, header: &[u8], pinned: CertificateDer<'static>) -> Result<Proxied, String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    tcp.set_write_timeout(Some(T)).unwrap();
    tcp.write_all(header).unwrap();
    let cfg = seguro::tls::client_config(pinned).unwrap();
    let conn = rustls::ClientConnection::new(cfg, seguro::tls::server_name()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let deadline = Instant::now() + T;
    while tls.conn.is_handshaking() {
        match tls.conn.complete_io(&mut tls.sock) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && Instant::now() < deadline => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(Proxied {
        tls,
        buf: Vec::new(),
    })
}

impl Proxied {
    fn line(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut b = [0u8; 4096];
            match self.tls.read(&mut b) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// Sends `hello` as `user`; the first line back.
    fn hello(&mut self, user: &str) -> String {
        let key = [9u8; 32];
        let hello = format!(
            "{{\"type\":\"hello\",\"user\":\"{user}\",\"pub\":\"{}\"}}\n",
            Base64::encode_string(&key)
        );
        self.tls.write_all(hello.as_bytes()).unwrap();
        self.tls.flush().unwrap();
        self.line(T).unwrap_or_default()
    }
}

/// Registers `user` through a PROXY header; panics unless welcomed.
fn join(server: &Server, header: &[u8], user: &str) -> Proxied {
    let mut c = connect(server.port(), header, server.pinned()).expect("TLS after the header");
    let w = c.hello(user);
    assert!(w.contains("\"welcome\""), "{user}: {w}");
    c
}

fn proxy_server(dir: &TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--proxy-protocol"];
    args.extend_from_slice(extra);
    let s = Server::start_logging(
        &dir.path("server.crt"),
        &dir.path("server.key"),
        &args,
        "info",
    );
    s.out.wait("the PROXY protocol note", T, |l| {
        l.contains("PROXY protocol: every connection")
    });
    s
}

#[test]
fn v1_and_v2_headers_carry_the_real_address_into_the_logs() {
    let dir = TempDir::new("proxy-v1v2");
    let server = proxy_server(&dir, &[]);
    let _a = join(&server, &v1("203.0.113.7:41000"), "alice");
    server.err.wait("alice's join", T, |l| {
        l.contains("203.0.113.7:41000") && l.contains("alice") && l.contains("joined")
    });
    let six: SocketAddr = "[2001:db8:77::5]:52000".parse().unwrap();
    let mut b = join(&server, &v2_tcp6(six), "bob");
    server.err.wait("bob's join", T, |l| {
        l.contains("[2001:db8:77::5]:52000") && l.contains("bob") && l.contains("joined")
    });
    // They chat as usual: the header changed nothing after it.
    b.tls
        .write_all(b"{\"type\":\"chat\",\"text\":\"hi\"}\n")
        .unwrap();
    let mut echo = String::new();
    for _ in 0..5 {
        echo = b.line(T).unwrap_or_default();
        if echo.contains("echo") {
            break;
        }
    }
    assert!(echo.contains("echo: hi"), "{echo}");
    drop(b);
    server.err.wait("bob's leave", T, |l| {
        l.contains("[2001:db8:77::5]:52000") && l.contains("left")
    });
    // A v2 LOCAL header (the proxy's own health check) keeps the peer's address.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    let _c = join(&server, &local, "carol");
    server.err.wait("carol's join", T, |l| {
        l.contains("127.0.0.1:") && l.contains("carol") && l.contains("joined")
    });
    assert!(!server.err.contains("203.0.113.7:41000 left"));
}

#[test]
fn a_connection_without_a_header_is_refused_with_a_logged_reason() {
    let dir = TempDir::new("proxy-spoof");
    let mut server = proxy_server(&dir, &[]);
    // Straight TLS, as a client reaching the port around the proxy would.
    let r = connect(server.port(), b"", server.pinned());
    assert!(r.is_err(), "a TLS handshake without a header must fail");
    server.err.wait("the refusal", T, |l| {
        l.contains("refused: no PROXY protocol header") && l.contains("a TLS handshake")
    });
    // A header that lies about its own syntax.
    let r = connect(
        server.port(),
        b"PROXY TCP4 999.1.1.1 192.0.2.1 1 2\r\n",
        server.pinned(),
    );
    assert!(r.is_err());
    server.err.wait("the invalid header", T, |l| {
        l.contains("invalid PROXY header")
    });
    // Plain text (an HTTP probe).
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut b = [0u8; 16];
    assert!(
        matches!(tcp.read(&mut b), Ok(0) | Err(_)),
        "closed without answer"
    );
    server.err.wait("the probe", T, |l| {
        l.contains("refused: no PROXY protocol header") && l.contains("other bytes")
    });
    // The desktop client (which sends no header) gets a clear failure, not a hang.
    let chat = Chat::start("dave", server.port(), &dir.path("server.crt"), &[]);
    let (code, out) = chat.finish();
    assert_ne!(code, Some(0), "{:?}", out.all());
    assert!(!out.contains("[SYS] connected"), "{:?}", out.all());
    // The server still serves proper clients.
    let _ok = join(&server, &v1("203.0.113.8:1000"), "erin");
    server.assert_alive();
}

#[test]
fn the_n_plus_first_connection_of_one_source_is_refused_while_another_gets_in() {
    let dir = TempDir::new("proxy-per-source");
    let server = proxy_server(
        &dir,
        &["--max-per-source", "3", "--handshakes-per-source", "0"],
    );
    let mut held: Vec<Proxied> = (0..3)
        .map(|i| {
            join(
                &server,
                &v1(&format!("198.51.100.20:{}", 2000 + i)),
                &format!("u{i}"),
            )
        })
        .collect();
    // The fourth from the same address: closed before TLS.
    let r = connect(server.port(), &v1("198.51.100.20:2999"), server.pinned());
    assert!(
        r.is_err(),
        "the fourth connection of one source must be refused"
    );
    server.err.wait("the refusal", T, |l| {
        l.contains("198.51.100.20:2999")
            && l.contains("3 connection(s) from this source already open")
    });
    // Another source still gets in, and so does an IPv6 client.
    let _other = join(&server, &v1("198.51.100.21:2000"), "other");
    let _six = join(
        &server,
        &v2_tcp6("[2001:db8:5::1]:4000".parse().unwrap()),
        "six",
    );
    // Once one of the three closes, the source may connect again.
    drop(held.pop());
    let deadline = Instant::now() + T;
    loop {
        match connect(server.port(), &v1("198.51.100.20:3000"), server.pinned()) {
            Ok(mut c) => {
                assert!(c.hello("again").contains("\"welcome\""));
                break;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("the source stays refused after a close: {e}"),
        }
    }
}

#[test]
fn a_source_over_its_handshake_rate_is_refused_while_another_gets_in() {
    let dir = TempDir::new("proxy-rate");
    // A burst of 3, then one new connection every 100 s: the fourth is over the rate
    // however slow this machine is.
    let server = proxy_server(
        &dir,
        &[
            "--max-per-source",
            "0",
            "--handshakes-per-source",
            "0.01",
            "--handshake-burst",
            "3",
        ],
    );
    for i in 0..3 {
        // Failed handshakes count too: these never send hello.
        let c = connect(
            server.port(),
            &v1(&format!("192.0.2.50:{}", 100 + i)),
            server.pinned(),
        );
        assert!(c.is_ok(), "within the burst");
    }
    let r = connect(server.port(), &v1("192.0.2.50:200"), server.pinned());
    assert!(r.is_err(), "over the rate");
    server.err.wait("the refusal", T, |l| {
        l.contains("192.0.2.50:200") && l.contains("new connection(s) per second from this source")
    });
    let _other = join(&server, &v1("192.0.2.51:100"), "other");
}

/// Without --proxy-protocol a header is just garbage before TLS, and loopback clients
/// (a tunnel's agent carrying everyone) are not limited per source.
#[test]
fn without_the_flag_loopback_is_not_limited_per_source() {
    let dir = TempDir::new("proxy-off");
    let server = Server::start_logging(
        &dir.path("server.crt"),
        &dir.path("server.key"),
        &["--max-per-source", "1"],
        "info",
    );
    let _a = Raw::register(server.port(), server.pinned(), "alice");
    let _b = Raw::register(server.port(), server.pinned(), "bob");
    let r = connect(server.port(), &v1("203.0.113.7:41000"), server.pinned());
    assert!(r.is_err(), "a PROXY header is not TLS");
}
