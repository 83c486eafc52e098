//! Build-script support shared by the Seguro board firmwares.
//!
//! [`generate`] reads the build-time settings from the environment and writes
//! `$OUT_DIR/seguro_config.rs` (included by the firmware) and `$OUT_DIR/server.der`
//! (the pinned server certificate, converted from PEM, or empty with an invite):
//!
//! | variable | meaning |
//! | --- | --- |
//! | `SEGURO_WIFI_SSID` | Wi-Fi network name (Wi-Fi boards only) |
//! | `SEGURO_WIFI_PASSWORD` | Wi-Fi password, WPA2; empty for an open network (Wi-Fi boards only) |
//! | `SEGURO_INVITE` | the invite from `seguro invite` / `seguro serve`: the server's address and the pin of its key (P-256) |
//! | `SEGURO_SERVER` | `host:port` of the server or of the tunnel in front of it: an IPv4 address or a DNS name; with an invite, overrides its address |
//! | `SEGURO_USER` | the chat user name |
//! | `SEGURO_CERT` | instead of an invite: path of the server's `server.crt` (P-256, PEM or DER); relative paths are taken from the board's directory |
//!
//! The invite is parsed here with `seguro_core::invite` (the firmware parses it again at
//! boot with the same code): a mistyped invite, or one that pins an RSA key (boards
//! verify P-256 only), stops the build with the reason. The firmware connects to the
//! invite's first address it can use (IPv4 or DNS name; boards have no IPv6).
//!
//! A missing setting is not a build error: the build warns (`cargo:warning`), writes a
//! placeholder, and lists the setting in `MISSING`; the firmware then reports it at boot
//! instead of connecting anywhere. A setting that is present but wrong (a malformed
//! address, an RSA certificate, an unreadable file) fails the build with the reason.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

/// The longest user name, in characters (the protocol's limit).
const MAX_NAME_CHARS: usize = 32;

/// DER encoding of the OID 1.2.840.10045.3.1.7 (prime256v1, P-256).
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER encoding of the OID 1.2.840.113549.1.1.1 (rsaEncryption).
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

/// Which settings a board needs.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    /// The board joins a Wi-Fi network (needs `SEGURO_WIFI_SSID` and `SEGURO_WIFI_PASSWORD`).
    pub wifi: bool,
}

/// The settings after reading the environment.
#[derive(Debug, Default)]
struct Settings {
    wifi_ssid: String,
    wifi_password: String,
    server_host: String,
    server_port: u16,
    user: String,
    cert_der: Vec<u8>,
    invite: String,
    missing: Vec<&'static str>,
}

/// Reads the settings and writes `$OUT_DIR/seguro_config.rs` and `$OUT_DIR/server.der`.
///
/// # Panics
///
/// When a setting is present but invalid (this runs in a build script: the panic
/// message is the build error), or when `OUT_DIR` cannot be written.
pub fn generate(board: Board) {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set"));
    let settings = match read(board, &manifest_dir) {
        Ok(s) => s,
        Err(e) => panic!("\n\nSeguro firmware settings: {e}\n\n"),
    };
    for name in &settings.missing {
        println!(
            "cargo:warning={name} is not set: this firmware will only report the missing \
             setting at boot (see the board's README)"
        );
    }
    let der_path = out.join("server.der");
    fs::write(&der_path, &settings.cert_der).expect("write server.der");
    fs::write(out.join("seguro_config.rs"), render(&settings)).expect("write seguro_config.rs");
}

