//! `seguro-embassy-linux`: the microcontroller client, unmodified, on Linux.
//!
//! embassy-executor (std platform), embassy-time's std driver and an embassy-net stack
//! on a TAP device run the same `seguro_embassy::session::Session` a board runs. Commands
//! are read from stdin; lines are printed with the reference prefixes, like
//! `seguro chat` when its output is not a terminal.
//!
//! ```text
//! seguro-embassy-linux <tap> <ipv4/prefix> <server-ip:port> --cert <server.crt> <user>
//!     [--gateway <ipv4>] [--tls-read-buffer <bytes>] [--flash <file>]
//! seguro-embassy-linux <tap> <ipv4/prefix> [<server-ip:port>] --invite <invite> <user> ...
//! ```
//!
//! With `--invite`, the server is pinned by the invite's key (and backup key), and the
//! server address defaults to the invite's first IPv4 address (the runner has no DNS).
//!
//! `--tls-read-buffer` sizes embedded-tls's record buffer like a board would (default
//! 16 640, enough for any server; a server started with `--max-fragment-size F` needs
//! only F + 17).
//!
//! `--flash FILE` keeps what a board keeps in flash (`seguro_embassy::store`: the
//! identity, the RNG seed and boot counter, the trust store) in FILE, a 32 KiB image of
//! NOR flash (created erased on first use): the identity survives restarts and the RNG
//! seed advances at every start, exactly as on a board. Without it, every start makes
//! a new identity and seeds from fresh entropy alone.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;

use embassy_executor::{Executor, Spawner};
use embassy_net::{
    Config as NetConfig, IpAddress, IpEndpoint, Ipv4Cidr, Stack, StackResources, StaticConfigV4,
};
use embassy_net_tuntap::TunTapDevice;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use seguro_embassy::output::Output;
use seguro_embassy::pin::Pin;
use seguro_embassy::rand_core::RngCore as _;
use seguro_embassy::rng::{SeededRng, Seeder};
use seguro_embassy::seguro_core::chat::Chat;
use seguro_embassy::seguro_core::client::Client;
use seguro_embassy::seguro_core::e2ee::KeyPair;
use seguro_embassy::session::{Buffers, Commands, Config, Events, Input, Session};

type Mutex = CriticalSectionRawMutex;
type CommandChannel = Commands<Mutex, 4>;
type EventChannel = Events<Mutex, 8>;
/// The chat session, with a board's default capacities.
/// The runner's key memory: the trust store and nonce memories, in the flash image
/// with `--flash`, else in RAM.
type Memory =
    seguro_embassy::store::FlashMemory<seguro_embassy::store::file::FileFlash, FLASH_CONTACTS>;
type BoardChat = Chat<Memory>;

const USAGE: &str = "usage: seguro-embassy-linux <tap> <ipv4/prefix> <server-ip:port> (--cert <server.crt> | --invite <invite>) <user> [--gateway <ipv4>] [--tls-read-buffer <bytes>] [--flash <file>]";

/// The default record buffer: the largest TLS 1.3 record (16 KiB of plain text, a
/// content-type byte, the tag and what a server may pad).
const TLS_READ_DEFAULT: usize = 16_640;

enum PinSource {
    Cert(String),
    Invite(String),
}

