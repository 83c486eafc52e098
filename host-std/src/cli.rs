//! Command line: `seguro serve`, `seguro chat`, `seguro gen-cert`, `seguro invite`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Seguro: end-to-end encrypted chat over a TLS relay.
#[derive(Debug, Parser)]
#[command(
    name = "seguro",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = "Quick start:\n  seguro serve                                   # makes server.crt on first run, prints an invite\n  seguro chat alice --invite seguro://127.0.0.1:5000/v=1/k=p256:...\n  seguro chat alice 127.0.0.1 5000 --cert server.crt\n\nExit codes: 0 done, 1 error, 2 bad command line or invite, 3 TLS refused (certificate\nor key not the pinned one), 4 cannot connect or refused by the server, 5 an identity or\ncontacts file is unusable (corrupt, truncated, readable by others, from a newer Seguro),\n6 the port answers but not with TLS (an HTTP or other service, not a Seguro server).\nLogs: RUST_LOG=debug (standard error)."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay server (generates server.crt/server.key on first run).
    Serve(ServeArgs),
    /// Chat as <USER> through the server at <HOST> <PORT>, pinning its certificate.
    Chat(ChatArgs),
    /// Generate a self-signed ECDSA P-256 certificate and key for the server.
    GenCert(GenCertArgs),
    /// Show, create, rotate, back up and restore your long-term identities.
    Id(IdArgs),
    /// Print an invite: one line with the server's addresses and the pin of its key,
    /// which `seguro chat <user> --invite <line>` joins with.
    Invite(InviteArgs),
}

