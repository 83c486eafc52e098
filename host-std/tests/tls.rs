//! TLS: pinning by certificate and by key (wrong certificate, impostor key, in TLS 1.3
//! and TLS 1.2, desktop and board clients), suites and
//! groups, max fragment size.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[test]
fn a_wrong_certificate_is_refused_with_both_fingerprints() {
    let dir = TempDir::new("wrongcert");
    let server = Server::start(&dir, &[]);
    let other = dir.gen_cert("other");
    let chat = Chat::start("alice", server.port(), &other, &[]);
    let (code, out) = chat.finish();
    assert_eq!(code, Some(seguro::exit::TLS), "{:?}", out.all());
    let expected = seguro::certs::sha256_colon_hex(&seguro::certs::load_cert(&other).unwrap());
    let presented = seguro::certs::sha256_colon_hex(&server.pinned());
    let line = out.wait_for("[ERROR] server certificate does not match the pinned certificate");
    assert!(
        line.contains(&format!("expected SHA-256 {expected}")),
        "{line}"
    );
    assert!(
        line.contains(&format!("presented SHA-256 {presented}")),
        "{line}"
    );
    assert!(!out.contains("[SYS] connected"));
}

/// Serves the pinned certificate's bytes with a different private key.
#[derive(Debug)]
struct Impostor(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Impostor {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn impostor_config(cert: CertificateDer<'static>) -> Arc<rustls::ServerConfig> {
    impostor_config_versions(cert, rustls::DEFAULT_VERSIONS)
}

/// An impostor speaking only `versions`: it presents `cert` and signs the handshake
/// with a key of its own (not `cert`'s).
fn impostor_config_versions(
    cert: CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ServerConfig> {
    let provider = seguro::tls::provider();
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(other.serialize_der()));
    let signer = provider.key_provider.load_private_key(key).unwrap();
    let ck = Arc::new(rustls::sign::CertifiedKey::new(vec![cert], signer));
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Impostor(ck))),
    )
}

/// What an impostor saw of one connection: whether application data reached it, and
/// the protocol version it negotiated (if it got that far).
struct Seen {
    data: bool,
    version: Option<rustls::ProtocolVersion>,
    error: Option<String>,
}

/// Serves one connection with `cfg` on a loopback port.
fn impostor(cfg: Arc<rustls::ServerConfig>) -> (u16, thread::JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let srv = thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(T)).unwrap();
        let mut conn = rustls::ServerConnection::new(cfg).unwrap();
        let mut error = None;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                error = Some(e.to_string());
                break;
            }
        }
        let version = conn.protocol_version();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut b = [0u8; 64];
        let data = error.is_none() && tls.read(&mut b).is_ok_and(|n| n > 0);
        Seen {
            data,
            version,
            error,
        }
    });
    (port, srv)
}

/// A TLS 1.2-only impostor with a certificate and key of its own: the desktop client
/// refuses it with the pinning error, before any application data.
#[test]
fn a_tls12_impostor_with_another_certificate_is_refused_with_the_pinning_error() {
    let dir = TempDir::new("impostor12-cert");
    let pinned = dir.gen_cert("server");
    let other = dir.gen_cert("other");
    let other_der = seguro::certs::load_cert(&other).unwrap();
    // A genuine pair (the other certificate with its own key), TLS 1.2 only.
    let pair = seguro::certs::load_pair(&other, &dir.path("other.key")).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(seguro::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pair.chain, pair.key)
            .unwrap(),
    );
    let (port, srv) = impostor(cfg);
    let chat = Chat::start("alice", port, &pinned, &[]);
    let (code, out) = chat.finish();
    assert_eq!(code, Some(seguro::exit::TLS), "{:?}", out.all());
    let line = out.wait_for("[ERROR] server certificate does not match the pinned certificate");
    let presented = seguro::certs::sha256_colon_hex(&other_der);
    assert!(
        line.contains(&format!("presented SHA-256 {presented}")),
        "{line}"
    );
    assert!(!out.contains("[SYS] connected"));
    let seen = srv.join().unwrap();
    assert_eq!(
        seen.version,
        Some(rustls::ProtocolVersion::TLSv1_2),
        "the handshake ran in TLS 1.2 ({:?})",
        seen.error
    );
    assert!(!seen.data, "no application data reached the impostor");
}