/// A variable's value, `None` when unset; a rerun is requested when it changes.
fn var(name: &str) -> Result<Option<String>, String> {
    println!("cargo:rerun-if-env-changed={name}");
    match env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(env::VarError::NotPresent) => Ok(None),
        Err(env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}

fn read(board: Board, manifest_dir: &Path) -> Result<Settings, String> {
    let mut s = Settings::default();
    if board.wifi {
        match var("SEGURO_WIFI_SSID")? {
            Some(v) if !v.is_empty() => {
                if v.len() > 32 {
                    return Err("SEGURO_WIFI_SSID is longer than 32 bytes".into());
                }
                s.wifi_ssid = v;
            }
            _ => s.missing.push("SEGURO_WIFI_SSID"),
        }
        match var("SEGURO_WIFI_PASSWORD")? {
            Some(v) => {
                if !v.is_empty() && !(8..=63).contains(&v.len()) {
                    return Err(
                        "SEGURO_WIFI_PASSWORD must be 8 to 63 characters (WPA2), or empty for \
                         an open network"
                            .into(),
                    );
                }
                s.wifi_password = v;
            }
            None => s.missing.push("SEGURO_WIFI_PASSWORD"),
        }
    }
    let invite = match var("SEGURO_INVITE")? {
        Some(v) if !v.trim().is_empty() => Some(board_invite(v.trim())?),
        _ => None,
    };
    match var("SEGURO_SERVER")? {
        Some(v) if !v.is_empty() => {
            let (host, port) = parse_server(&v)?;
            s.server_host = host;
            s.server_port = port;
        }
        _ => match &invite {
            Some(inv) => {
                s.server_host = inv.host.clone();
                s.server_port = inv.port;
                for ignored in &inv.ignored {
                    println!(
                        "cargo:warning=SEGURO_INVITE: the firmware connects to {}:{}; it does \
                         not use {ignored}",
                        inv.host, inv.port
                    );
                }
            }
            None => s.missing.push("SEGURO_SERVER"),
        },
    }
    match var("SEGURO_USER")? {
        Some(v) if !v.is_empty() => {
            check_user(&v)?;
            s.user = v;
        }
        _ => s.missing.push("SEGURO_USER"),
    }
    let cert = var("SEGURO_CERT")?.filter(|v| !v.is_empty());
    match (cert, invite) {
        (Some(_), Some(_)) => {
            return Err(
                "SEGURO_INVITE and SEGURO_CERT are both set: the invite pins the server's \
                 key, the certificate pins one certificate; set only one"
                    .into(),
            );
        }
        (None, Some(inv)) => s.invite = inv.text,
        (Some(v), None) => {
            let path = manifest_dir.join(&v);
            println!("cargo:rerun-if-changed={}", path.display());
            let bytes = fs::read(&path)
                .map_err(|e| format!("SEGURO_CERT: cannot read {}: {e}", path.display()))?;
            s.cert_der = certificate_der(&bytes)
                .map_err(|e| format!("SEGURO_CERT ({}): {e}", path.display()))?;
        }
        (None, None) => s.missing.push("SEGURO_INVITE"),
    }
    Ok(s)
}

/// An invite, checked for a board.
#[derive(Debug)]
struct BoardInvite {
    /// The invite as given (the firmware parses it again at boot).
    text: String,
    /// The first address a board can use.
    host: String,
    port: u16,
    /// The addresses the board does not use (later ones, IPv6 ones).
    ignored: Vec<String>,
}

/// Parses `SEGURO_INVITE` with the firmware's parser; refuses a key boards cannot verify.
fn board_invite(text: &str) -> Result<BoardInvite, String> {
    use seguro_core::invite::{Host, Invite, KeyAlg};
    let inv = Invite::parse(text).map_err(|e| format!("SEGURO_INVITE: {e}"))?;
    for (what, pin) in [("key", Some(inv.pin())), ("backup key", inv.backup())] {
        match pin.map(|p| p.alg) {
            None | Some(KeyAlg::P256) => {}
            Some(KeyAlg::Rsa) => {
                return Err(format!(
                    "SEGURO_INVITE pins an RSA {what}; the boards need a P-256 one (`seguro \
                     gen-cert` on the server, then a new invite; see the board's README)"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "SEGURO_INVITE pins a {other} {what}; the boards need a P-256 one \
                     (`seguro gen-cert` on the server, then a new invite)"
                ));
            }
        }
    }
    let mut chosen = None;
    let mut ignored = Vec::new();
    for a in inv.addresses() {
        match (&chosen, a.host) {
            (None, Host::Name(n)) => chosen = Some((n.to_owned(), a.port)),
            (None, Host::Ipv4(ip)) => chosen = Some((ip.to_string(), a.port)),
            _ => ignored.push(a.to_string()),
        }
    }
    let (host, port) = chosen.ok_or_else(|| {
        "SEGURO_INVITE has only IPv6 addresses; the boards speak IPv4 only (set SEGURO_SERVER)"
            .to_owned()
    })?;
    Ok(BoardInvite {
        text: text.to_owned(),
        host,
        port,
        ignored,
    })
}

/// `host:port` → (host, port). The host is an IPv4 address or a DNS name.
fn parse_server(v: &str) -> Result<(String, u16), String> {
    let (host, port) = v.rsplit_once(':').ok_or_else(|| {
        format!("SEGURO_SERVER={v:?}: expected host:port, e.g. 192.168.1.20:7878")
    })?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("SEGURO_SERVER={v:?}: the port must be 1 to 65535"))?;
    if host.is_empty() || host.len() > 253 {
        return Err(format!(
            "SEGURO_SERVER={v:?}: the host is empty or too long"
        ));
    }
    if host.contains(':') || host.starts_with('[') {
        return Err(format!(
            "SEGURO_SERVER={v:?}: the boards speak IPv4 only; give an IPv4 address or a host name"
        ));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(format!(
            "SEGURO_SERVER={v:?}: the host must be an IPv4 address or a DNS name"
        ));
    }
    let all_numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if all_numeric && host.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(format!(
            "SEGURO_SERVER={v:?}: {host} is not a valid IPv4 address"
        ));
    }
    Ok((host.to_owned(), port))
}