/// `seguro serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:5000")]
    pub bind: SocketAddr,
    /// Server certificate (PEM). Generated with --key if neither file exists.
    #[arg(long, default_value = "server.crt")]
    pub cert: PathBuf,
    /// Server private key (PEM: PKCS#8, "RSA PRIVATE KEY" or "EC PRIVATE KEY").
    #[arg(long, default_value = "server.key")]
    pub key: PathBuf,
    /// Largest TLS record plaintext to send, in bytes (32..=16384). Set it for
    /// microcontroller clients with a small TLS read buffer. Default: unset (16384).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(32..=16384))]
    pub max_fragment_size: Option<u16>,
    /// Seconds a new connection has to finish the TLS handshake and send `hello`.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub hello_timeout: u64,
    /// Longest accepted line in bytes; longer lines get an error and are skipped.
    #[arg(long, default_value_t = seguro_core::limits::SERVER_MAX_LINE, value_name = "BYTES",
          value_parser = parse_max_line)]
    pub max_line: usize,
    /// Most simultaneous connections; further ones are closed at once.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_connections: usize,
    /// Messages per second one connection may send on average (0 = unlimited).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub rate: u32,
    /// Messages one connection may send in a burst.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub burst: u32,
    /// Lines queued for one connection: while it is full the connection itself is not
    /// read and relays to it wait (then are refused with an error naming it).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub queue: usize,
    /// Bytes queued for one connection (including what is being written), same rules.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(4096..=1 << 32))]
    pub queue_bytes: u64,
    /// Bytes all connections' queues may hold together (default sized for a 1 GiB
    /// Raspberry Pi), same rules.
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(65536..))]
    pub memory_budget: u64,
    /// Seconds a peer may read nothing while lines wait for it before it is
    /// disconnected; a relay waits a third of this for room in a full recipient's queue,
    /// then is refused with an error naming the recipient.
    #[arg(long, default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub write_timeout: u64,
    /// Seconds within which a line, once started, must end (slow senders are cut off).
    #[arg(long, default_value_t = 60, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub line_timeout: u64,
    /// Seconds a registered connection may send nothing before it is closed (0 = never;
    /// TCP keepalive still detects dead peers).
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub idle_timeout: u64,
    /// Seconds a v2 connection may send nothing before it is closed (0 = never): v2
    /// clients ping every 15-30 s when they have nothing to say, so silence means a
    /// dead link (protocol v2 §11). v1 connections follow --idle-timeout.
    #[arg(long, default_value_t = 50, value_name = "SECS")]
    pub v2_idle_timeout: u64,
    /// Consecutive bad messages after which a connection is dropped.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub max_errors: u32,
    /// Seconds a user whose connection is lost (closed without TLS close_notify, an I/O
    /// error, a write timeout) stays listed, so that a reconnect with the same key shows
    /// no leave and join (0 = leave at once). Messages to them meanwhile get an error
    /// naming them (a v2 client's: a `not_connected` acknowledgement); a reconnect with another key is a leave and a join; a clean quit
    /// is a leave at once.
    #[arg(long, default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub reconnect_grace: u64,
    /// Every connection starts with a PROXY protocol header (v1 or v2) carrying the
    /// real client address, as ngrok's TCP endpoints send with their proxy protocol
    /// option (see cross/README.md). Connections without a valid header are closed.
    /// Only set it when every connection comes through such a proxy.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Connections open at once from one source address (an IPv6 /64), on the real
    /// address (0 = no limit). Without --proxy-protocol loopback is exempt (a tunnel's
    /// agent carries every client).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_per_source: usize,
    /// New connections (TLS handshakes, failed ones included) per second one source
    /// may open on average (0 = no limit); same addresses as --max-per-source.
    #[arg(long, default_value_t = 4.0, value_name = "RATE", value_parser = parse_rate)]
    pub handshakes_per_source: f64,
    /// New connections one source may open in a burst above --handshakes-per-source.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub handshake_burst: u32,
    /// TCP keepalive idle time in seconds (tunnels drop idle connections).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub keepalive: u64,
    /// Milliseconds to wait before pushing a changed directory to everyone, so a burst
    /// of joins and leaves sends one `users` message per user (new users get their
    /// `welcome` at once regardless).
    #[arg(long, default_value_t = 5, value_name = "MS")]
    pub users_debounce_ms: u64,
    /// Bytes per second directory pushes may average: after a push to U users of a
    /// D-byte directory, the next one waits U × D ÷ this (0 = no spacing).
    #[arg(long, default_value_t = 10_000_000, value_name = "BYTES")]
    pub users_push_rate: u64,
    /// Worker threads (0 = one per CPU).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Days a name registered by a protocol v2 client stays its own while unused: until
    /// then a hello for it with another key is refused (`name_taken`), and a v1 hello
    /// for it too (`proof_required`). The names are kept in the file `name-registry`
    /// beside --cert. 0: names are not reserved (any key may take a name nobody is
    /// connected with, as in protocol v1).
    #[arg(long, default_value_t = crate::server::registry::DEFAULT_EXPIRY_DAYS, value_name = "DAYS",
          value_parser = clap::value_parser!(u64).range(0..=36500))]
    pub name_expiry: u64,
    /// Address friends reach the server at (e.g. the ngrok address), for the invite
    /// printed at start; repeat it for several. Default: the listening address (the
    /// loopback address when listening on all interfaces).
    #[arg(long = "invite-address", value_name = "HOST:PORT", value_parser = crate::invite::parse_address_arg)]
    pub invite_addresses: Vec<String>,
    /// The certificate (PEM) of a backup key, pinned in the printed invite too, for a
    /// later switch to that key (see `seguro invite --help`).
    #[arg(long, value_name = "FILE")]
    pub backup_cert: Option<PathBuf>,
    /// Admit only invited users: clients presenting a join token made by `seguro invite
    /// --token` (or --uses/--expires), and keys on the allow list (the file
    /// `allowed-keys` beside --cert, or --allow-key). Everyone else, reference clients
    /// included, is refused with an error before seeing any directory.
    #[arg(long)]
    pub private: bool,
    /// With --private: also admit this identity key (base64, as in `hello`) or
    /// fingerprint (xxxxxxxx-xxxxxxxx, as `/fp` and `seguro id show` print it);
    /// repeat it for several.
    #[arg(long = "allow-key", value_name = "KEY|FP", requires = "private")]
    pub allow_keys: Vec<String>,
}

/// A finite, non-negative rate per second (NaN, infinities and negatives refused).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if !v.is_finite() || !(0.0..=1e6).contains(&v) {
        return Err("must be a number per second between 0 and 1000000".into());
    }
    Ok(v)
}

/// A finite, non-negative number of seconds (NaN, infinities and negatives refused).
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err("must be a number of seconds between 0 and 1000000000".into());
    }
    Ok(v)
}

fn parse_max_line(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if !(256..=1 << 24).contains(&n) {
        return Err("must be between 256 and 16777216".into());
    }
    Ok(n)
}

