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
    make_with_token(addresses, pin, backup, None)
}

/// [`make`], with a join token.
pub fn make_with_token(
    addresses: &[String],
    pin: KeyPin,
    backup: Option<KeyPin>,
    token: Option<&str>,
) -> Result<String, String> {
    let parsed = addresses
        .iter()
        .map(|a| Address::parse(a).map_err(|e| format!("{a:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut invite = Invite::new(&parsed, pin).map_err(|e| e.to_string())?;
    if let Some(b) = backup.filter(|b| *b != pin) {
        invite = invite.with_backup(b).map_err(|e| e.to_string())?;
    }
    if let Some(t) = token {
        let t = seguro_core::invite::Token::new(t).map_err(|e| e.to_string())?;
        invite = invite.with_token(t).map_err(|e| e.to_string())?;
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
    let files = crate::admission::Files::beside(&a.cert);
    if a.list {
        return list_tokens(&files);
    }
    if let Some(which) = &a.revoke {
        return revoke_token(&files, which);
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
    // Checked before a token is issued, so a bad address issues none.
    if let Err(e) = make(&a.addresses, pin, backup) {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let wants_token = a.token || a.uses.is_some() || a.expires.is_some() || a.label.is_some();
    let token = if wants_token {
        match issue_token(&files, &a) {
            Ok((id, token, note)) => {
                eprintln!("{note}");
                Some((id, token))
            }
            Err(e) => {
                eprintln!("error: {e}");
                return exit::ERROR;
            }
        }
    } else {
        None
    };
    let line = match make_with_token(
        &a.addresses,
        pin,
        backup,
        token.as_ref().map(|(_, t)| t.as_str()),
    ) {
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

/// Default lifetime of a join token: 7 days.
pub const DEFAULT_TOKEN_LIFETIME: u64 = 7 * 86_400;

/// Issues a join token as `a` asks; returns its number, its text and a note for the
/// operator.
fn issue_token(
    files: &crate::admission::Files,
    a: &InviteArgs,
) -> Result<(u32, String, String), String> {
    use rand_core::RngCore as _;
    let mut random = [0u8; crate::server::admission::TOKEN_BYTES];
    rand_core::OsRng
        .try_fill_bytes(&mut random)
        .map_err(|e| format!("no randomness for a join token: {e}"))?;
    let token = crate::server::admission::token_text(&random);
    let now = crate::admission::now();
    let uses = a.uses.unwrap_or(1);
    let lifetime = a.expires.map_or(Some(DEFAULT_TOKEN_LIFETIME), |l| l.0);
    let expires = lifetime.map(|l| now.saturating_add(l));
    let _lock = files.lock()?;
    let mut tokens = files.load_tokens()?;
    let id = tokens.issue(
        &token,
        Some(uses),
        expires,
        now,
        a.label.as_deref().unwrap_or(""),
    );
    files.save_tokens(&tokens)?;
    let note = format!(
        "join token {id}: admits {uses} {}, {}; stored (hashed) in {}. It works only on a \
         server started with --private; revoke it with `seguro invite --revoke {id}`.",
        if uses == 1 { "person" } else { "people" },
        match expires {
            Some(e) => format!("new joins until {}", date(e)),
            None => "never expires".into(),
        },
        files.tokens_path().display()
    );
    Ok((id, token, note))
}

/// A time in Unix seconds, for people.
pub fn date(ts: u64) -> String {
    match i64::try_from(ts)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
    {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        None => "(unknown time)".into(),
    }
}

/// Text from a file, with control characters shown as escapes.
fn printable(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect()
}

fn list_tokens(files: &crate::admission::Files) -> i32 {
    let tokens = match files.load_tokens() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let now = crate::admission::now();
    if tokens.tokens().is_empty() {
        println!(
            "no join tokens in {} (make one with `seguro invite --uses 1 --expires 7d \
             --address ...`)",
            files.tokens_path().display()
        );
    } else {
        println!("join tokens in {}:", files.tokens_path().display());
        for t in tokens.tokens() {
            let uses = match t.max_uses {
                Some(m) => format!("{}/{m} used", t.used),
                None => format!("{} used, no limit", t.used),
            };
            let when = match (t.revoked, t.expires) {
                (Some(r), _) => format!("revoked {}", date(r)),
                (None, Some(e)) if e <= now => format!("expired {}", date(e)),
                (None, Some(e)) => format!("expires {}", date(e)),
                (None, None) => "never expires".into(),
            };
            let label = if t.label.is_empty() {
                String::new()
            } else {
                format!("  \"{}\"", printable(&t.label))
            };
            println!(
                "  {:>3}  {:<8} {uses}, {when}, made {}{label}",
                t.id,
                t.state(now).to_string(),
                date(t.created)
            );
            for m in tokens.members().iter().filter(|m| m.via == t.id) {
                println!(
                    "         joined: {} (fp {}) {}{}",
                    printable(&m.user),
                    seguro_core::fingerprint::short(&m.key),
                    date(m.at),
                    if t.revoked.is_some() {
                        ", refused since the revocation"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    match files.load_allow() {
        Ok(list) => println!(
            "allow list {}: {} key(s)",
            files.allow_path().display(),
            list.len()
        ),
        Err(e) => {
            println!("allow list: {e}");
            return exit::ERROR;
        }
    }
    exit::OK
}

fn revoke_token(files: &crate::admission::Files, which: &str) -> i32 {
    let result = (|| {
        let _lock = files.lock()?;
        let mut tokens = files.load_tokens()?;
        let w = which.trim();
        let id = if let Ok(n) = w.parse::<u32>() {
            n
        } else {
            let text = if w.starts_with(seguro_core::invite::SCHEME) {
                let inv = Invite::parse(w).map_err(|e| format!("invalid invite: {e}"))?;
                inv.token()
                    .map(|t| t.as_str().to_owned())
                    .ok_or("this invite has no join token")?
            } else {
                w.to_owned()
            };
            let i = tokens
                .find(&crate::server::admission::hash_token(&text))
                .ok_or("no join token of this server matches it")?;
            tokens.tokens()[i].id
        };
        tokens
            .revoke(id, crate::admission::now())
            .map_err(|e| format!("join token {id}: {e}"))?;
        files.save_tokens(&tokens)?;
        let members = tokens.members().iter().filter(|m| m.via == id).count();
        Ok::<_, String>((id, members))
    })();
    match result {
        Ok((id, members)) => {
            println!(
                "revoked join token {id}: it admits no one from now on{}",
                match members {
                    0 => String::new(),
                    n => format!(
                        ", and the {n} {} who joined with it will be refused at their next \
                         connection (add a key to {} to keep it)",
                        if n == 1 { "person" } else { "people" },
                        files.allow_path().display()
                    ),
                }
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::ERROR
        }
    }
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
    /// The join token of the invite, for a private server (sent in `hello`).
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