/// A TLS 1.2-only impostor presenting the pinned certificate's bytes, signing its
/// ServerKeyExchange with another key: the TLS 1.2 signature check refuses it.
#[test]
fn a_tls12_impostor_presenting_the_pinned_certificate_without_its_key_is_refused() {
    let dir = TempDir::new("impostor12");
    let crt = dir.gen_cert("server");
    let cfg = impostor_config_versions(
        seguro::certs::load_cert(&crt).unwrap(),
        &[&rustls::version::TLS12],
    );
    let (port, srv) = impostor(cfg);
    let chat = Chat::start("alice", port, &crt, &[]);
    let (code, out) = chat.finish();
    assert_eq!(code, Some(seguro::exit::TLS), "{:?}", out.all());
    let line = out.wait_for("[ERROR] TLS handshake with");
    assert!(line.contains("could not prove"), "{line}");
    assert!(!line.contains("does not match the pinned"), "{line}");
    assert!(!out.contains("[SYS] connected"));
    let seen = srv.join().unwrap();
    assert_eq!(
        seen.version,
        Some(rustls::ProtocolVersion::TLSv1_2),
        "{:?}",
        seen.error
    );
    assert!(!seen.data, "no application data reached the impostor");
}

/// A blocking std TCP stream as the board client's transport.
struct StdIo(TcpStream);

impl embedded_io_async::ErrorType for StdIo {
    type Error = embedded_io_async::ErrorKind;
}

impl embedded_io_async::Read for StdIo {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.0
            .read(buf)
            .map_err(|_| embedded_io_async::ErrorKind::Other)
    }
}

impl embedded_io_async::Write for StdIo {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0
            .write(buf)
            .map_err(|_| embedded_io_async::ErrorKind::Other)
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.0
            .flush()
            .map_err(|_| embedded_io_async::ErrorKind::Other)
    }
}

/// Opens the board client's TLS (embedded-tls, TLS 1.3 only) pinned to `pinned` on
/// `port`; on success sends one line.
fn board_open(port: u16, pinned: &[u8]) -> Result<(), seguro_embassy::tls::TlsOpenError> {
    use embedded_io_async::Write as _;
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    let mut read_buf = vec![0; 16_640];
    let mut write_buf = vec![0; 4_096];
    let mut rng = seguro_embassy::rng::SeededRng::from_board_rng(&mut rand_core::OsRng, 64);
    let pin = seguro_embassy::pin::Pin::new(pinned).unwrap();
    embassy_futures::block_on(async {
        let mut conn = seguro_embassy::tls::open(
            StdIo(tcp),
            &mut read_buf,
            &mut write_buf,
            pin,
            &mut rng,
            seguro_embassy::tls::TlsOptions::default(),
        )
        .await?;
        conn.write_all(b"ping\n").await.unwrap();
        conn.flush().await.unwrap();
        Ok(())
    })
}

