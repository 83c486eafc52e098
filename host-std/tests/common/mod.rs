//! Test harness: temp dirs, the `seguro` binary as server and clients, a raw TLS client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use rustls::pki_types::CertificateDer;
use seguro_core::e2ee::KeyPair;
use seguro_core::msg::{self, Message};

pub const BIN: &str = env!("CARGO_BIN_EXE_seguro");
pub const T: Duration = Duration::from_secs(15);

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "seguro-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// Makes `<name>.crt` and `<name>.key` here with `seguro gen-cert`; the certificate.
    pub fn gen_cert(&self, name: &str) -> PathBuf {
        let crt = self.path(&format!("{name}.crt"));
        let o = Command::new(BIN)
            .args(["gen-cert", "--cert"])
            .arg(&crt)
            .arg("--key")
            .arg(self.path(&format!("{name}.key")))
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        crt
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines so far and whether the stream ended, with a condition variable.
type Shared = (Mutex<(Vec<String>, bool)>, Condvar);

/// Lines a child printed, shared with its reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Shared>);

impl Lines {
    pub fn spawn_reader(&self, r: impl Read + Send + 'static) {
        let me = self.clone();
        thread::spawn(move || {
            let mut br = BufReader::new(r);
            let mut s = String::new();
            loop {
                s.clear();
                match br.read_line(&mut s) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let (m, cv) = &*me.0;
                        m.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                            .push(s.trim_end_matches(['\n', '\r']).to_owned());
                        cv.notify_all();
                    }
                }
            }
            let (m, cv) = &*me.0;
            m.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
            cv.notify_all();
        });
    }

    pub fn all(&self) -> Vec<String> {
        self.0.0.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    pub fn contains(&self, needle: &str) -> bool {
        let g = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        g.0.iter().any(|l| l.contains(needle))
    }

    /// Waits until a line satisfies `pred`; panics with the output after `timeout`.
    pub fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.0;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(l) = g.0.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let now = Instant::now();
            if now >= deadline || g.1 {
                if let Some(l) = g.0.iter().find(|l| pred(l)) {
                    return l.clone();
                }
                panic!(
                    "timed out waiting for {what}; output so far:\n{}",
                    g.0.join("\n")
                );
            }
            g = cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until `n` lines satisfy `pred`.
    pub fn wait_count(&self, what: &str, n: usize, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.0;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if g.0.iter().filter(|l| pred(l)).count() >= n {
                return;
            }
            let now = Instant::now();
            if now >= deadline || g.1 {
                panic!(
                    "timed out waiting for {n} x {what}; output so far:\n{}",
                    g.0.join("\n")
                );
            }
            g = cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait(needle, T, |l| l.contains(needle))
    }

    /// Waits for an exact line.
    pub fn wait_exact(&self, exact: &str) -> String {
        self.wait(exact, T, |l| l == exact)
    }

    /// Waits for the stream to end.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.0;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        while !g.1 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// Waits for a child with a timeout; kills it if it does not exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A `seguro serve` process.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub out: Lines,
    pub err: Lines,
    pub cert: PathBuf,
}

impl Server {
    /// Starts `seguro serve --bind 127.0.0.1:0` with cert/key in `dir` plus `extra` args.
    pub fn start(dir: &TempDir, extra: &[&str]) -> Self {
        Self::start_with(&dir.path("server.crt"), &dir.path("server.key"), extra)
    }

    pub fn start_with(cert: &Path, key: &Path, extra: &[&str]) -> Self {
        Self::start_logging(cert, key, extra, "debug")
    }

    /// Like [`Server::start_with`], with `RUST_LOG` set to `log`.
    pub fn start_logging(cert: &Path, key: &Path, extra: &[&str], log: &str) -> Self {
        Self::spawn(Command::new(BIN), cert, key, extra, log)
    }

