//! Connection storms: new TLS sessions carried through to `hello`/`welcome`, as fast as
//! a fixed number of workers can open them, each closed cleanly (close_notify) once
//! welcomed, so the server's directory stays small.
//!
//! A storm makes full handshakes, or (with resumption) resumes TLS 1.3 sessions with the
//! tickets the server sent in earlier ones, as a reconnecting client does. Each worker
//! is one client with a ticket store of its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand_core::OsRng;
use smol::Executor;
use smol::io::AsyncWriteExt;

use seguro_core::e2ee::KeyPair;

use crate::net::{self, Result, Target};

/// The server certificate's key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA P-256 (what `seguro serve` and `seguro gen-cert` make).
    P256,
    /// RSA 2048 (made with the `openssl` command).
    Rsa2048,
}

impl KeyType {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::Rsa2048 => "rsa2048",
        }
    }
}

/// A certificate and key of `kind` in `dir` (`server.crt`, `server.key`), replacing
/// any there.
pub fn make_cert(dir: &Path, kind: KeyType) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let _ = std::fs::remove_file(&cert);
    let _ = std::fs::remove_file(&key);
    match kind {
        KeyType::P256 => net::make_cert(dir),
        KeyType::Rsa2048 => {
            let out = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", &format!("/CN={}", seguro::certs::DEFAULT_CN)])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .map_err(|e| format!("cannot run openssl for an RSA certificate: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "openssl failed to make an RSA certificate: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
            Ok((cert, key))
        }
    }
}

/// What a storm did.
#[derive(Debug, Clone, Default)]
pub struct Storm {
    /// Sessions welcomed (and closed).
    pub welcomed: u64,
    /// Of the welcomed sessions, those resumed from a ticket (no certificate signature).
    pub resumed: u64,
    /// Attempts that failed (TLS, refusal, timeout).
    pub failed: u64,
    /// The first failure's text.
    pub first_error: Option<String>,
    /// Seconds from the start to the stop.
    pub secs: f64,
}

impl Storm {
    /// Welcomed sessions per second.
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.welcomed as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// Opens sessions with `workers` workers (each: TCP, TLS, `hello`, `welcome`,
/// close_notify, next) until `stop` is set. With `resume`, each worker keeps the tickets
/// its sessions receive and resumes with them; without, every handshake is full.
pub async fn storm(
    ex: Arc<Executor<'static>>,
    target: Target,
    workers: usize,
    max_line: usize,
    resume: bool,
    stop: Arc<AtomicBool>,
) -> Storm {
    let tag = format!("{:08x}", rand_core::RngCore::next_u32(&mut OsRng));
    let welcomed = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers.max(1) {
        // A configuration per worker: rustls keeps tickets in the configuration, so
        // workers sharing one would take each other's.
        // A configuration per worker: rustls keeps tickets in the configuration, so
        // workers sharing one would take each other's.
        let target = target.own_client(resume);
        let (stop, welcomed, resumed, failed, first_error, tag) = (
            stop.clone(),
            welcomed.clone(),
            resumed.clone(),
            failed.clone(),
            first_error.clone(),
            tag.clone(),
        );
        tasks.push(ex.spawn(async move {
            let keys = KeyPair::generate(&mut OsRng);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("h{w}-{i}-{tag}");
                i += 1;
                let joined = net::timeout(
                    Duration::from_secs(20),
                    "handshake and hello",
                    net::join(&target, &name, &keys, max_line),
                )
                .await
                .map_err(|e| e.to_string());
                match joined {
                    Ok(mut c) => {
                        welcomed.fetch_add(1, Ordering::Relaxed);
                        if c.resumed {
                            resumed.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = net::timeout(Duration::from_secs(5), "close", async {
                            c.wr.close().await?;
                            Ok(())
                        })
                        .await;
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                        smol::Timer::after(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let first = first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Storm {
        welcomed: welcomed.load(Ordering::Relaxed),
        resumed: resumed.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        first_error: first,
        secs: t0.elapsed().as_secs_f64(),
    }
}

/// A storm for `secs` seconds.
pub async fn storm_for(
    ex: Arc<Executor<'static>>,
    target: Target,
    workers: usize,
    max_line: usize,
    resume: bool,
    secs: f64,
) -> Storm {
    let stop = Arc::new(AtomicBool::new(false));
    let task = ex.spawn(storm(
        ex.clone(),
        target,
        workers,
        max_line,
        resume,
        stop.clone(),
    ));
    smol::Timer::after(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    task.await
}