/// The board client speaks TLS 1.3 only (embedded-tls): a TLS 1.2-only impostor, with
/// the pinned certificate or another one, gets no handshake at all: the server aborts
/// with protocol_version, the client reports it and sends nothing.
#[test]
fn the_board_client_refuses_a_tls12_impostor_cleanly() {
    use seguro_embassy::embedded_tls::TlsError;
    use seguro_embassy::embedded_tls::alert::AlertDescription;
    use seguro_embassy::tls::TlsOpenError;
    let dir = TempDir::new("impostor12-board");
    let crt = dir.gen_cert("server");
    let der = seguro::certs::load_cert(&crt).unwrap();
    let other = dir.gen_cert("other");
    let pair = seguro::certs::load_pair(&other, &dir.path("other.key")).unwrap();
    let genuine_other = Arc::new(
        rustls::ServerConfig::builder_with_provider(seguro::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pair.chain, pair.key)
            .unwrap(),
    );
    for cfg in [
        impostor_config_versions(der.clone(), &[&rustls::version::TLS12]),
        genuine_other,
    ] {
        let (port, srv) = impostor(cfg);
        let result = board_open(port, &der);
        let err = result.expect_err("a TLS 1.2 server must be refused");
        assert!(
            matches!(
                err,
                TlsOpenError::Tls(TlsError::HandshakeAborted(
                    _,
                    AlertDescription::ProtocolVersion
                ))
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("TLS 1.3"), "{text}");
        let seen = srv.join().unwrap();
        assert!(!seen.data, "no application data reached the impostor");
        assert!(
            seen.error.is_some(),
            "the handshake failed on the server too"
        );
    }
    // The same client against the real server (TLS 1.3) connects: the refusal above is
    // about the impostor, not the client.
    let server = Server::start_with(&crt, &dir.path("server.key"), &[]);
    board_open(server.port(), &der).expect("the board client reaches the real server");
}

#[test]
fn an_impostor_presenting_the_pinned_certificate_without_its_key_is_refused() {
    let dir = TempDir::new("impostor");
    let crt = dir.gen_cert("server");
    // The handshake must fail on the client's side; the impostor sees an alert or EOF.
    let (port, srv) = impostor(impostor_config(seguro::certs::load_cert(&crt).unwrap()));
    let chat = Chat::start("alice", port, &crt, &[]);
    let (code, out) = chat.finish();
    assert_eq!(code, Some(seguro::exit::TLS), "{:?}", out.all());
    let line = out.wait_for("[ERROR] TLS handshake with");
    assert!(line.contains("could not prove"), "{line}");
    assert!(
        !line.contains("does not match the pinned"),
        "the bytes match; the signature must fail: {line}"
    );
    assert!(
        !srv.join().unwrap().data,
        "no application data reached the impostor"
    );
}

/// With a key pin (an invite) too, presenting the pinned certificate is not enough:
/// the handshake signature must verify with its key.
#[test]
fn an_impostor_is_refused_by_a_key_pin_too() {
    let dir = TempDir::new("impostor-key");
    let crt = dir.gen_cert("server");
    let (port, srv) = impostor(impostor_config(seguro::certs::load_cert(&crt).unwrap()));
    let o = std::process::Command::new(BIN)
        .args(["invite", "--cert"])
        .arg(&crt)
        .args(["--address", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(o.status.success());
    let line = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    let chat = Chat::start_args(&["chat", "alice", "--invite", &line], Some(&dir.0));
    let (code, out) = chat.finish();
    assert_eq!(code, Some(seguro::exit::TLS), "{:?}", out.all());
    let line = out.wait_for("[ERROR] TLS handshake with");
    assert!(line.contains("could not prove"), "{line}");
    assert!(!line.contains("does not match the pinned"), "{line}");
    assert!(
        !srv.join().unwrap().data,
        "no application data reached the impostor"
    );
}

fn handshake(
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    let conn = rustls::ClientConnection::new(cfg, seguro::tls::server_name()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

fn pinned_config(
    pinned: CertificateDer<'static>,
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
    groups: Option<Vec<&'static dyn rustls::crypto::SupportedKxGroup>>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(s) = suites {
        provider.cipher_suites = s;
    }
    if let Some(g) = groups {
        provider.kx_groups = g;
    }
    let provider = Arc::new(provider);
    let verifier = Arc::new(seguro::pin::PinnedCertVerifier::new(pinned, &provider));
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    )
}

#[test]
fn server_speaks_tls13_aes128_p256_and_tls12() {
    use rustls::crypto::ring::{cipher_suite, kx_group};
    for rsa in [false, true] {
        let dir = TempDir::new("suites");
        let server = if rsa {
            let (c, k) = openssl_rsa_pair(&dir);
            Server::start_with(&c, &k, &[])
        } else {
            Server::start(&dir, &[])
        };
        // What microcontroller clients speak: TLS 1.3, AES-128-GCM, secp256r1.
        let cfg = pinned_config(
            server.pinned(),
            Some(vec![cipher_suite::TLS13_AES_128_GCM_SHA256]),
            Some(vec![kx_group::SECP256R1]),
            &[&rustls::version::TLS13],
        );
        let tls = handshake(server.port(), cfg).expect("TLS 1.3 AES-128 P-256");
        assert_eq!(
            tls.conn.negotiated_cipher_suite().unwrap().suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(
            tls.conn.negotiated_key_exchange_group().unwrap().name(),
            rustls::NamedGroup::secp256r1
        );
        // TLS 1.2 clients.
        let cfg = pinned_config(server.pinned(), None, None, &[&rustls::version::TLS12]);
        let tls = handshake(server.port(), cfg).expect("TLS 1.2");
        assert_eq!(
            tls.conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
    }
}

/// Lengths of the TLS records in a byte stream (complete records only).
fn record_lengths(bytes: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 5 <= bytes.len() {
        let len = usize::from(u16::from_be_bytes([bytes[i + 3], bytes[i + 4]]));
        out.push((bytes[i], len));
        i += 5 + len;
    }
    out
}

#[test]
fn max_fragment_size_caps_server_records() {
    let dir = TempDir::new("mfl");
    let server = Server::start(&dir, &["--max-fragment-size", "512"]);
    // A forwarder recording the server → client direction.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fport = listener.local_addr().unwrap().port();
    let target = server.addr;
    let down_bytes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let cap = down_bytes.clone();
    thread::spawn(move || {
        let (down, _) = listener.accept().unwrap();
        let up = TcpStream::connect(target).unwrap();
        let (mut d2, mut u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
        thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = d2.read(&mut b) {
                if n == 0 || u2.write_all(&b[..n]).is_err() {
                    break;
                }
            }
        });
        let (mut up, mut down) = (up, down);
        let mut b = [0u8; 4096];
        while let Ok(n) = up.read(&mut b) {
            if n == 0 {
                break;
            }
            cap.lock().unwrap().extend_from_slice(&b[..n]);
            if down.write_all(&b[..n]).is_err() {
                break;
            }
        }
    });
    let mut raw = Raw::register(fport, server.pinned(), "tiny");
    let long = "x".repeat(3000);
    raw.send_line(&format!(r#"{{"type":"chat","text":"{long}"}}"#));
    let echo = raw.read_until("echo: ", T);
    assert!(echo.contains(&long));
    let deadline = Instant::now() + Duration::from_secs(2);
    let records = loop {
        let r = record_lengths(&down_bytes.lock().unwrap());
        let app: usize = r.iter().filter(|(t, _)| *t == 23).count();
        if app >= 7 || Instant::now() > deadline {
            break r;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let app: Vec<usize> = records
        .iter()
        .filter(|(t, _)| *t == 23)
        .map(|(_, l)| *l)
        .collect();
    // 3000+ bytes of echo in records of at most 512 bytes of plaintext
    // (+1 content type +16 tag in TLS 1.3).
    assert!(app.len() >= 7, "{app:?}");
    assert!(app.iter().all(|&l| l <= 512 + 17), "{app:?}");
}

/// Completes a pinned handshake with `cfg`, says hello as `user` and reads up to the
/// welcome (the server sends its session tickets before it, so `cfg` has stored them
/// by then); how the session was made.
fn session(port: u16, cfg: &Arc<rustls::ClientConfig>, user: &str) -> rustls::HandshakeKind {
    let mut tls = handshake(port, cfg.clone()).expect("pinned handshake");
    let kind = tls.conn.handshake_kind().expect("handshake complete");
    let key = seguro_core::e2ee::KeyPair::generate(&mut rand_core::OsRng).public();
    let hello = format!(
        "{{\"type\": \"hello\", \"user\": \"{user}\", \"pub\": \"{}\"}}\n",
        <base64ct::Base64 as base64ct::Encoding>::encode_string(&key)
    );
    tls.write_all(hello.as_bytes()).unwrap();
    tls.flush().unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    let deadline = Instant::now() + T;
    while !String::from_utf8_lossy(&got).contains("\"welcome\"") {
        assert!(Instant::now() < deadline, "no welcome for {user}: {got:?}");
        match tls.read(&mut b) {
            Ok(0) => panic!("the server closed before welcoming {user}"),
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the welcome for {user}: {e}"),
        }
    }
    kind
}

/// A client that reconnects with the same configuration (as the desktop client does)
/// resumes its TLS 1.3 session, even after many other clients' handshakes (the tickets
/// are stateless: a server cache of recent sessions would have forgotten it); after a
/// server restart the tickets are void and a full, pinned handshake is made.
#[test]
fn a_reconnecting_client_resumes_its_tls_session_until_the_server_restarts() {
    use rustls::HandshakeKind::{Full, Resumed};
    let dir = TempDir::new("resume");
    let server = Server::start(&dir, &[]);
    let cfg = seguro::tls::client_config(server.pinned()).unwrap();
    assert_eq!(session(server.port(), &cfg, "alice"), Full);
    assert_eq!(session(server.port(), &cfg, "bob"), Resumed);
    // 150 other clients, 2 tickets each: more than rustls's default cache of 256.
    for _ in 0..150 {
        let other = seguro::tls::client_config(server.pinned()).unwrap();
        let tls = handshake(server.port(), other).expect("another client's handshake");
        assert_eq!(tls.conn.handshake_kind(), Some(Full));
    }
    assert_eq!(session(server.port(), &cfg, "carol"), Resumed);
    drop(server);
    let again = Server::start(&dir, &[]);
    assert_eq!(session(again.port(), &cfg, "dave"), Full);
    assert_eq!(session(again.port(), &cfg, "erin"), Resumed);
}

/// A client holding tickets from its server offers them to whatever answers at the
/// server's name; an impostor cannot open them, so it must make a full handshake, and
/// there the pin refuses it: with its own certificate, and with the pinned certificate
/// but not its key.
#[test]
fn a_session_ticket_does_not_let_an_impostor_skip_the_pin() {
    let dir = TempDir::new("resume-impostor");
    let server = Server::start(&dir, &[]);
    let cfg = seguro::tls::client_config(server.pinned()).unwrap();
    session(server.port(), &cfg, "alice");
    assert_eq!(
        session(server.port(), &cfg, "bob"),
        rustls::HandshakeKind::Resumed,
        "the client holds tickets"
    );
    // The pinned certificate presented without its key.
    let (port, srv) = impostor(impostor_config(server.pinned()));
    let e = handshake(port, cfg.clone()).expect_err("an impostor must be refused");
    assert!(e.contains("BadSignature"), "{e}");
    assert!(!srv.join().unwrap().data, "no application data reached it");
    // A certificate of its own.
    let crt = dir.gen_cert("other");
    let pair = seguro::certs::load_pair(&crt, &dir.path("other.key")).unwrap();
    let (port, srv) = impostor(seguro::tls::server_config(pair, None).unwrap());
    let e = handshake(port, cfg.clone()).expect_err("an impostor must be refused");
    assert!(e.contains("PinMismatch"), "{e}");
    assert!(!srv.join().unwrap().data, "no application data reached it");
    // The real server still resumes the client afterwards.
    assert_eq!(
        session(server.port(), &cfg, "carol"),
        rustls::HandshakeKind::Resumed
    );
}
