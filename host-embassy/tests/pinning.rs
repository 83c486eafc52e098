//! Pinning (by certificate, and by key as invites do) and the certificate-less
//! handshake guard, against a small TLS 1.3 server written here (over real loopback TCP)
//! so that it can misbehave on purpose: skip Certificate and CertificateVerify, present
//! another certificate, sign the wrong transcript, or present an RSA certificate.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rand_core::OsRng;
use seguro_embassy::embedded_tls::{TlsConfig, TlsConnection, TlsContext};
use seguro_embassy::pin::{Pin, PinError, PinnedProvider, PinnedVerifier};
use seguro_embassy::rng::SeededRng;
use seguro_embassy::seguro_core::invite::KeyPin;
use seguro_embassy::seguro_core::invite::{Address, Invite, KeyAlg};
use seguro_embassy::tls::{self, TlsOpenError, TlsOptions};
use sha2::{Digest, Sha256};

const SERVER_CERT: &[u8] = include_bytes!("data/server-p256.der");
const SERVER_SCALAR: &[u8; 32] = include_bytes!("data/server-p256-scalar.bin");
/// Another certificate for the key of `SERVER_CERT` (new serial number and validity):
/// what `seguro gen-cert --renew` makes.
const RENEWED_CERT: &[u8] = include_bytes!("data/server-p256-renewed.der");
const OTHER_CERT: &[u8] = include_bytes!("data/other-p256.der");
const RSA_CERT: &[u8] = include_bytes!("data/server-rsa.der");
const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- the client side

/// A blocking std TCP stream as an `embedded_io_async` transport.
struct StdIo(TcpStream);

impl embedded_io_async::ErrorType for StdIo {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io_async::Read for StdIo {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.0.read(buf).map_err(|_| embedded_io::ErrorKind::Other)
    }
}

impl embedded_io_async::Write for StdIo {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.write(buf).map_err(|_| embedded_io::ErrorKind::Other)
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush().map_err(|_| embedded_io::ErrorKind::Other)
    }
}

fn rng() -> SeededRng {
    SeededRng::from_board_rng(&mut OsRng, 64)
}

// ---------------------------------------------------------------- the server side

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// A correct server with the pinned certificate.
    Good,
    /// A correct server with a renewed certificate for the same key.
    Renewed,
    /// Presents another P-256 certificate.
    OtherCert,
    /// Presents the pinned certificate but signs the wrong bytes.
    BadSignature,
    /// Sends neither Certificate nor CertificateVerify.
    NoCertificate,
    /// Sends Certificate but no CertificateVerify.
    NoCertificateVerify,
    /// Presents an RSA certificate.
    Rsa,
}

fn expand_label(secret: &[u8], label: &str, context: &[u8], len: usize) -> Vec<u8> {
    let mut info = Vec::new();
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push((6 + label.len()) as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label.as_bytes());
    info.push(context.len() as u8);
    info.extend_from_slice(context);
    let hk = Hkdf::<Sha256>::from_prk(secret).unwrap();
    let mut out = vec![0; len];
    hk.expand(&info, &mut out).unwrap();
    out
}

fn extract(salt: &[u8], ikm: &[u8]) -> Vec<u8> {
    Hkdf::<Sha256>::extract(Some(salt), ikm).0.to_vec()
}

fn hash(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

struct Keys {
    key: Vec<u8>,
    iv: Vec<u8>,
    seq: u64,
}

impl Keys {
    fn new(secret: &[u8]) -> Self {
        Self {
            key: expand_label(secret, "key", &[], 16),
            iv: expand_label(secret, "iv", &[], 12),
            seq: 0,
        }
    }

    fn nonce(&mut self) -> [u8; 12] {
        let mut nonce: [u8; 12] = self.iv.clone().try_into().unwrap();
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq += 1;
        nonce
    }

    fn seal(&mut self, content_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut inner = payload.to_vec();
        inner.push(content_type);
        let len = (inner.len() + 16) as u16;
        let header = [23, 3, 3, (len >> 8) as u8, len as u8];
        let nonce = self.nonce();
        let cipher = Aes128Gcm::new_from_slice(&self.key).unwrap();
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &header, &mut inner)
            .unwrap();
        let mut record = header.to_vec();
        record.extend_from_slice(&inner);
        record.extend_from_slice(&tag);
        record
    }

    fn open(&mut self, header: &[u8], body: &[u8]) -> Option<(u8, Vec<u8>)> {
        let (cipher_text, tag) = body.split_at(body.len().checked_sub(16)?);
        let mut plain = cipher_text.to_vec();
        let nonce = self.nonce();
        let cipher = Aes128Gcm::new_from_slice(&self.key).unwrap();
        cipher
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), header, &mut plain, tag.into())
            .ok()?;
        while plain.last() == Some(&0) {
            plain.pop();
        }
        let content_type = plain.pop()?;
        Some((content_type, plain))
    }
}