struct Args {
    tap: String,
    cidr: Ipv4Cidr,
    server: SocketAddrV4,
    /// A certificate file, or an invite.
    pin: PinSource,
    user: String,
    gateway: Option<Ipv4Addr>,
    tls_read: usize,
    flash: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut cert = None;
    let mut invite = None;
    let mut gateway = None;
    let mut tls_read = TLS_READ_DEFAULT;
    let mut flash = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--cert" => cert = Some(it.next().ok_or("--cert needs a file")?),
            "--invite" => invite = Some(it.next().ok_or("--invite needs an invite")?),
            "--gateway" => {
                let g = it.next().ok_or("--gateway needs an address")?;
                gateway = Some(g.parse().map_err(|_| format!("bad gateway: {g}"))?);
            }
            "--tls-read-buffer" => {
                let n = it.next().ok_or("--tls-read-buffer needs a size")?;
                tls_read = n
                    .parse()
                    .ok()
                    .filter(|n| (512..=65_536).contains(n))
                    .ok_or_else(|| format!("bad --tls-read-buffer (512..=65536): {n}"))?;
            }
            "--flash" => flash = Some(it.next().ok_or("--flash needs a file")?.into()),
            "-h" | "--help" => return Err(String::new()),
            _ => positional.push(arg),
        }
    }
    let pin = match (cert, invite) {
        (Some(c), None) => PinSource::Cert(c),
        (None, Some(i)) => PinSource::Invite(i),
        (None, None) => return Err("--cert or --invite is required".into()),
        (Some(_), Some(_)) => return Err("give --cert or --invite, not both".into()),
    };
    if let (PinSource::Invite(i), 3) = (&pin, positional.len()) {
        // No server address given: the invite's first IPv4 address.
        let inv = seguro_embassy::seguro_core::invite::Invite::parse(i)
            .map_err(|e| format!("invalid invite: {e}"))?;
        let first = inv.addresses().iter().find_map(|a| match a.host {
            seguro_embassy::seguro_core::invite::Host::Ipv4(ip) => Some(format!("{ip}:{}", a.port)),
            _ => None,
        });
        let first = first.ok_or("the invite has no IPv4 address: give <server-ip:port>")?;
        positional.insert(2, first);
    }
    let [tap, cidr, server, user]: [String; 4] = positional
        .try_into()
        .map_err(|_| "expected <tap> <ipv4/prefix> <server-ip:port> <user>".to_string())?;
    let (ip, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| format!("bad address (want a.b.c.d/prefix): {cidr}"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("bad address: {cidr}"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("bad prefix: {cidr}"))?;
    Ok(Args {
        tap,
        cidr: Ipv4Cidr::new(ip, prefix),
        server: server
            .parse()
            .map_err(|_| format!("bad server address (want a.b.c.d:port): {server}"))?,
        pin,
        user,
        gateway,
        tls_read,
        flash,
    })
}

/// The first certificate of a PEM file, or the file itself if it is DER.
fn load_cert(path: &str) -> Result<Vec<u8>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let Ok(text) = std::str::from_utf8(&data) else {
        return Ok(data);
    };
    let Some(start) = text.find("-----BEGIN CERTIFICATE-----") else {
        return Ok(data);
    };
    let body = &text[start + "-----BEGIN CERTIFICATE-----".len()..];
    let end = body
        .find("-----END CERTIFICATE-----")
        .ok_or_else(|| format!("{path}: unterminated PEM certificate"))?;
    let b64: String = body[..end].split_whitespace().collect();
    let mut der = vec![0u8; b64.len()];
    let n = <base64ct::Base64 as base64ct::Encoding>::decode(&b64, &mut der)
        .map(|d: &[u8]| d.len())
        .map_err(|_| format!("{path}: bad base64 in PEM"))?;
    der.truncate(n);
    Ok(der)
}

/// Waits (at most 5 s) until the kernel side of the TAP reports carrier: frames sent
/// before that are dropped, which would cost the first ARP and a second of connect.
fn wait_link_up(tap: &str) {
    let path = format!("/sys/class/net/{tap}/operstate");
    for _ in 0..100 {
        match std::fs::read_to_string(&path) {
            Ok(state) if state.trim() == "up" => return,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(_) => return, // no sysfs view of this device: nothing to wait for
        }
    }
}

fn entropy() -> Result<[u8; 64], String> {
    let mut entropy = [0u8; 64];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut entropy))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(entropy)
}

fn seed() -> Result<SeededRng, String> {
    let mut seeder = Seeder::new();
    seeder.absorb(&entropy()?);
    Ok(seeder.finish())
}

/// Pages of the runner's flash image (32 KiB: identity, seed and 16 contacts with room
/// to spare).
const FLASH_PAGES: u32 = 8;

/// Contacts the runner's trust store holds.
const FLASH_CONTACTS: usize = 16;

/// Boots from the flash image at `path` like a board: the generator from the stored
/// seed and fresh entropy (the seed replaced first), then the stored identity or a new
/// one, then the contacts and nonce memories. Returns the generator, the key pair and
/// the memory (which writes to the image as it changes).
fn flash_boot(path: &std::path::Path, user: &str) -> Result<(SeededRng, KeyPair, Memory), String> {
    use seguro_embassy::store::FlashStore;
    use seguro_embassy::store::file::{ERASE_SIZE, FileFlash};
    let what = |e: &dyn std::fmt::Display| format!("flash {}: {e}", path.display());
    let flash = FileFlash::open(path, FLASH_PAGES).map_err(|e| what(&e))?;
    let mut store =
        FlashStore::new(flash, 0..FLASH_PAGES * ERASE_SIZE as u32).map_err(|e| what(&e))?;
    let mut boot = embassy_futures::block_on(store.boot_rng(&entropy()?)).map_err(|e| what(&e))?;
    let (id, created) = embassy_futures::block_on(store.identity(user, &mut boot.rng, boot.boots))
        .map_err(|e| what(&e))?;
    let (memory, contacts) =
        embassy_futures::block_on(Memory::load(store)).map_err(|e| what(&e))?;
    print_line(
        &Output::sys(format_args!(
            "flash {}: boot {}{}, identity {} (fp {}), {} contact(s)",
            path.display(),
            boot.boots,
            if boot.seed_lost {
                " (stored seed unreadable: fresh entropy only)"
            } else {
                ""
            },
            if created { "created" } else { "loaded" },
            id.fingerprint(),
            contacts
        ))
        .text,
    );
    Ok((boot.rng, id.into_x25519(), memory))
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn print_task(events: &'static EventChannel) -> ! {
    loop {
        let line = events.receive().await;
        print_line(&line.text);
    }
}

fn print_line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

struct ClientParts {
    stack: Stack<'static>,
    config: Config<'static>,
    buffers: Buffers<'static>,
    chat: &'static mut BoardChat,
    rng: SeededRng,
    commands: &'static CommandChannel,
    events: &'static EventChannel,
}

#[embassy_executor::task]
async fn client_task(parts: ClientParts) {
    let ClientParts {
        stack,
        config,
        buffers,
        chat,
        mut rng,
        commands,
        events,
    } = parts;
    stack.wait_config_up().await;
    Session::new(&config, buffers, chat, &mut rng, (commands, events))
        .run(stack)
        .await;
    while let Ok(line) = events.try_receive() {
        print_line(&line.text);
    }
    std::process::exit(0);
}

/// Reads stdin lines into the command channel; end of input is `/quit`.
fn stdin_thread(commands: &'static CommandChannel) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            let mut input = Input::new();
            for c in line.chars() {
                if input.push(c).is_err() {
                    break;
                }
            }
            embassy_futures::block_on(commands.send(input));
        }
        let mut quit = Input::new();
        let _ = quit.push_str("/quit");
        embassy_futures::block_on(commands.send(quit));
    });
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match start(args) {
        Ok(never) => match never {},
        Err(e) => {
            print_line(&Output::error(format_args!("{e}")).text);
            ExitCode::from(1)
        }
    }
}

fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

fn start(args: Args) -> Result<std::convert::Infallible, String> {
    let pin = match &args.pin {
        PinSource::Cert(path) => {
            let der: &'static [u8] = Box::leak(load_cert(path)?.into_boxed_slice());
            Pin::new(der).map_err(|e| e.to_string())?
        }
        PinSource::Invite(line) => {
            let inv = seguro_embassy::seguro_core::invite::Invite::parse(line)
                .map_err(|e| format!("invalid invite: {e}"))?;
            Pin::from_invite(&inv).map_err(|e| e.to_string())?
        }
    };
    let (mut rng, keys, memory) = match &args.flash {
        Some(path) => {
            let (rng, keys, memory) = flash_boot(path, &args.user)?;
            (rng, Some(keys), memory)
        }
        None => (seed()?, None, Memory::ram()),
    };

    let mut device =
        TunTapDevice::new(&args.tap).map_err(|e| format!("cannot open {}: {e}", args.tap))?;
    let mut mac = [0u8; 6];
    rng.fill_bytes(&mut mac);
    mac[0] = (mac[0] & 0xfe) | 0x02; // unicast, locally administered
    device.set_hardware_address(mac);
    wait_link_up(&args.tap);

    let net_config = NetConfig::ipv4_static(StaticConfigV4 {
        address: args.cidr,
        gateway: args.gateway,
        dns_servers: Default::default(),
    });
    let resources = Box::leak(Box::new(StackResources::<3>::new()));
    let (stack, runner) = embassy_net::new(device, net_config, resources, rng.next_u64());

    let keys = keys.unwrap_or_else(|| KeyPair::generate(&mut rng));
    let mut client = Client::new(&args.user, keys).map_err(|e| format!("user name: {e}"))?;
    if let PinSource::Invite(line) = &args.pin {
        // A private server's invite carries a join token: sent in every hello.
        let inv = seguro_embassy::seguro_core::invite::Invite::parse(line)
            .map_err(|e| format!("invalid invite: {e}"))?;
        client.set_token(inv.token());
    }
    let chat: &'static mut BoardChat = Box::leak(Box::new(Chat::new(client, memory)));
    let server = IpEndpoint::new(IpAddress::Ipv4(*args.server.ip()), args.server.port());
    let commands: &'static CommandChannel = Box::leak(Box::new(CommandChannel::new()));
    let events: &'static EventChannel = Box::leak(Box::new(EventChannel::new()));
    let parts = ClientParts {
        stack,
        config: Config::new(server, pin),
        buffers: Buffers {
            tcp_rx: leak(2_048),
            tcp_tx: leak(2_048),
            tls_read: leak(args.tls_read),
            tls_write: leak(2_176),
            line: leak(4_096),
            scratch: leak(4_096),
            out: leak(2_048),
        },
        chat,
        rng,
        commands,
        events,
    };
    stdin_thread(commands);

    let executor: &'static mut Executor = Box::leak(Box::new(Executor::new()));
    executor.run(|spawner: Spawner| {
        let spawned = net_task(runner)
            .map(|t| spawner.spawn(t))
            .and_then(|()| print_task(events).map(|t| spawner.spawn(t)))
            .and_then(|()| client_task(parts).map(|t| spawner.spawn(t)));
        if let Err(e) = spawned {
            print_line(&Output::error(format_args!("cannot start: {e:?}")).text);
            std::process::exit(1);
        }
    })
}
