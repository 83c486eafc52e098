//! `seguro`: see `seguro --help`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use seguro::cli::{Cli, Command, GenCertArgs, ServeArgs};
use seguro::{certs, exit, server, tls};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(a) => serve(a),
        Command::Chat(a) => {
            // Full screen: log lines on stderr would land in the middle of it, so only
            // with RUST_LOG set (then redirect stderr: seguro chat … 2>log).
            if !seguro::client::full_screen(&a) || std::env::var_os("RUST_LOG").is_some() {
                seguro::init_logging("warn");
            }
            seguro::client::run(a)
        }
        Command::GenCert(a) => gen_cert(a),
        Command::Id(a) => seguro::identity::run(a),
        Command::Invite(a) => seguro::invite::run(a),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn gen_cert(a: GenCertArgs) -> i32 {
    if a.renew {
        return renew_cert(a);
    }
    match certs::generate_files(&a.cert, &a.key, &a.cn, a.days, a.force) {
        Ok(()) => match certs::load_cert(&a.cert) {
            Ok(c) => {
                println!(
                    "wrote {} and {} (ECDSA P-256, CN {}, {} days)",
                    a.cert.display(),
                    a.key.display(),
                    a.cn,
                    a.days
                );
                println!("certificate SHA-256: {}", certs::sha256_colon_hex(&c));
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::ERROR
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            exit::ERROR
        }
    }
}

fn renew_cert(a: GenCertArgs) -> i32 {
    let old_pin = certs::load_cert(&a.cert)
        .ok()
        .and_then(|c| certs::key_pin(&c).ok());
    if let Err(e) = certs::renew(&a.cert, &a.key, &a.cn, a.days) {
        eprintln!("error: {e}");
        return exit::ERROR;
    }
    match certs::load_cert(&a.cert) {
        Ok(c) => {
            println!(
                "wrote {} for the key in {} (CN {}, {} days)",
                a.cert.display(),
                a.key.display(),
                a.cn,
                a.days
            );
            println!("certificate SHA-256: {}", certs::sha256_colon_hex(&c));
            match certs::key_pin(&c) {
                Ok(pin) => {
                    println!("key pin: {pin}");
                    if old_pin.is_some_and(|o| o != pin) {
                        println!(
                            "note: the old {} was for another key: invites made from it \
                             do not match this key",
                            a.cert.display()
                        );
                    } else {
                        println!(
                            "invites stay valid; clients using --cert need the new {}",
                            a.cert.display()
                        );
                    }
                }
                Err(e) => println!("key pin: unavailable ({e})"),
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::ERROR
        }
    }
}

fn serve(a: ServeArgs) -> i32 {
    seguro::init_logging("info");
    let (pair, origin) = match certs::load_or_generate(&a.cert, &a.key) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    if certs::readable_by_others(&a.key) {
        tracing::warn!(
            "{} is readable by other users: anyone who can read it can pose as this server; \
             run `chmod 600 {}`",
            a.key.display(),
            a.key.display()
        );
    }
    let Some(ee) = pair.end_entity().cloned() else {
        eprintln!("error: {}: no certificate", a.cert.display());
        return exit::ERROR;
    };
    let fp = certs::sha256_colon_hex(&ee);
    let spki = match seguro::pin::key_pin_of(&ee) {
        Ok(pin) => pin.sha256,
        Err(e) => {
            eprintln!("error: {}: {e}", a.cert.display());
            return exit::ERROR;
        }
    };
    let registry_path = server::registry::RegistryFile::path_beside(&a.cert);
    let names = match server::registry::RegistryFile::open(
        &registry_path,
        a.name_expiry.saturating_mul(86_400),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let prekeys = match server::prekeys::PrekeyFile::open(
        &server::prekeys::PrekeyFile::path_beside(&registry_path),
    ) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let backup_pin = match a
        .backup_cert
        .as_deref()
        .map(seguro::invite::pin_of_file)
        .transpose()
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: backup certificate: {e}");
            return exit::ERROR;
        }
    };
    let tls = match tls::server_config(pair, a.max_fragment_size.map(usize::from)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "error: cannot use {} with {}: {e}",
                a.cert.display(),
                a.key.display()
            );
            return exit::ERROR;
        }
    };
    let mut cfg = server::Config::new(a.bind, tls);
    cfg.hello_timeout = Duration::from_secs(a.hello_timeout.max(1));
    cfg.max_line = a.max_line;
    cfg.max_connections = a.max_connections.max(1);
    cfg.rate = a.rate;
    cfg.burst = a.burst;
    cfg.queue = a.queue.max(2);
    cfg.queue_bytes = usize::try_from(a.queue_bytes).unwrap_or(usize::MAX);
    cfg.memory_budget = usize::try_from(a.memory_budget).unwrap_or(usize::MAX);
    cfg.write_timeout = Duration::from_secs(a.write_timeout);
    cfg.line_timeout = Duration::from_secs(a.line_timeout);
    cfg.idle_timeout = Duration::from_secs(a.idle_timeout);
    cfg.idle_timeout_v2 = Duration::from_secs(a.v2_idle_timeout);
    cfg.max_errors = a.max_errors.max(1);
    cfg.reconnect_grace = Duration::from_secs(a.reconnect_grace);
    cfg.proxy_protocol = a.proxy_protocol;
    cfg.per_source = server::source::Limits {
        connections: a.max_per_source,
        handshake_rate: a.handshakes_per_source,
        handshake_burst: a.handshake_burst.max(1),
    };
    cfg.keepalive = Duration::from_secs(a.keepalive.max(1));
    cfg.threads = a.threads;
    cfg.users_debounce = Duration::from_millis(a.users_debounce_ms.min(10_000));
    cfg.users_push_rate = a.users_push_rate;
    cfg.v2 = Some(Arc::new(server::V2Config {
        spki,
        names,
        prekeys,
        proof_timeout: Duration::from_secs(10),
    }));
    let private_note = if a.private {
        match private_gate(&a) {
            Ok((gate, note)) => {
                cfg.admission = Some(Arc::new(gate));
                Some(note)
            }
            Err(e) => {
                eprintln!("error: {e}");
                return exit::ERROR;
            }
        }
    } else {
        None
    };
    raise_nofile(cfg.max_connections);

    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let stop_tx = Arc::new(stop_tx);
    if let Err(e) = ctrlc::set_handler({
        let stop_tx = stop_tx.clone();
        move || {
            let _ = stop_tx.try_send(());
        }
    }) {
        tracing::warn!("cannot install the Ctrl-C/SIGTERM handler: {e}");
    }
    let shutdown = async move {
        let _ = stop_rx.recv().await;
    };
    let cert_path = a.cert.clone();
    let result = server::run(cfg, shutdown, |addr| {
        if origin == certs::Origin::Generated {
            println!(
                "generated a new certificate and key: {} and {} (ECDSA P-256, CN {})",
                a.cert.display(),
                a.key.display(),
                certs::DEFAULT_CN
            );
        }
        println!("seguro {} listening on {addr}", env!("CARGO_PKG_VERSION"));
        println!("certificate SHA-256: {fp}");
        for line in seguro::client::serve_chat_hint(addr, &a.invite_addresses, &cert_path) {
            println!("{line}");
        }
        for line in
            seguro::invite::serve_banner(&ee, &cert_path, &a.invite_addresses, backup_pin, addr)
        {
            println!("{line}");
        }
        if let Some(note) = &private_note {
            for line in note {
                println!("{line}");
            }
        }
        if a.proxy_protocol {
            println!(
                "PROXY protocol: every connection must start with a v1 or v2 header \
                 (--proxy-protocol)"
            );
        }
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: cannot serve on {}: {e}", a.bind);
            exit::ERROR
        }
    }
}