fn read_record(s: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut header = [0u8; 5];
    s.read_exact(&mut header).ok()?;
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let mut body = vec![0; len];
    s.read_exact(&mut body).ok()?;
    Some((header.to_vec(), body))
}

fn handshake_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut m = vec![kind, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    m.extend_from_slice(body);
    m
}

/// Finds the client's secp256r1 key share and legacy session id in a ClientHello.
fn parse_client_hello(msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(msg[0], 1, "ClientHello expected");
    let body = &msg[4..];
    let mut at = 2 + 32;
    let sid_len = usize::from(body[at]);
    let session_id = body[at + 1..at + 1 + sid_len].to_vec();
    at += 1 + sid_len;
    let suites = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
    at += 2 + suites;
    let compression = usize::from(body[at]);
    at += 1 + compression;
    let ext_end = at + 2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
    at += 2;
    while at < ext_end {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let data = &body[at + 4..at + 4 + len];
        if kind == 0x0033 {
            let mut p = 2;
            while p < data.len() {
                let group = u16::from_be_bytes([data[p], data[p + 1]]);
                let klen = usize::from(u16::from_be_bytes([data[p + 2], data[p + 3]]));
                if group == 0x0017 {
                    return (data[p + 4..p + 4 + klen].to_vec(), session_id);
                }
                p += 4 + klen;
            }
        }
        at += 4 + len;
    }
    panic!("no secp256r1 key share");
}

