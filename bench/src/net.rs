//! Shared plumbing: pinned TLS connections, line I/O, byte counting, the server process
//! under test (spawned or external), /proc readings and the file-descriptor limit.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use smol::future::FutureExt as _;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::TcpStream;

use seguro_core::e2ee::KeyPair;
use seguro_core::frame::{FeedResult, LineAccumulator};
use seguro_core::msg::Message;

/// A boxed error with a message, for the tool's own failures.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// The tool's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Instant all timestamps carried in messages are measured from.
pub fn epoch() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Runs `fut`, failing with `what` after `d`.
pub async fn timeout<T>(
    d: Duration,
    what: &str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    let what = what.to_owned();
    fut.or(async move {
        smol::Timer::after(d).await;
        Err(format!("timed out after {d:?}: {what}").into())
    })
    .await
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) afterwards.
pub fn raise_nofile() -> (u64, u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                (hard, hard)
            } else {
                (soft, hard)
            }
        }
        Err(_) => (0, 0),
    }
}

/// A field of /proc/<pid>/status in KiB (e.g. `VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// CPU seconds a process has spent so far, user plus system, all its threads
/// (`utime` + `stime` of /proc/<pid>/stat, in clock ticks).
pub fn proc_cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let rest = s.get(s.rfind(')')? + 1..)?;
    let mut f = rest.split_whitespace();
    // After ')': state is field 3, so utime (14) and stime (15) are the 12th and 13th.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks() as f64)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
fn clock_ticks() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// A field of /proc/<pid>/io (e.g. `wchar`: bytes passed to write-like system calls).
pub fn proc_io(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    s.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().parse().ok()
    })
}

/// A TCP stream that counts the bytes read from and written to the socket.
pub struct Counted {
    inner: TcpStream,
    read: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.read.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Where to connect and what certificate to pin.
#[derive(Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// rustls client configuration pinning the server certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// Send a PROXY protocol v1 header first (for `serve --proxy-protocol`), with a
    /// made-up source per connection: `10.77.<port / 256>.<port % 256>` and the local
    /// port, which is then the address the server logs.
    pub proxy: bool,
    /// SHA-256 of the pinned certificate's SubjectPublicKeyInfo (a v2 client's proof of
    /// possession is tied to it, protocol v2 §4.2).
    pub spki: [u8; 32],
}

impl Target {
    /// Pins the certificate in the PEM file `cert`.
    pub fn new(addr: SocketAddr, cert: &Path) -> Result<Self> {
        let der = seguro::certs::load_cert(cert)?;
        let spki = seguro::pin::key_pin_of(&der)?.sha256;
        Ok(Self {
            addr,
            tls: seguro::tls::client_config(der)?,
            proxy: false,
            spki,
        })
    }

    /// The same target with a client configuration of its own: with `resume`, a ticket
    /// store of its own (empty), so it resumes the sessions it made itself, as one
    /// reconnecting client does; without, resumption off, so every connection makes a
    /// full handshake (the certificate's signature included), as a first connection does.
    pub fn own_client(&self, resume: bool) -> Self {
        let mut cfg = (*self.tls).clone();
        cfg.resumption = if resume {
            rustls::client::Resumption::default()
        } else {
            rustls::client::Resumption::disabled()
        };
        Self {
            tls: Arc::new(cfg),
            ..self.clone()
        }
    }
}

/// The PROXY v1 header of a TCP4 connection from `src` to `dst`.
pub fn proxy_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// Opens TCP to the target (and sends its PROXY header, if it wants one); also returns
/// the client address the server sees.
pub async fn tcp_connect(t: &Target) -> Result<(TcpStream, SocketAddr)> {
    let mut tcp = TcpStream::connect(t.addr).await?;
    let seen = introduce(t, &mut tcp).await?;
    Ok((tcp, seen))
}

/// Sends the PROXY header if the target wants one; the client address the server sees.
async fn introduce(t: &Target, tcp: &mut TcpStream) -> Result<SocketAddr> {
    let local = tcp.local_addr()?;
    if !t.proxy {
        return Ok(local);
    }
    let [hi, lo] = local.port().to_be_bytes();
    let src = SocketAddr::from(([10, 77, hi, lo], local.port()));
    tcp.write_all(&proxy_v1(src, t.addr)).await?;
    Ok(src)
}