/// The admission check of `seguro serve --private`, and what to print about it.
fn private_gate(a: &ServeArgs) -> Result<(seguro::admission::Gate, Vec<String>), String> {
    use seguro::admission::{Files, Gate};
    use seguro::server::admission::{AllowList, TokenState};
    let mut extra = AllowList::new();
    for k in &a.allow_keys {
        extra.add(k).map_err(|e| format!("--allow-key: {e}"))?;
    }
    let files = Files::beside(&a.cert);
    let gate = Gate::new(files.clone(), extra.clone());
    let (allow, tokens) = gate.check_files()?;
    let now = seguro::admission::now();
    let active = tokens
        .tokens()
        .iter()
        .filter(|t| t.state(now) == TokenState::Active)
        .count();
    let note = vec![
        format!(
            "private server: admits only invited users: {active} active join token(s) in {}, \
             {} key(s) in {}{}, and who joined with a token not revoked since ({})",
            files.tokens_path().display(),
            allow.len(),
            files.allow_path().display(),
            match extra.len() {
                0 => String::new(),
                n => format!(" and {n} from --allow-key"),
            },
            tokens.members().len()
        ),
        format!(
            "the invite above has no join token: make one per friend with `seguro invite \
             --cert {} --uses 1 --expires 7d --address <host:port>` (see --list, --revoke)",
            a.cert.display()
        ),
    ];
    Ok((gate, note))
}

/// Raises the soft limit on open files to the hard limit, so many connections work
/// without `ulimit -n`, and says what the limit is.
#[cfg(unix)]
fn raise_nofile(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!("cannot read the open files limit: {e}");
            return;
        }
    };
    let soft = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!("cannot raise the open files limit from {soft} to {hard}: {e}");
                soft
            }
        }
    } else {
        soft
    };
    tracing::info!("open files limit: {soft} (hard limit {hard})");
    // Each connection is one descriptor; keep a few for the listener, logs and files.
    // (rlim_t is 32 bits on 32-bit ARM, 64 bits elsewhere.)
    #[allow(clippy::useless_conversion)]
    let soft_u64 = u64::from(soft);
    if u64::try_from(max_connections).map_or(true, |m| m.saturating_add(32) > soft_u64) {
        tracing::warn!(
            "--max-connections {max_connections} is near or above the open files limit \
             ({soft}): accepts will fail before it is reached"
        );
    }
}

#[cfg(not(unix))]
fn raise_nofile(_max_connections: usize) {}