/// Serves one TLS 1.3 handshake in `mode`. For [`Mode::Good`] it then sends
/// "welcome\n" and returns what the client wrote back.
fn serve(mut s: TcpStream, mode: Mode) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (_, client_hello) = read_record(&mut s)?;
    let (client_share, session_id) = parse_client_hello(&client_hello);
    let mut transcript = client_hello.clone();

    let secret = p256::ecdh::EphemeralSecret::random(&mut OsRng);
    let server_share = p256::EncodedPoint::from(secret.public_key());
    let client_key = p256::PublicKey::from_sec1_bytes(&client_share).unwrap();
    let shared = secret.diffie_hellman(&client_key);

    let mut sh = vec![3, 3];
    sh.extend_from_slice(&[0x5a; 32]);
    sh.push(session_id.len() as u8);
    sh.extend_from_slice(&session_id);
    sh.extend_from_slice(&[0x13, 0x01, 0x00]);
    let point = server_share.as_bytes();
    let mut exts = vec![0x00, 0x2b, 0x00, 0x02, 0x03, 0x04, 0x00, 0x33];
    exts.extend_from_slice(&((4 + point.len()) as u16).to_be_bytes());
    exts.extend_from_slice(&[0x00, 0x17]);
    exts.extend_from_slice(&(point.len() as u16).to_be_bytes());
    exts.extend_from_slice(point);
    sh.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    sh.extend_from_slice(&exts);
    let server_hello = handshake_message(2, &sh);
    transcript.extend_from_slice(&server_hello);
    let mut record = vec![22, 3, 3];
    record.extend_from_slice(&(server_hello.len() as u16).to_be_bytes());
    record.extend_from_slice(&server_hello);
    s.write_all(&record).ok()?;

    let early = extract(&[0; 32], &[0; 32]);
    let derived = expand_label(&early, "derived", &hash(&[]), 32);
    let hs = extract(&derived, shared.raw_secret_bytes());
    let s_hs = expand_label(&hs, "s hs traffic", &hash(&transcript), 32);
    let c_hs = expand_label(&hs, "c hs traffic", &hash(&transcript), 32);
    let mut server_keys = Keys::new(&s_hs);
    let mut client_keys = Keys::new(&c_hs);

    let mut send = |s: &mut TcpStream, transcript: &mut Vec<u8>, kind: u8, body: &[u8]| {
        let msg = handshake_message(kind, body);
        transcript.extend_from_slice(&msg);
        s.write_all(&server_keys.seal(22, &msg))
    };

    send(&mut s, &mut transcript, 8, &[0, 0]).ok()?; // EncryptedExtensions
    if mode != Mode::NoCertificate {
        let cert = match mode {
            Mode::OtherCert => OTHER_CERT,
            Mode::Rsa => RSA_CERT,
            Mode::Renewed => RENEWED_CERT,
            _ => SERVER_CERT,
        };
        let mut body = vec![0];
        let list_len = (3 + cert.len() + 2) as u32;
        body.extend_from_slice(&list_len.to_be_bytes()[1..]);
        body.extend_from_slice(&(cert.len() as u32).to_be_bytes()[1..]);
        body.extend_from_slice(cert);
        body.extend_from_slice(&[0, 0]);
        send(&mut s, &mut transcript, 11, &body).ok()?;
    }
    if !matches!(mode, Mode::NoCertificate | Mode::NoCertificateVerify) {
        let mut signed = vec![0x20; 64];
        signed.extend_from_slice(b"TLS 1.3, server CertificateVerify\x00");
        signed.extend_from_slice(&hash(&transcript));
        if mode == Mode::BadSignature {
            signed[0] ^= 1;
        }
        let key = SigningKey::from_bytes(SERVER_SCALAR.into()).unwrap();
        let signature: Signature = key.sign(&signed);
        let der = signature.to_der();
        let mut body = vec![0x04, 0x03];
        body.extend_from_slice(&(der.as_bytes().len() as u16).to_be_bytes());
        body.extend_from_slice(der.as_bytes());
        send(&mut s, &mut transcript, 15, &body).ok()?;
    }
    let finished_key = expand_label(&s_hs, "finished", &[], 32);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&finished_key).unwrap();
    mac.update(&hash(&transcript));
    let verify_data = mac.finalize().into_bytes();
    send(&mut s, &mut transcript, 20, &verify_data).ok()?;

    // Application traffic secrets, from the transcript up to the server's Finished.
    let derived = expand_label(&hs, "derived", &hash(&[]), 32);
    let master = extract(&derived, &[0; 32]);
    let s_ap = expand_label(&master, "s ap traffic", &hash(&transcript), 32);
    let c_ap = expand_label(&master, "c ap traffic", &hash(&transcript), 32);

    // The client's Finished (after an optional ChangeCipherSpec).
    let client_finished = loop {
        let (header, body) = read_record(&mut s)?;
        if header[0] == 20 {
            continue;
        }
        let (content_type, plain) = client_keys.open(&header, &body)?;
        assert_eq!(content_type, 22);
        break plain;
    };
    let c_finished_key = expand_label(&c_hs, "finished", &[], 32);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&c_finished_key).unwrap();
    mac.update(&hash(&transcript));
    let expected = handshake_message(20, &mac.finalize().into_bytes());
    assert_eq!(client_finished, expected, "client Finished does not verify");

    let mut server_app = Keys::new(&s_ap);
    let mut client_app = Keys::new(&c_ap);
    s.write_all(&server_app.seal(23, b"welcome\n")).ok()?;
    let (header, body) = read_record(&mut s)?;
    let (content_type, plain) = client_app.open(&header, &body)?;
    assert_eq!(content_type, 23);
    Some(plain)
}

/// Starts a one-connection server in `mode` and returns its port and its thread.
fn start(mode: Mode) -> (u16, thread::JoinHandle<Option<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (s, _) = listener.accept().ok()?;
        serve(s, mode)
    });
    (port, handle)
}

fn connect(port: u16) -> StdIo {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    StdIo(s)
}

/// Opens a connection pinned to `SERVER_CERT` to a server in `mode`; on success,
/// exchanges one line each way.
fn run_client(mode: Mode) -> Result<(), TlsOpenError> {
    run_client_pinned(mode, Pin::new(SERVER_CERT).unwrap())
}

/// The key pin of a certificate, as an invite carries it.
fn key_pin(cert: &[u8]) -> KeyPin {
    KeyPin::of_spki(seguro_embassy::cert::spki(cert).unwrap()).unwrap()
}

