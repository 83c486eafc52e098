//! Server certificates: generating Seguro's ECDSA P-256 pair, loading PEM pairs, fingerprints.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// The common name and subject alternative name of the reference's certificate.
pub const DEFAULT_CN: &str = "servidor-local";

/// Default validity of a generated certificate, in days (ten years: the certificate is
/// pinned, not checked against a clock-sensitive CA chain).
pub const DEFAULT_DAYS: u32 = 3650;

/// Why a certificate or key could not be made, read or written.
#[derive(Debug)]
pub enum CertError {
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        err: io::Error,
    },
    /// The file is not PEM of the expected kind.
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Only one of certificate and key exists.
    HalfPair {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// The target file exists and `--force` was not given.
    Exists(PathBuf),
    /// Certificate generation failed.
    Generate(String),
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, err } => write!(f, "{}: {err}", path.display()),
            Self::Pem { path, what } => write!(f, "{}: {what}", path.display()),
            Self::HalfPair { present, missing } => write!(
                f,
                "{} exists but {} does not: restore the missing file, or move {} away to \
                 generate a new pair (clients will then need the new certificate)",
                present.display(),
                missing.display(),
                present.display()
            ),
            Self::Exists(p) => write!(
                f,
                "{} already exists; use --force to overwrite it (clients pinned to the old \
                 certificate will refuse the new one)",
                p.display()
            ),
            Self::Generate(e) => write!(f, "certificate generation failed: {e}"),
        }
    }
}

impl std::error::Error for CertError {}

/// A certificate chain and its private key, as rustls wants them.
#[derive(Debug)]
pub struct CertPair {
    /// The chain, end-entity first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl CertPair {
    /// The end-entity certificate (`None` only for a hand-built empty chain).
    pub fn end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }
}

/// SHA-256 of `data` as colon-separated upper-case hex (the form `openssl x509 -fingerprint
/// -sha256` prints).
pub fn sha256_colon_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(95);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// Reads the first certificate of a PEM file (the one a client pins).
pub fn load_cert(path: &Path) -> Result<CertificateDer<'static>, CertError> {
    let chain = load_chain(path)?;
    chain.into_iter().next().ok_or_else(|| CertError::Pem {
        path: path.to_owned(),
        what: "no certificate found".into(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|err| CertError::Io {
        path: path.to_owned(),
        err,
    })
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let data = read(path)?;
    let mut chain = Vec::new();
    for c in CertificateDer::pem_slice_iter(&data) {
        chain.push(c.map_err(|e| CertError::Pem {
            path: path.to_owned(),
            what: format!("bad PEM certificate: {e}"),
        })?);
    }
    if chain.is_empty() {
        return Err(CertError::Pem {
            path: path.to_owned(),
            what: "no \"BEGIN CERTIFICATE\" block found".into(),
        });
    }
    Ok(chain)
}

/// Loads a PEM certificate chain and its private key (PKCS#8 `PRIVATE KEY`, PKCS#1
/// `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertPair, CertError> {
    let chain = load_chain(cert)?;
    let data = read(key)?;
    let key = PrivateKeyDer::from_pem_slice(&data).map_err(|e| CertError::Pem {
        path: key.to_owned(),
        what: format!(
            "no usable private key (expected PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \
             \"EC PRIVATE KEY\"): {e}"
        ),
    })?;
    Ok(CertPair { chain, key })
}

/// A freshly generated pair in PEM.
#[derive(Debug)]
pub struct GeneratedPem {
    /// `BEGIN CERTIFICATE` PEM.
    pub cert_pem: String,
    /// `BEGIN PRIVATE KEY` (PKCS#8) PEM.
    pub key_pem: String,
}

