//! `seguro invite`, and invites on the desktop: making one from the server's certificate
//! and addresses, printing it (and as a QR code), decoding one, and turning `seguro
//! chat`'s arguments (an invite, or host, port and certificate file) into the addresses
//! to try and the pinned TLS configuration.
//!
//! The format and its parser are `seguro_core::invite` (also used by the boards' build
//! scripts); `docs/invite.md` specifies it.

use std::path::Path;
use std::sync::Arc;

use seguro_core::invite::{Address, Host, Invite, KeyPin};

use crate::cli::{ChatArgs, InviteArgs};
use crate::pin::Pin;
use crate::{certs, exit, tls};

/// Reads a `--address` value: `host:port`, `[v6]:port`, or ngrok's `tcp://host:port`;
/// returns it in the invite's form (host lower-cased).
pub fn parse_address_arg(s: &str) -> Result<String, String> {
    let t = s.trim();
    let t = t.strip_prefix("tcp://").unwrap_or(t);
    let t = t.strip_suffix('/').unwrap_or(t).to_ascii_lowercase();
    match Address::parse(&t) {
        Ok(a) => Ok(a.to_string()),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// The key pin of the first certificate in a PEM file.
pub fn pin_of_file(path: &Path) -> Result<KeyPin, String> {
    let cert = certs::load_cert(path).map_err(|e| e.to_string())?;
    certs::key_pin(&cert).map_err(|e| format!("{}: {e}", path.display()))
}

/// Makes the invite line for `addresses` (in `host:port` form, see
/// [`parse_address_arg`]) and the server key `pin`, with an optional backup pin.
pub fn make(addresses: &[String], pin: KeyPin, backup: Option<KeyPin>) -> Result<String, String> {
    let parsed = addresses
        .iter()
        .map(|a| Address::parse(a).map_err(|e| format!("{a:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut invite = Invite::new(&parsed, pin).map_err(|e| e.to_string())?;
    if let Some(b) = backup.filter(|b| *b != pin) {
        invite = invite.with_backup(b).map_err(|e| e.to_string())?;
    }
    Ok(invite.to_string())
}

/// The invite as a QR code in text: two rows of modules per line (Unicode half
/// blocks), drawn for a dark terminal background (light modules are the drawn ones),
/// with the quiet zone around it.
pub fn qr(line: &str) -> Result<String, String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::with_error_correction_level(line.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| format!("cannot make a QR code of the invite: {e}"))?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

fn host_text(h: &Host<'_>) -> String {
    match h {
        Host::Name(n) => (*n).to_owned(),
        Host::Ipv4(a) => a.to_string(),
        Host::Ipv6(a) => a.to_string(),
    }
}

/// What an invite holds, one fact a line (for `seguro invite --decode`).
pub fn describe(invite: &Invite<'_>) -> Vec<String> {
    let mut out = vec![format!("invite version {}", seguro_core::invite::VERSION)];
    for (i, a) in invite.addresses().iter().enumerate() {
        out.push(format!("address {}: {a}", i + 1));
    }
    out.push(format!("server key: {}", invite.pin()));
    if let Some(b) = invite.backup() {
        out.push(format!("backup key: {b}"));
    }
    if invite.token().is_some() {
        out.push("join token: present".into());
    }
    out
}

/// Runs `seguro invite`.
pub fn run(a: InviteArgs) -> i32 {
    if let Some(line) = &a.decode {
        return match Invite::parse(line) {
            Ok(inv) => {
                for l in describe(&inv) {
                    println!("{l}");
                }
                println!("the check matches: this invite is intact");
                exit::OK
            }
            Err(e) => {
                eprintln!("error: invalid invite: {e}");
                exit::USAGE
            }
        };
    }
    let pin = match pin_of_file(&a.cert) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "error: {e}\n(the invite pins the key of the server's certificate: pass it \
                 with --cert, e.g. /var/lib/seguro/server.crt on a Raspberry Pi)"
            );
            return exit::ERROR;
        }
    };
    let backup = match a.backup_cert.as_deref().map(pin_of_file).transpose() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: backup certificate: {e}");
            return exit::ERROR;
        }
    };
    let line = match make(&a.addresses, pin, backup) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    if a.qr {
        match qr(&line) {
            Ok(q) => println!("{q}"),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::ERROR;
            }
        }
    }
    println!("{line}");
    exit::OK
}