/// The TLS stream of a client connection.
pub type Tls = TlsStream<Counted>;

/// Opens TCP, then pinned TLS (`read` counts raw bytes received); also returns the local address of the TCP connection.
pub async fn connect_tls_local(t: &Target, read: Arc<AtomicU64>) -> Result<(Tls, SocketAddr)> {
    connect_tls_with(t, read, None).await
}

/// Like [`connect_tls_local`], with the socket's receive buffer set to `rcvbuf` bytes
/// before connecting (a small one makes a client that never reads stall quickly).
pub async fn connect_tls_with(
    t: &Target,
    read: Arc<AtomicU64>,
    rcvbuf: Option<usize>,
) -> Result<(Tls, SocketAddr)> {
    let mut tcp = match rcvbuf {
        None => TcpStream::connect(t.addr).await?,
        Some(n) => {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(t.addr),
                socket2::Type::STREAM,
                None,
            )?;
            sock.set_recv_buffer_size(n)?;
            sock.connect(&t.addr.into())?;
            TcpStream::try_from(std::net::TcpStream::from(sock))?
        }
    };
    tcp.set_nodelay(true)?;
    let local = introduce(t, &mut tcp).await?;
    let counted = Counted { inner: tcp, read };
    let tls = TlsConnector::from(t.tls.clone())
        .connect(seguro::tls::server_name(), counted)
        .await?;
    Ok((tls, local))
}