/// Pinned to `SERVER_CERT`'s key, as with an invite.
fn key_pinned() -> Pin<'static> {
    Pin::keys(key_pin(SERVER_CERT), None).unwrap()
}

fn run_client_pinned(mode: Mode, pin: Pin<'_>) -> Result<(), TlsOpenError> {
    let (port, server) = start(mode);
    let mut read_buf = vec![0; 16_640];
    let mut write_buf = vec![0; 4_096];
    let mut rng = rng();
    let result = embassy_futures::block_on(async {
        let mut conn = tls::open(
            connect(port),
            &mut read_buf,
            &mut write_buf,
            pin,
            &mut rng,
            TlsOptions::default(),
        )
        .await?;
        let mut line = [0u8; 64];
        let n = conn.read(&mut line).await.unwrap();
        assert_eq!(&line[..n], b"welcome\n");
        conn.write(b"ping\n").await.unwrap();
        conn.flush().await.unwrap();
        Ok(())
    });
    drop(read_buf);
    let served = server.join().unwrap();
    if result.is_ok() {
        assert_eq!(served.as_deref(), Some(&b"ping\n"[..]));
    }
    result
}

fn pin_error(result: Result<(), TlsOpenError>) -> PinError {
    match result {
        Err(TlsOpenError::Pin(e)) => e,
        other => panic!("expected a pinning refusal, got {other:?}"),
    }
}

#[test]
fn pinned_server_with_valid_signature_is_accepted() {
    run_client(Mode::Good).unwrap();
}

#[test]
fn other_certificate_is_refused() {
    assert_eq!(
        pin_error(run_client(Mode::OtherCert)),
        PinError::CertificateMismatch
    );
}

#[test]
fn wrong_signature_is_refused() {
    assert_eq!(
        pin_error(run_client(Mode::BadSignature)),
        PinError::BadSignature
    );
}

#[test]
fn handshake_without_certificate_is_refused_by_the_guard() {
    assert_eq!(
        pin_error(run_client(Mode::NoCertificate)),
        PinError::NotVerified
    );
}

#[test]
fn handshake_without_certificate_verify_is_refused_by_the_guard() {
    assert_eq!(
        pin_error(run_client(Mode::NoCertificateVerify)),
        PinError::NotVerified
    );
}

/// The flaw the guard exists for: embedded-tls's own `open` accepts a server that
/// skips both proofs, and the verifier is never called. If this ever fails, the
/// dependency changed; the guard stays correct either way.
#[test]
fn embedded_tls_alone_accepts_a_certificate_less_handshake() {
    let (port, server) = start(Mode::NoCertificate);
    let mut read_buf = vec![0; 16_640];
    let mut write_buf = vec![0; 4_096];
    let mut verifier = PinnedVerifier::new(Pin::new(SERVER_CERT).unwrap());
    let mut rng = rng();
    let opened = embassy_futures::block_on(async {
        let config = TlsConfig::new();
        let mut conn = TlsConnection::new(connect(port), &mut read_buf, &mut write_buf);
        let result = conn
            .open(TlsContext::new(
                &config,
                PinnedProvider::new(&mut rng, &mut verifier),
            ))
            .await;
        if result.is_ok() {
            let mut line = [0u8; 64];
            let _ = conn.read(&mut line).await;
            let _ = conn.write(b"x\n").await;
            let _ = conn.flush().await;
        }
        result
    });
    assert!(opened.is_ok(), "embedded-tls refused by itself: {opened:?}");
    assert_eq!(verifier.verified(), Err(PinError::NotVerified));
    let _ = server.join();
}

#[test]
fn rsa_server_is_refused_with_advice() {
    let error = pin_error(run_client(Mode::Rsa));
    assert_eq!(error, PinError::ServerRsa);
    assert!(error.to_string().contains("seguro gen-cert"), "{error}");
}

#[test]
fn rsa_pin_is_refused_with_advice() {
    let error = Pin::new(RSA_CERT).unwrap_err();
    assert_eq!(error, PinError::PinnedRsa);
    assert!(error.to_string().contains("P-256"), "{error}");
    assert!(error.to_string().contains("seguro gen-cert"), "{error}");
}

#[test]
fn garbage_pin_is_refused() {
    assert_eq!(
        Pin::new(b"not a certificate").unwrap_err(),
        PinError::PinnedMalformed
    );
}