/// `seguro chat`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  seguro chat alice --invite 'seguro://0.tcp.eu.ngrok.io:12345/v=1/k=p256:.../c=...'\n  seguro chat alice 'seguro://...'                      # the invite in place of host and port\n  seguro chat alice 0.tcp.eu.ngrok.io 12345 --cert server.crt\n\nTrust: contacts (name, key, verified or not) and the memory of messages seen are kept\nbeside the identity and survive restarts. A new contact is noted quietly, a changed key\nis a loud [WARN]. /verify <user> shows the safety code of the pair (the same on both\nsides); compare it over another channel and type /verify <user> yes. /trust lists the\ncontacts, /accept <user> takes a verified contact's new key without verifying it.\n\nConfig file: $XDG_CONFIG_HOME/seguro/config.toml (else ~/.config/seguro/config.toml),\nTOML, optional. Settings: `strict = true` (as --strict), `history = false`\n(as --no-history). An unknown key or a bad value\nis an error (exit code 2)."
)]
pub struct ChatArgs {
    /// Your user name (1-32 characters, no spaces).
    pub user: String,
    /// Server host name or address (e.g. the ngrok host), or an invite (seguro://...).
    #[arg(required_unless_present = "invite")]
    pub host: Option<String>,
    /// Server port (not with an invite).
    pub port: Option<u16>,
    /// The server's certificate (PEM) to pin: only this exact certificate is accepted.
    #[arg(long, default_value = "server.crt")]
    pub cert: PathBuf,
    /// An invite from the server's operator (`seguro invite`): its addresses are tried in
    /// order, and only a server with the pinned key is accepted. No certificate file needed.
    #[arg(long, value_name = "INVITE", conflicts_with_all = ["host", "port"])]
    pub invite: Option<String>,
    /// Seconds to keep receiving after standard input ends (non-interactive use).
    #[arg(long, default_value_t = 1.0, value_name = "SECS", value_parser = parse_seconds)]
    pub linger: f64,
    /// Do not reconnect when the connection drops.
    #[arg(long)]
    pub no_reconnect: bool,
    /// On a terminal, keep the line mode (no full screen).
    #[arg(long)]
    pub plain: bool,
    /// In the full-screen interface, no bell for a message in a conversation not on
    /// screen.
    #[arg(long)]
    pub no_bell: bool,
    /// In the full-screen interface, neither read nor save the input history (the
    /// plain text of what you typed, kept in the state directory for Up/Down in the
    /// next session); also `history = false` in the config file.
    #[arg(long)]
    pub no_history: bool,
    /// Without a terminal: put the local time (RFC 3339) before each line.
    #[arg(long, conflicts_with = "json")]
    pub timestamps: bool,
    /// Without a terminal: print one JSON object per line (time, kind, event, peer,
    /// from, text, and the plain line).
    #[arg(long)]
    pub json: bool,
    /// Where identities and contacts are kept (default: $XDG_DATA_HOME/seguro, else
    /// ~/.local/share/seguro). The identity of <USER> is made there on first use.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Refuse to send to a verified contact whose key changed, until you /verify the
    /// new key or /accept it. Default: warn loudly but send (as Signal does); also
    /// `strict = true` in the config file.
    #[arg(long)]
    pub strict: bool,
    /// Seconds without sending anything before asking a v2 server whether it is still
    /// there (15-30); with no answer within 10 s more, the client reconnects. A v1
    /// server is never asked.
    #[arg(long, default_value_t = 20, value_name = "SECS",
          value_parser = clap::value_parser!(u32).range(15..=30))]
    pub ping_interval: u32,
    /// For tests: the ping interval and the allowance after a ping, in milliseconds
    /// (`INTERVAL,ALLOWANCE`), instead of --ping-interval and 10 s.
    #[arg(long, hide = true, value_name = "MS,MS", value_parser = parse_ping_ms)]
    pub ping_ms: Option<(u32, u32)>,
    /// For tests: milliseconds a verification by short codes may take before it is
    /// cancelled, instead of 10 minutes (protocol v2 §9).
    #[arg(long, hide = true, value_name = "MS",
          value_parser = clap::value_parser!(u32).range(1..=3_600_000))]
    pub sas_timeout_ms: Option<u32>,
}

/// `INTERVAL,ALLOWANCE` in milliseconds, each 1 to 3,600,000.
fn parse_ping_ms(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s.split_once(',').ok_or("expected INTERVAL,ALLOWANCE")?;
    let ms = |v: &str| -> Result<u32, String> {
        let n: u32 = v.trim().parse().map_err(|e| format!("{e}"))?;
        if !(1..=3_600_000).contains(&n) {
            return Err("each must be between 1 and 3600000 ms".into());
        }
        Ok(n)
    };
    Ok((ms(a)?, ms(b)?))
}

/// `seguro gen-cert`.
#[derive(Debug, Args)]
pub struct GenCertArgs {
    /// Where to write the certificate (PEM).
    #[arg(long, default_value = "server.crt")]
    pub cert: PathBuf,
    /// Where to write the private key (PEM, PKCS#8; mode 0600).
    #[arg(long, default_value = "server.key")]
    pub key: PathBuf,
    /// Common name and subject alternative name.
    #[arg(long, default_value = crate::certs::DEFAULT_CN)]
    pub cn: String,
    /// Validity in days.
    #[arg(long, default_value_t = crate::certs::DEFAULT_DAYS)]
    pub days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Keep the key in --key and write a new certificate for it (overwriting --cert):
    /// invites stay valid, since they pin the key; clients that pinned the old
    /// certificate file need the new one.
    #[arg(long, conflicts_with = "force")]
    pub renew: bool,
}