/// The protocol's name rules (the firmware checks them again at boot).
fn check_user(v: &str) -> Result<(), String> {
    if v.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "SEGURO_USER={v:?} is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if v.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\u{200b}' || c == '\u{feff}')
    {
        return Err(format!(
            "SEGURO_USER={v:?} contains white space or control characters"
        ));
    }
    Ok(())
}

/// The certificate's DER from a PEM or DER file; it must carry a P-256 key.
fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let der = if bytes.first() == Some(&0x30) {
        bytes.to_vec()
    } else {
        let text = std::str::from_utf8(bytes).map_err(|_| "neither PEM nor DER".to_owned())?;
        pem_certificate(text)?
    };
    if der.len() < 64 || der.first() != Some(&0x30) {
        return Err("not a DER certificate".into());
    }
    if contains(&der, OID_RSA) {
        return Err(
            "this is an RSA certificate; the boards need a P-256 one (`seguro gen-cert`, or \
             openssl as shown in the board's README)"
                .into(),
        );
    }
    if !contains(&der, OID_P256) {
        return Err(
            "the certificate's key is not P-256 (prime256v1); the boards need a P-256 one".into(),
        );
    }
    Ok(der)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The first `CERTIFICATE` block of a PEM text, decoded.
fn pem_certificate(text: &str) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text
        .find(BEGIN)
        .ok_or_else(|| "no -----BEGIN CERTIFICATE----- block".to_owned())?
        + BEGIN.len();
    let len = text[start..]
        .find(END)
        .ok_or_else(|| "the CERTIFICATE block has no END line".to_owned())?;
    base64_decode(&text[start..start + len])
}

/// Standard base64 (with padding), ignoring white space.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut padding = 0usize;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(format!("invalid base64 character {:?}", b as char)),
        };
        if padding > 0 {
            return Err("base64 data after padding".into());
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if padding > 2 || bits >= 6 {
        return Err("truncated base64".into());
    }
    Ok(out)
}