/// Generates a self-signed ECDSA P-256 certificate with CN and SAN `cn`, valid from
/// yesterday for `days` days.
pub fn generate(cn: &str, days: u32) -> Result<GeneratedPem, CertError> {
    let g = |e: rcgen::Error| CertError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(g)?;
    let mut params = rcgen::CertificateParams::new(vec![cn.to_owned()]).map_err(g)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(days.max(1)));
    let cert = params.self_signed(&key).map_err(g)?;
    Ok(GeneratedPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn write_new(path: &Path, data: &str, force: bool, private: bool) -> Result<(), CertError> {
    let io = |err| CertError::Io {
        path: path.to_owned(),
        err,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io)?;
    }
    // Overwriting: a fresh file beside, then renamed over the old one, so the new file
    // has the intended mode whatever the old one had (and is never half written).
    let target = path;
    let tmp;
    let path = if force {
        let mut name = path.as_os_str().to_owned();
        name.push(".tmp");
        tmp = std::path::PathBuf::from(name);
        let _ = fs::remove_file(&tmp);
        tmp.as_path()
    } else {
        path
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(|err| {
        if err.kind() == io::ErrorKind::AlreadyExists {
            CertError::Exists(path.to_owned())
        } else {
            io(err)
        }
    })?;
    io::Write::write_all(&mut f, data.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    if force {
        fs::rename(path, target).map_err(io)?;
    }
    Ok(())
}

/// True if the file at `path` can be read by its group or by others (Unix).
pub fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Generates a pair and writes it; refuses to overwrite either file unless `force`.
pub fn generate_files(
    cert: &Path,
    key: &Path,
    cn: &str,
    days: u32,
    force: bool,
) -> Result<(), CertError> {
    if !force {
        for p in [cert, key] {
            if p.exists() {
                return Err(CertError::Exists(p.to_owned()));
            }
        }
    }
    let pem = generate(cn, days)?;
    write_new(key, &pem.key_pem, force, true)?;
    write_new(cert, &pem.cert_pem, force, false)
}

/// What `load_or_generate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Both files existed and were loaded.
    Loaded,
    /// Neither existed: a new pair was generated and written.
    Generated,
}

/// The server's start-up rule: load both files; if neither exists generate a pair; if
/// only one exists, stop.
pub fn load_or_generate(cert: &Path, key: &Path) -> Result<(CertPair, Origin), CertError> {
    match (cert.exists(), key.exists()) {
        (true, true) => Ok((load_pair(cert, key)?, Origin::Loaded)),
        (false, false) => {
            generate_files(cert, key, DEFAULT_CN, DEFAULT_DAYS, false)?;
            Ok((load_pair(cert, key)?, Origin::Generated))
        }
        (true, false) => Err(CertError::HalfPair {
            present: cert.to_owned(),
            missing: key.to_owned(),
        }),
        (false, true) => Err(CertError::HalfPair {
            present: key.to_owned(),
            missing: cert.to_owned(),
        }),
    }
}

/// The key pin (SHA-256 of the SubjectPublicKeyInfo, with the key type) of a
/// certificate: what invites carry.
pub fn key_pin(cert: &CertificateDer<'_>) -> Result<seguro_core::invite::KeyPin, String> {
    crate::pin::key_pin_of(cert)
}

/// Writes a new self-signed certificate for the key already in `key` (PKCS#8 PEM), so
/// that clients pinning the key (invites) keep accepting the server. Overwrites `cert`.
pub fn renew(cert: &Path, key: &Path, cn: &str, days: u32) -> Result<(), CertError> {
    let pem = String::from_utf8(read(key)?).map_err(|_| CertError::Pem {
        path: key.to_owned(),
        what: "not a PEM text file".into(),
    })?;
    let pair = rcgen::KeyPair::from_pem(&pem).map_err(|e| CertError::Pem {
        path: key.to_owned(),
        what: format!(
            "cannot use this key to sign a new certificate ({e}); --renew reads PKCS#8 \
             (\"BEGIN PRIVATE KEY\") keys, e.g. `openssl pkcs8 -topk8 -nocrypt` converts others"
        ),
    })?;
    let g = |e: rcgen::Error| CertError::Generate(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec![cn.to_owned()]).map_err(g)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(days.max(1)));
    let new = params.self_signed(&pair).map_err(g)?;
    // Written beside, then renamed: the old certificate or the new one, never half.
    let tmp = cert.with_extension("crt.tmp");
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, &new.pem(), false, false)?;
    fs::rename(&tmp, cert).map_err(|err| CertError::Io {
        path: cert.to_owned(),
        err,
    })
}