/// Splits a byte stream into lines (longest `max` bytes; longer ones are reported).
pub struct Lines<R> {
    rd: R,
    acc: LineAccumulator<Vec<u8>>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// One item from [`Lines::next_with`].
pub enum Got<'a> {
    /// A complete line without its `\n`.
    Line(&'a [u8]),
    /// A line longer than the accumulator.
    Overlong,
    /// End of stream.
    Eof,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    /// Reads lines of up to `max` bytes from `rd`.
    pub fn new(rd: R, max: usize) -> Self {
        Self {
            rd,
            acc: LineAccumulator::new(vec![0u8; max]),
            buf: vec![0u8; 16 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// Waits for the next line and hands it to `f`.
    pub async fn next_with<T>(&mut self, f: impl FnOnce(Got<'_>) -> T) -> io::Result<T> {
        loop {
            if self.start < self.end {
                let end = self.end;
                let input = self.buf.get(self.start..end).unwrap_or(&[]);
                match self.acc.feed(input) {
                    FeedResult::Consumed => self.start = end,
                    FeedResult::Line { line, remaining } => {
                        self.start = end - remaining.len();
                        return Ok(f(Got::Line(line)));
                    }
                    FeedResult::Overlong { remaining } => {
                        self.start = end - remaining.len();
                        return Ok(f(Got::Overlong));
                    }
                }
                continue;
            }
            let n = self.rd.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(f(Got::Eof));
            }
            self.start = 0;
            self.end = n;
        }
    }
}

/// The first word of a server line's `type`, as a coarse classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `welcome`.
    Welcome,
    /// `users`.
    Users,
    /// `relay`.
    Relay,
    /// `error`.
    Error,
    /// `server`.
    Server,
    /// Anything else, or unparsable.
    Other,
}

/// Classifies a line the server sent.
pub fn kind_of(line: &[u8], scratch: &mut [u8]) -> Kind {
    match seguro_core::msg::parse(line, scratch) {
        Ok(Message::Welcome { .. }) => Kind::Welcome,
        Ok(Message::Users { .. }) => Kind::Users,
        Ok(Message::Relay(_)) => Kind::Relay,
        Ok(Message::Error { .. }) => Kind::Error,
        Ok(Message::Server { .. }) => Kind::Server,
        _ => Kind::Other,
    }
}

/// The `hello` line for `user` with `keys`.
pub fn hello_line(user: &str, keys: &KeyPair) -> Vec<u8> {
    let m = Message::Hello {
        user,
        key: keys.public(),
        token: None,
    };
    let mut v = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut v).unwrap_or(0);
    v.truncate(n);
    v
}

/// A registered client: connected, hello sent, welcome received.
pub struct Client {
    /// Reading half, as lines.
    pub lines: Lines<smol::io::ReadHalf<Tls>>,
    /// Writing half.
    pub wr: smol::io::WriteHalf<Tls>,
    /// Raw bytes received from the socket so far.
    pub read: Arc<AtomicU64>,
    /// The TLS session was resumed (a TLS 1.3 ticket from an earlier session), not a
    /// full handshake.
    pub resumed: bool,
}

/// Connects, sends `hello` and waits for `welcome` (error text if refused).
pub async fn join(t: &Target, user: &str, keys: &KeyPair, max_line: usize) -> Result<Client> {
    Ok(join_local(t, user, keys, max_line).await?.0)
}

/// Like [`join`], also returning the local address of the TCP connection.
pub async fn join_local(
    t: &Target,
    user: &str,
    keys: &KeyPair,
    max_line: usize,
) -> Result<(Client, SocketAddr)> {
    join_with(t, user, keys, max_line, None).await
}

/// Like [`join_local`], with a receive buffer size for the socket.
pub async fn join_with(
    t: &Target,
    user: &str,
    keys: &KeyPair,
    max_line: usize,
    rcvbuf: Option<usize>,
) -> Result<(Client, SocketAddr)> {
    let read = Arc::new(AtomicU64::new(0));
    let (tls, local) = connect_tls_with(t, read.clone(), rcvbuf).await?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let (rd, mut wr) = smol::io::split(tls);
    wr.write_all(&hello_line(user, keys)).await?;
    wr.flush().await?;
    let mut lines = Lines::new(rd, max_line);
    let mut scratch = vec![0u8; max_line];
    loop {
        let step = lines
            .next_with(|g| match g {
                Got::Line(l) => match seguro_core::msg::parse(l, &mut scratch) {
                    Ok(Message::Welcome { .. }) => Some(Ok(())),
                    Ok(Message::Error { text }) => Some(Err(format!("refused: {text}"))),
                    _ => None,
                },
                Got::Overlong => None,
                Got::Eof => Some(Err("connection closed before welcome".to_owned())),
            })
            .await?;
        match step {
            Some(Ok(())) => {
                return Ok((
                    Client {
                        lines,
                        wr,
                        read,
                        resumed,
                    },
                    local,
                ));
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
}

/// A server process started by the tool.
pub struct Spawned {
    /// The child process.
    pub child: Child,
    /// The address it printed.
    pub addr: SocketAddr,
    /// File receiving its standard error.
    pub stderr_path: PathBuf,
}

impl Spawned {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `wait` for the exit status.
    pub fn stop(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = i32::try_from(self.child.id()).unwrap_or(0);
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `program args…`, with stderr to `stderr_path`, and waits (up to 20 s) for a
/// stdout line containing `listening on <addr>`; keeps draining stdout afterwards.
pub fn spawn_listening(
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    stderr_path: &Path,
) -> Result<Spawned> {
    let err = std::fs::File::create(stderr_path)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut sent = false;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.trim().to_owned());
                sent = true;
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(stderr_path).unwrap_or_default();
            return Err(format!("{} did not start listening: {log}", program.display()).into());
        }
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad listening address {addr:?}: {e}"))?;
    Ok(Spawned {
        child,
        addr,
        stderr_path: stderr_path.to_owned(),
    })
}

/// A fresh ECDSA certificate and key in `dir` (server.crt, server.key).
pub fn make_cert(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    seguro::certs::generate_files(&cert, &key, seguro::certs::DEFAULT_CN, 2, true)?;
    Ok((cert, key))
}

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `/tmp/seguro-bench-<pid>-<tag>`.
    pub fn new(tag: &str) -> Result<Self> {
        let p = std::env::temp_dir().join(format!("seguro-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `fut` on an executor with `threads` threads.
pub fn block_on_threads<T: Send + 'static>(
    threads: usize,
    fut: impl FnOnce(Arc<smol::Executor<'static>>) -> std::pin::Pin<Box<dyn Future<Output = T> + Send>>,
) -> T {
    let ex = Arc::new(smol::Executor::new());
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let mut workers = Vec::new();
    for _ in 1..threads.max(1) {
        let ex = ex.clone();
        let stop = stop_rx.clone();
        workers.push(std::thread::spawn(move || {
            smol::block_on(ex.run(stop.recv()))
        }));
    }
    let out = smol::block_on(ex.run(fut(ex.clone())));
    drop(stop_tx);
    for w in workers {
        let _ = w.join();
    }
    out
}