fn render(s: &Settings) -> String {
    let mut f = String::new();
    let _ = writeln!(
        f,
        "// Generated by seguro-board-build from the SEGURO_* variables. Do not edit."
    );
    let _ = writeln!(
        f,
        "/// Settings that were not given at build time (the firmware reports them at boot)."
    );
    let _ = writeln!(f, "pub const MISSING: &[&str] = &{:?};", s.missing);
    let _ = writeln!(f, "/// Wi-Fi network name.");
    let _ = writeln!(f, "#[allow(dead_code)]");
    let _ = writeln!(f, "pub const WIFI_SSID: &str = {:?};", s.wifi_ssid);
    let _ = writeln!(f, "/// Wi-Fi password (empty: open network).");
    let _ = writeln!(f, "#[allow(dead_code)]");
    let _ = writeln!(f, "pub const WIFI_PASSWORD: &str = {:?};", s.wifi_password);
    let _ = writeln!(f, "/// Server host: an IPv4 address or a DNS name.");
    let _ = writeln!(f, "pub const SERVER_HOST: &str = {:?};", s.server_host);
    let _ = writeln!(f, "/// Server TCP port.");
    let _ = writeln!(f, "pub const SERVER_PORT: u16 = {};", s.server_port);
    let _ = writeln!(f, "/// Chat user name.");
    let _ = writeln!(f, "pub const USER: &str = {:?};", s.user);
    let _ = writeln!(
        f,
        "/// The invite (its key pins the server); empty when a certificate is pinned."
    );
    let _ = writeln!(f, "pub const INVITE: &str = {:?};", s.invite);
    let _ = writeln!(
        f,
        "/// The pinned server certificate (DER); empty when an invite pins the key."
    );
    let _ = writeln!(
        f,
        "pub static CERT_DER: &[u8] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/server.der\"));"
    );
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_of_known_text() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert!(base64_decode("aGVsbG8=x").is_err());
        assert!(base64_decode("a").is_err());
    }

    #[test]
    fn server_forms() {
        assert_eq!(
            parse_server("192.168.1.20:7878").unwrap(),
            ("192.168.1.20".into(), 7878)
        );
        assert_eq!(
            parse_server("0.tcp.eu.ngrok.io:12345").unwrap(),
            ("0.tcp.eu.ngrok.io".into(), 12345)
        );
        assert!(parse_server("192.168.1.20").is_err());
        assert!(parse_server("192.168.1.300:1").is_err());
        assert!(parse_server("host:0").is_err());
        assert!(parse_server("[::1]:7878").is_err());
        assert!(parse_server("bad host:1").is_err());
    }

    fn invite_for(alg: seguro_core::invite::KeyAlg, addresses: &[&str]) -> String {
        use seguro_core::invite::{Address, Invite, KeyPin};
        let addrs: Vec<Address<'_>> = addresses
            .iter()
            .map(|a| Address::parse(a).unwrap())
            .collect();
        let pin = KeyPin {
            alg,
            sha256: [7; 32],
        };
        Invite::new(&addrs, pin).unwrap().to_string()
    }

    #[test]
    fn invites() {
        use seguro_core::invite::KeyAlg;
        let text = invite_for(
            KeyAlg::P256,
            &[
                "[fd00::1]:5000",
                "0.tcp.eu.ngrok.io:12345",
                "192.168.1.20:5000",
            ],
        );
        let inv = board_invite(&text).unwrap();
        assert_eq!((inv.host.as_str(), inv.port), ("0.tcp.eu.ngrok.io", 12345));
        assert_eq!(inv.ignored, ["[fd00::1]:5000", "192.168.1.20:5000"]);
        assert_eq!(inv.text, text);
        let inv = board_invite(&invite_for(KeyAlg::P256, &["10.0.0.2:7000"])).unwrap();
        assert_eq!((inv.host.as_str(), inv.port), ("10.0.0.2", 7000));

        let e = board_invite(&invite_for(KeyAlg::Rsa, &["h:1"])).unwrap_err();
        assert!(
            e.contains("pins an RSA key; the boards need a P-256 one"),
            "{e}"
        );
        let e = board_invite(&invite_for(KeyAlg::P384, &["h:1"])).unwrap_err();
        assert!(e.contains("p384"), "{e}");
        let e = board_invite(&invite_for(KeyAlg::P256, &["[::1]:1"])).unwrap_err();
        assert!(e.contains("IPv4 only"), "{e}");
        // A typo is caught by the invite's check, with the parser's words.
        let typo = text.replacen("ngrok", "ngrak", 1);
        let e = board_invite(&typo).unwrap_err();
        assert!(e.starts_with("SEGURO_INVITE: "), "{e}");
        assert!(e.contains("check does not match"), "{e}");
    }

    #[test]
    fn user_rules() {
        assert!(check_user("alice").is_ok());
        assert!(check_user("al ice").is_err());
        assert!(check_user(&"x".repeat(33)).is_err());
    }

    /// Real certificates from openssl: the PEM decodes to exactly openssl's DER, a
    /// P-256 one is accepted, an RSA one refused with the advice.
    #[test]
    fn openssl_certificates() {
        use std::process::Command;
        let dir = std::env::temp_dir().join(format!("seguro-board-build-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let make = |name: &str, key: &[&str]| {
            let crt = dir.join(format!("{name}.crt"));
            let status = Command::new("openssl")
                .args(["req", "-x509", "-newkey"])
                .args(key)
                .args([
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=seguro-test",
                    "-keyout",
                ])
                .arg(dir.join(format!("{name}.key")))
                .arg("-out")
                .arg(&crt)
                .output()
                .expect("openssl runs");
            assert!(status.status.success(), "openssl req failed: {status:?}");
            let der = Command::new("openssl")
                .args(["x509", "-outform", "DER", "-in"])
                .arg(&crt)
                .output()
                .expect("openssl runs");
            assert!(der.status.success());
            (fs::read(&crt).unwrap(), der.stdout)
        };
        let (pem, der) = make("p256", &["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]);
        assert_eq!(certificate_der(&pem).unwrap(), der);
        assert_eq!(certificate_der(&der).unwrap(), der);
        let (pem, _) = make("p384", &["ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"]);
        assert!(certificate_der(&pem).unwrap_err().contains("not P-256"));
        let (pem, _) = make("rsa", &["rsa:2048"]);
        assert!(certificate_der(&pem).unwrap_err().contains("RSA"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn certificate_kinds() {
        assert!(certificate_der(b"not a cert").is_err());
        let mut p256 = vec![0x30, 0x82, 0x01, 0x00];
        p256.extend_from_slice(&[0; 60]);
        p256.extend_from_slice(OID_P256);
        assert_eq!(certificate_der(&p256).unwrap(), p256);
        let mut rsa = p256.clone();
        rsa.extend_from_slice(OID_RSA);
        assert!(certificate_der(&rsa).unwrap_err().contains("RSA"));
    }
}