// ---------------------------------------------------------------- pinned by key

#[test]
fn the_renewed_certificate_is_another_certificate_for_the_same_key() {
    assert_ne!(RENEWED_CERT, SERVER_CERT);
    assert_eq!(key_pin(RENEWED_CERT), key_pin(SERVER_CERT));
    assert_ne!(key_pin(OTHER_CERT), key_pin(SERVER_CERT));
}

#[test]
fn key_pin_accepts_the_certificate_and_a_renewed_one() {
    run_client_pinned(Mode::Good, key_pinned()).unwrap();
    run_client_pinned(Mode::Renewed, key_pinned()).unwrap();
}

#[test]
fn certificate_pin_refuses_a_renewed_certificate() {
    assert_eq!(
        pin_error(run_client(Mode::Renewed)),
        PinError::CertificateMismatch
    );
}

#[test]
fn key_pin_refuses_another_key() {
    assert_eq!(
        pin_error(run_client_pinned(Mode::OtherCert, key_pinned())),
        PinError::KeyMismatch
    );
}

#[test]
fn key_pin_still_checks_the_signature() {
    assert_eq!(
        pin_error(run_client_pinned(Mode::BadSignature, key_pinned())),
        PinError::BadSignature
    );
}

#[test]
fn key_pin_keeps_the_guard_against_skipped_proofs() {
    for mode in [Mode::NoCertificate, Mode::NoCertificateVerify] {
        assert_eq!(
            pin_error(run_client_pinned(mode, key_pinned())),
            PinError::NotVerified,
            "{mode:?}"
        );
    }
}

#[test]
fn key_pin_refuses_an_rsa_server_with_advice() {
    let e = pin_error(run_client_pinned(Mode::Rsa, key_pinned()));
    assert_eq!(e, PinError::ServerRsa);
    assert!(e.to_string().contains("seguro gen-cert"), "{e}");
}

#[test]
fn a_backup_key_is_accepted() {
    // The server moved to the backup key: the invite's first pin is another key.
    let pin = Pin::keys(key_pin(OTHER_CERT), Some(key_pin(SERVER_CERT))).unwrap();
    run_client_pinned(Mode::Good, pin).unwrap();
    // Without the backup it is refused.
    let pin = Pin::keys(key_pin(OTHER_CERT), None).unwrap();
    assert_eq!(
        pin_error(run_client_pinned(Mode::Good, pin)),
        PinError::KeyMismatch
    );
}

#[test]
fn pins_from_an_invite() {
    let a = [Address::parse("10.0.0.1:5000").unwrap()];
    let invite = Invite::new(&a, key_pin(OTHER_CERT))
        .unwrap()
        .with_backup(key_pin(RENEWED_CERT))
        .unwrap();
    let text = invite.to_string();
    let parsed = Invite::parse(&text).unwrap();
    run_client_pinned(Mode::Good, Pin::from_invite(&parsed).unwrap()).unwrap();
    // An invite pinning an RSA key cannot be used by a board.
    let rsa = Invite::new(&a, key_pin(RSA_CERT)).unwrap();
    assert_eq!(key_pin(RSA_CERT).alg, KeyAlg::Rsa);
    let e = Pin::from_invite(&rsa).unwrap_err();
    assert_eq!(e, PinError::PinnedRsa);
    assert!(e.to_string().contains("seguro gen-cert"), "{e}");
    let backup_rsa = Invite::new(&a, key_pin(SERVER_CERT))
        .unwrap()
        .with_backup(key_pin(RSA_CERT))
        .unwrap();
    assert_eq!(
        Pin::from_invite(&backup_rsa).unwrap_err(),
        PinError::PinnedRsa
    );
    let mut ed = key_pin(SERVER_CERT);
    ed.alg = KeyAlg::Ed25519;
    assert_eq!(
        Pin::keys(ed, None).unwrap_err(),
        PinError::PinnedUnsupportedKey
    );
}

#[test]
fn a_pin_says_what_it_pins() {
    // The session's "TLS 1.3 session with … (… verified)" line names it.
    assert_eq!(Pin::new(SERVER_CERT).unwrap().what(), "pinned certificate");
    assert_eq!(key_pinned().what(), "pinned key");
}