/// `seguro invite`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  seguro invite --address 0.tcp.eu.ngrok.io:12345            # the address ngrok prints\n  seguro invite --uses 1 --expires 7d --label bob --address ... # for a private server (serve --private)\n  seguro invite --list                                        # join tokens, who joined, the allow list\n  seguro invite --revoke 3                                    # token 3 and whoever joined with it\n  seguro invite --address tcp://0.tcp.eu.ngrok.io:12345 --address 192.168.1.20:5000 --qr\n  seguro invite --backup-cert next.crt --address ...          # also pin the key you will switch to\n  seguro invite --decode 'seguro://...'                       # check and show an invite"
)]
pub struct InviteArgs {
    /// Where friends reach the server, e.g. the ngrok address (`tcp://` is dropped);
    /// repeat it for several, tried in this order.
    #[arg(long = "address", value_name = "HOST:PORT",
          required_unless_present_any = ["decode", "list", "revoke"],
          value_parser = crate::invite::parse_address_arg)]
    pub addresses: Vec<String>,
    /// The server's certificate (PEM): the invite pins its key. A private server's join
    /// tokens are kept beside it (the file `join-tokens`).
    #[arg(long, default_value = "server.crt")]
    pub cert: PathBuf,
    /// The certificate (PEM) of a backup key (`seguro gen-cert --cert next.crt --key
    /// next.key`): clients holding the invite also accept a server with that key.
    #[arg(long, value_name = "FILE")]
    pub backup_cert: Option<PathBuf>,
    /// Also print the invite as a QR code, above it (drawn for a dark terminal background).
    #[arg(long)]
    pub qr: bool,
    /// Check an invite and show what it holds, instead of making one.
    #[arg(long, value_name = "INVITE", conflicts_with_all = ["addresses", "backup_cert"])]
    pub decode: Option<String>,
    /// Put a new join token in the invite, for a private server (`seguro serve
    /// --private`): by default it admits one person and expires in 7 days.
    #[arg(long)]
    pub token: bool,
    /// With a join token: how many people (identity keys) it admits. Each one may then
    /// reconnect without using it again. Implies --token.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub uses: Option<u32>,
    /// With a join token: how long it admits new people, e.g. 30m, 12h, 7d, 2w, or
    /// never. Implies --token.
    #[arg(long, value_name = "LIFETIME", value_parser = crate::server::admission::Lifetime::parse)]
    pub expires: Option<crate::server::admission::Lifetime>,
    /// With a join token: a note shown by --list, e.g. who it is for.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// List the join tokens (state, uses, expiry), who joined with each, and the allow
    /// list, instead of making an invite.
    #[arg(long, conflicts_with_all = ["addresses", "decode", "backup_cert", "revoke"])]
    pub list: bool,
    /// Revoke a join token: its number from --list, or the invite (or token) itself.
    /// It admits no one from then on, and the people who joined with it are refused
    /// at their next connection. Takes effect on a running server at once.
    #[arg(long, value_name = "ID|INVITE", conflicts_with_all = ["addresses", "decode", "backup_cert"])]
    pub revoke: Option<String>,
}

/// `seguro id`.
#[derive(Debug, Args)]
#[command(
    after_help = "Your identity (an X25519 key pair, the key peers see, and an Ed25519\n\
signing key for protocol v2) is made by the first `seguro chat USER ...` and kept in\n\
$XDG_DATA_HOME/seguro/users/USER/ (else ~/.local/share/seguro/users/USER/), mode 0600.\n\
Back it up or move it with `seguro id export USER FILE` and `seguro id import FILE`, or\n\
copy that directory keeping its permissions (cp -a, tar, rsync -a)."
)]
pub struct IdArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: IdCommand,
}

/// `--state-dir`.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// Where identities and contacts are kept (default: $XDG_DATA_HOME/seguro, else
    /// ~/.local/share/seguro).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// The `seguro id` subcommands.
#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Show the fingerprint and safety code of <USER>'s identity (without <USER>: list
    /// the identities).
    Show {
        /// The user name.
        user: Option<String>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Make <USER>'s identity now (`seguro chat` makes it on first use).
    Create {
        /// The user name.
        user: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Replace <USER>'s identity by a new one. Every peer will see KEY CHANGED, and
    /// contacts who verified you must verify again: only if the key may be compromised.
    Rotate {
        /// The user name.
        user: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Write <USER>'s identity and contacts to <FILE> (a new file, mode 0600) to back
    /// them up or move them to another machine. The file holds your secret keys.
    Export {
        /// The user name.
        user: String,
        /// The file to write.
        file: PathBuf,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Install an identity and its contacts from a file made by `seguro id export`.
    Import {
        /// The file to read.
        file: PathBuf,
        /// Replace an existing identity of the same user (peers will see KEY CHANGED
        /// unless it is the same key).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}