    /// Like [`Server::start`], from a shell that first lowers the soft limit on open
    /// files to `soft`.
    pub fn start_soft_nofile(dir: &TempDir, soft: u64) -> Self {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -S -n {soft} && exec \"$0\" \"$@\""))
            .arg(BIN);
        Self::spawn(
            cmd,
            &dir.path("server.crt"),
            &dir.path("server.key"),
            &[],
            "info",
        )
    }

    fn spawn(mut cmd: Command, cert: &Path, key: &Path, extra: &[&str], log: &str) -> Self {
        let bind: &[&str] = if extra.contains(&"--bind") {
            &[]
        } else {
            &["--bind", "127.0.0.1:0"]
        };
        let mut child = cmd
            .arg("serve")
            .args(bind)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(extra)
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Lines::default();
        let err = Lines::default();
        out.spawn_reader(child.stdout.take().unwrap());
        err.spawn_reader(child.stderr.take().unwrap());
        let l = out.wait("listening line", T, |l| l.contains(" listening on "));
        let addr = l.rsplit(' ').next().unwrap().parse().unwrap();
        Self {
            child,
            addr,
            out,
            err,
            cert: cert.to_owned(),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pinned(&self) -> CertificateDer<'static> {
        seguro::certs::load_cert(&self.cert).unwrap()
    }

    /// Asserts the server process is still running.
    pub fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "server died; stderr:\n{}",
            self.err.all().join("\n")
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `seguro chat` process with piped stdin/stdout (the non-terminal mode).
pub struct Chat {
    pub child: Child,
    stdin: Option<ChildStdin>,
    pub out: Lines,
    pub err: Lines,
    /// A fresh `XDG_DATA_HOME` (so a fresh identity) unless `--state-dir` was given.
    _state: Option<TempDir>,
}

impl Chat {
    pub fn start(user: &str, port: u16, cert: &Path, extra: &[&str]) -> Self {
        Self::start_host(user, "127.0.0.1", port, cert, extra)
    }

    pub fn start_host(user: &str, host: &str, port: u16, cert: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["chat", user, host];
        let port = port.to_string();
        let cert = cert.to_str().expect("UTF-8 path");
        args.extend([port.as_str(), "--cert", cert]);
        args.extend(extra);
        Self::start_args(&args, None)
    }

    /// Starts `seguro <args>` (e.g. `chat alice --invite ...`), in `cwd` if given, with a
    /// state directory of its own unless `--state-dir` is among the arguments.
    pub fn start_args(args: &[&str], cwd: Option<&Path>) -> Self {
        let state = (!args.contains(&"--state-dir")).then(|| TempDir::new("state"));
        let mut cmd = Command::new(BIN);
        if let Some(s) = &state {
            cmd.env("XDG_DATA_HOME", &s.0);
        }
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Lines::default();
        let err = Lines::default();
        out.spawn_reader(child.stdout.take().unwrap());
        err.spawn_reader(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            out,
            err,
            _state: state,
        }
    }

    /// Starts and waits for the registration line.
    pub fn connect(user: &str, port: u16, cert: &Path) -> Self {
        let c = Self::start(user, port, cert, &[]);
        c.out
            .wait_for(&format!("[SYS] connected to 127.0.0.1:{port} as {user}"));
        c
    }

    pub fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().expect("stdin open");
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    /// Closes stdin and waits for the exit code.
    pub fn finish(mut self) -> (Option<i32>, Lines) {
        drop(self.stdin.take());
        let code = wait_exit(&mut self.child, T);
        (code, self.out.clone())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS client speaking raw protocol lines (rustls with the same pinned verifier).
pub struct Raw {
    pub tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
    pub key: [u8; 32],
}

impl Raw {
    pub fn connect(port: u16, pinned: CertificateDer<'static>) -> Self {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        tcp.set_write_timeout(Some(T)).unwrap();
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
                Err(e) => panic!("TLS handshake failed: {e}"),
            }
        }
        let kp = KeyPair::generate(&mut rand_core::OsRng);
        Self {
            tls,
            buf: Vec::new(),
            key: kp.public(),
        }
    }

    /// Connects and registers as `user`; returns after the welcome.
    pub fn register(port: u16, pinned: CertificateDer<'static>, user: &str) -> Self {
        let mut r = Self::connect(port, pinned);
        let hello = format!(
            "{{\"type\": \"hello\", \"user\": \"{user}\", \"pub\": \"{}\"}}",
            Base64::encode_string(&r.key)
        );
        r.send_line(&hello);
        let w = r.read_line(T).expect("welcome");
        assert!(w.contains("\"welcome\""), "expected welcome, got {w}");
        r
    }

    pub fn send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(b)?;
        self.tls.flush()
    }

    pub fn send_line(&mut self, l: &str) {
        self.send_bytes(format!("{l}\n").as_bytes()).unwrap();
    }

    /// Next line, or None if the connection closed or nothing came within `timeout`.
    pub fn read_line(&mut self, timeout: Duration) -> Option<String> {
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

    /// Reads lines until one contains `needle` (skipping e.g. `users` pushes).
    pub fn read_until(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_line(left) {
                Some(l) if l.contains(needle) => return l,
                Some(_) => {}
                None => panic!("no line containing {needle:?} before timeout or close"),
            }
        }
    }

    /// True if the server closes the connection within `timeout` (lines are skipped).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let mut b = [0u8; 4096];
            match self.tls.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return false;
                    }
                }
                Err(_) => return true,
            }
        }
    }
}

/// The `text` of an `error` line (None if the line is not an error).
pub fn error_text(line: &str) -> Option<String> {
    let mut scratch = vec![0u8; line.len()];
    match msg::parse(line.as_bytes(), &mut scratch) {
        Ok(Message::Error { text }) => Some(text.to_owned()),
        _ => None,
    }
}

/// Runs `openssl req` like the reference's instructions (RSA-2048, PKCS#8 key).
pub fn openssl_rsa_pair(dir: &TempDir) -> (PathBuf, PathBuf) {
    let crt = dir.path("rsa.crt");
    let key = dir.path("rsa.key");
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .args(["-days", "365", "-nodes", "-subj", "/CN=servidor-local"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed (scripts/ci/20-host-std.sh installs it)");
    assert!(st.success());
    (crt, key)
}
