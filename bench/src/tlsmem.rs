//! `seguro-bench tls-mem`: the memory rustls holds per established, idle server
//! connection, measured in process: N in-memory TLS 1.3 sessions (client and server
//! `rustls` connections exchanging records through buffers, no sockets) are completed,
//! each carries one `hello` line, the clients are dropped and the servers kept; the
//! process's RSS before and after, divided by N.

use std::io::{Read, Write};

use rustls::{ClientConnection, Connection, ServerConnection};

use crate::net::{self, Result, TempDir};

/// Moves every pending record from `from` to `to` and lets `to` process them.
fn pump(from: &mut Connection, to: &mut Connection) -> Result<bool> {
    let mut moved = false;
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf)?;
    }
    let mut rest = &buf[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest)?;
        to.process_new_packets()?;
        moved = true;
    }
    Ok(moved)
}

fn rss_kib() -> Result<u64> {
    net::proc_status_kib(std::process::id(), "VmRSS").ok_or_else(|| "no VmRSS".into())
}

/// Runs the measurement with `n` connections and prints it.
pub fn run(n: usize) -> Result<()> {
    let dir = TempDir::new("tls-mem")?;
    let (cert, key) = net::make_cert(&dir.0)?;
    let pair = seguro::certs::load_pair(&cert, &key)?;
    let pinned = pair.end_entity().ok_or("no certificate")?.clone();
    let server_cfg = seguro::tls::server_config(pair, None)?;
    let client_cfg = seguro::tls::client_config(pinned)?;
    let mut servers: Vec<Connection> = Vec::with_capacity(n);
    let one = |servers: &mut Vec<Connection>| -> Result<()> {
        let mut c = Connection::from(ClientConnection::new(
            client_cfg.clone(),
            seguro::tls::server_name(),
        )?);
        let mut s = Connection::from(ServerConnection::new(server_cfg.clone())?);
        for _ in 0..16 {
            let a = pump(&mut c, &mut s)?;
            let b = pump(&mut s, &mut c)?;
            if !a && !b && !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        if c.is_handshaking() || s.is_handshaking() {
            return Err("handshake did not complete".into());
        }
        c.writer()
            .write_all(b"{\"type\":\"hello\",\"user\":\"x\",\"pub\":\"\"}\n")?;
        pump(&mut c, &mut s)?;
        let mut line = [0u8; 128];
        let got = s.reader().read(&mut line)?;
        if got == 0 {
            return Err("the server read nothing".into());
        }
        servers.push(s);
        Ok(())
    };
    // One session first, so that the configurations' lazily built parts are counted
    // in the baseline, not in the first connection.
    let mut warm = Vec::new();
    one(&mut warm)?;
    let before = rss_kib()?;
    for _ in 0..n {
        one(&mut servers)?;
    }
    let after = rss_kib()?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!(
        "tls-mem: {n} idle server connections after handshake and one line: RSS {before} -> {after} KiB, {per:.0} bytes per connection (size_of ServerConnection {} bytes, rustls::Connection slot {} bytes, included)",
        std::mem::size_of::<ServerConnection>(),
        std::mem::size_of::<Connection>()
    );
    drop(servers);
    drop(warm);
    Ok(())
}