/// The lines `seguro serve` prints about invites once it listens on `bound`.
pub fn serve_banner(
    cert: &rustls::pki_types::CertificateDer<'_>,
    cert_path: &Path,
    invite_addresses: &[String],
    backup: Option<KeyPin>,
    bound: std::net::SocketAddr,
) -> Vec<String> {
    let pin = match certs::key_pin(cert) {
        Ok(p) => p,
        Err(e) => return vec![format!("no invite: {e}")],
    };
    let mut out = vec![format!("key pin: {pin}")];
    let (addresses, local_only) = if invite_addresses.is_empty() {
        let ip = if bound.ip().is_unspecified() {
            if bound.is_ipv4() {
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            } else {
                std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
        } else {
            bound.ip()
        };
        (
            vec![std::net::SocketAddr::new(ip, bound.port()).to_string()],
            bound.ip().is_unspecified() || bound.ip().is_loopback(),
        )
    } else {
        (invite_addresses.to_vec(), false)
    };
    match make(&addresses, pin, backup) {
        Ok(line) => {
            if local_only {
                out.push("invite (for this machine):".into());
            } else {
                out.push("invite:".into());
            }
            out.push(format!("  {line}"));
            out.push("clients join with: seguro chat <user> --invite '<invite>'".into());
            if local_only {
                out.push(format!(
                    "for friends elsewhere: seguro invite --cert {} --address <host:port they \
                     reach, e.g. ngrok's> (or start with --invite-address)",
                    cert_path.display()
                ));
            }
        }
        Err(e) => out.push(format!("no invite: {e}")),
    }
    out
}

/// Where `seguro chat` connects, and how it pins the server.
pub struct ChatTarget {
    /// Host and port, tried in this order.
    pub addresses: Vec<(String, u16)>,
    /// The pinned client configuration.
    pub tls: Arc<rustls::ClientConfig>,
    /// The join token of the invite, for the server (not sent yet).
    pub token: Option<String>,
}

/// Reads `seguro chat`'s target: `--invite`, an invite in place of the host, or host,
/// port and `--cert`. The error carries the message and the exit code.
pub fn chat_target(a: &ChatArgs) -> Result<ChatTarget, (String, i32)> {
    let invite_text = match (&a.invite, &a.host, a.port) {
        (Some(i), _, _) => Some(i.as_str()),
        (None, Some(h), None) if h.trim_start().starts_with(seguro_core::invite::SCHEME) => {
            Some(h.as_str())
        }
        _ => None,
    };
    let config = |pins: Vec<Pin>| {
        tls::client_config_pins(pins).map_err(|e| (format!("TLS setup failed: {e}"), exit::ERROR))
    };
    if let Some(text) = invite_text {
        let inv = Invite::parse(text).map_err(|e| (format!("invalid invite: {e}"), exit::USAGE))?;
        let addresses = inv
            .addresses()
            .iter()
            .map(|a| (host_text(&a.host), a.port))
            .collect();
        let pins = inv.pins().map(Pin::Key).collect();
        return Ok(ChatTarget {
            addresses,
            tls: config(pins)?,
            token: inv.token().map(|t| t.as_str().to_owned()),
        });
    }
    let (Some(host), Some(port)) = (&a.host, a.port) else {
        return Err((
            "give the server as <host> <port> (with --cert), or an invite (--invite \
             'seguro://...')"
                .into(),
            exit::USAGE,
        ));
    };
    let cert = certs::load_cert(&a.cert).map_err(|e| {
        (
            format!(
                "cannot read the server certificate: {e}. Get the server's server.crt from \
                 its operator and pass it with --cert, or ask for an invite (seguro invite)"
            ),
            exit::ERROR,
        )
    })?;
    Ok(ChatTarget {
        addresses: vec![(host.clone(), port)],
        tls: config(vec![Pin::Certificate(cert)])?,
        token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_arguments() {
        assert_eq!(
            parse_address_arg("tcp://0.TCP.eu.ngrok.io:12345").unwrap(),
            "0.tcp.eu.ngrok.io:12345"
        );
        assert_eq!(parse_address_arg(" [::1]:5000/ ").unwrap(), "[::1]:5000");
        assert!(parse_address_arg("0.tcp.eu.ngrok.io").is_err());
        assert!(parse_address_arg("h:99999").unwrap_err().contains("port"));
    }

    #[test]
    fn qr_codes_are_text() {
        let q = qr("seguro://h:1/v=1").unwrap();
        assert!(q.lines().count() > 10);
        assert!(q.contains('█') || q.contains('▀') || q.contains('▄'));
    }
}
