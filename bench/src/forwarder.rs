//! The floor: a bare TLS line forwarder with the server's TLS stack and runtime (rustls
//! with ring, smol), but no JSON and no routing.
//!
//! Each connection's first line is answered with a fixed `welcome` line; connections are
//! then paired in the order their first lines arrive, and every later line is copied
//! verbatim to the partner through the same kind of bounded queue and batched writer
//! the server uses (all queued lines in one TLS write and one flush). The load tool registers a pair's two ends one after the other, so
//! the forwarder pairs exactly the connections the server would route between.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_rustls::TlsAcceptor;
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;
use smol::io::{AsyncWriteExt, WriteHalf};
use smol::net::{TcpListener, TcpStream};

use crate::net::{Got, Lines, Result};

const WELCOME: &[u8] = b"{\"type\":\"welcome\",\"users\":{}}\n";

type Line = Arc<[u8]>;
type Tls = futures_rustls::server::TlsStream<TcpStream>;

/// A connection waiting for its partner: its own queue, and where to hand the
/// partner's queue.
type Waiting = Option<(Sender<Line>, Sender<Sender<Line>>)>;

/// Forwarder settings.
pub struct Opts {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Worker threads (0: one per CPU).
    pub threads: usize,
    /// Lines queued per connection.
    pub queue: usize,
    /// Longest line.
    pub max_line: usize,
}

/// Runs the forwarder until killed.
pub fn run(opts: Opts, cert: &Path, key: &Path) -> Result<()> {
    let pair = seguro::certs::load_pair(cert, key)?;
    let tls = seguro::tls::server_config(pair, None)?;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let opts = Arc::new(opts);
    crate::net::block_on_threads(threads, move |ex| {
        Box::pin(async move {
            let listener = TcpListener::bind(opts.bind).await?;
            println!(
                "seguro-bench forwarder listening on {}",
                listener.local_addr()?
            );
            let acceptor = TlsAcceptor::from(tls);
            let waiting: Arc<Mutex<Waiting>> = Arc::new(Mutex::new(None));
            loop {
                let (tcp, _) = listener.accept().await?;
                let _ = tcp.set_nodelay(true);
                let acc = acceptor.clone();
                let w = waiting.clone();
                let o = opts.clone();
                ex.spawn(async move {
                    let _ = connection(acc, tcp, w, &o).await;
                })
                .detach();
            }
        })
    })
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    waiting: Arc<Mutex<Waiting>>,
    opts: &Opts,
) -> Result<()> {
    let tls = acceptor.accept(tcp).await?;
    let (rd, mut wr) = smol::io::split(tls);
    let mut lines = Lines::new(rd, opts.max_line);
    if lines.next_with(|g| matches!(g, Got::Eof)).await? {
        return Ok(());
    }
    let (tx, rx) = channel::bounded::<Line>(opts.queue.max(2));
    let partner = {
        let mut slot = waiting.lock().unwrap_or_else(|e| e.into_inner());
        match slot.take() {
            Some((peer_tx, give)) => {
                let _ = give.try_send(tx.clone());
                Ok(peer_tx)
            }
            None => {
                let (give_tx, give_rx) = channel::bounded(1);
                *slot = Some((tx.clone(), give_tx));
                Err(give_rx)
            }
        }
    };
    // Only now answer: the client registers the partner after this welcome, so the
    // pairing order is the registration order.
    wr.write_all(WELCOME).await?;
    wr.flush().await?;
    drop(tx);
    let reading = async {
        let peer: Sender<Line> = match partner {
            Ok(p) => p,
            Err(give_rx) => give_rx.recv().await?,
        };
        loop {
            let more = lines
                .next_with(|g| match g {
                    Got::Line(l) => {
                        let mut v = Vec::with_capacity(l.len() + 1);
                        v.extend_from_slice(l);
                        v.push(b'\n');
                        // A full queue drops the line, as the server drops the reader.
                        let _ = peer.try_send(v.into());
                        true
                    }
                    Got::Overlong => true,
                    Got::Eof => false,
                })
                .await?;
            if !more {
                return Ok::<(), crate::net::Error>(());
            }
        }
    };
    reading.or(writer(rx, &mut wr)).await
}

/// Writes what is queued as the server's writer does: everything queued at once,
/// gathered into one buffer and handed to TLS in one write (one record per 16 KiB, one
/// socket write), then one flush.
async fn writer(rx: Receiver<Line>, wr: &mut WriteHalf<Tls>) -> Result<()> {
    let mut out = Vec::new();
    while let Ok(first) = rx.recv().await {
        out.extend_from_slice(&first);
        while let Ok(more) = rx.try_recv() {
            out.extend_from_slice(&more);
        }
        wr.write_all(&out).await?;
        wr.flush().await?;
        out.clear();
        if out.capacity() > KEEP_OUT {
            out = Vec::new();
        }
    }
    Ok(())
}

/// The write buffer is freed after a batch larger than this.
const KEEP_OUT: usize = 16 * 1024;
