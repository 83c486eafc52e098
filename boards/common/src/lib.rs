//! What the Seguro board firmwares share: the build-time settings, the chat task that
//! turns them into a running [`seguro_embassy`] client, the network and Wi-Fi
//! plumbing, the console line editor and (feature `rtt`) the console over RTT.
//!
//! A board's `main.rs` keeps what is its own: clocks, pins, the network device, the
//! entropy it seeds the RNG with, its flash driver and the region of flash it keeps
//! its state in, and how its console reaches the user. It names itself with
//! [`firmware!`], then calls [`boot`] (see [`memory`]), [`network`] and [`start_chat`],
//! spawns `net_task`, feeds typed bytes through [`typed`] and prints what arrives on
//! [`EVENTS`] (or uses [`rtt::start`]); a Wi-Fi board runs [`keep_joined`] with its
//! radio.
#![no_std]

use core::fmt;

use embassy_executor::{SpawnError, Spawner};
use embassy_net::dns::DnsQueryType;
use embassy_net::{IpAddress, IpEndpoint, Runner, Stack, StackResources};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Duration, Timer};
use seguro_embassy::output::Output;
use seguro_embassy::pin::Pin;
use seguro_embassy::rng::SeededRng;
use seguro_embassy::seguro_core::chat::{Chat, KeyMemory};
use seguro_embassy::seguro_core::client::Client;
use seguro_embassy::seguro_core::fingerprint;
use seguro_embassy::seguro_core::invite::{Invite, InviteError};
use seguro_embassy::seguro_core::msg;
use seguro_embassy::session::{self, Config, Input, Session, Storage};
use seguro_embassy::store::StoreError;
use static_cell::{ConstStaticCell, StaticCell};

pub mod memory;

pub use memory::{BOARD_CONTACTS, BoardMemory, Found, State, boot};

/// Commands waiting for the client.
pub const COMMAND_QUEUE: usize = 4;
/// Lines waiting for the console.
pub const EVENT_QUEUE: usize = 4;

/// Lines typed on the console, for the client.
pub static COMMANDS: session::Commands<CriticalSectionRawMutex, COMMAND_QUEUE> =
    session::Commands::new();
/// Lines from the client, for the console.
pub static EVENTS: session::Events<CriticalSectionRawMutex, EVENT_QUEUE> = session::Events::new();

/// The client's buffers: TLS records up to 16 KiB (the reference server does not cap
/// its fragments), 2 KiB TCP windows, 4 KiB lines.
pub type ChatStorage = Storage;

/// A board's chat session: 32 users, 1 KiB texts (`seguro_core::limits` has the
/// costs), and the board's [`BoardMemory`]: [`BOARD_CONTACTS`] contacts and the v1
/// nonce memories, kept in flash.
pub type BoardChat = Chat<&'static mut dyn KeyMemory>;

/// The build-time settings (see the board's README and `seguro-board-build`); made by
/// [`firmware!`].
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Names of the variables that were not set when the firmware was built.
    pub missing: &'static [&'static str],
    /// Wi-Fi network name (empty on a wired board).
    pub wifi_ssid: &'static str,
    /// Wi-Fi password (empty: an open network).
    pub wifi_password: &'static str,
    /// Server host: an IPv4 address or a DNS name.
    pub server_host: &'static str,
    /// Server TCP port.
    pub server_port: u16,
    /// Chat user name.
    pub user: &'static str,
    /// The pinned server certificate, DER (empty when `invite` is set).
    pub cert_der: &'static [u8],
    /// The invite whose key pins the server (empty when `cert_der` is set).
    pub invite: &'static str,
}

/// Why the invite setting gives no pin.
enum PinSetting {
    Invite(InviteError),
    Pin(seguro_embassy::pin::PinError),
}

impl core::fmt::Display for PinSetting {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Invite(e) => write!(f, "{e}"),
            Self::Pin(e) => write!(f, "{e}"),
        }
    }
}

/// What every firmware defines the same way: `static SETTINGS: seguro_board::Settings`
/// (from the `seguro_config.rs` the board's build script wrote with
/// `seguro-board-build`), `const BOARD: seguro_board::Board`, and the task `net_task`
/// that runs the embassy-net stack over the board's network device:
///
/// ```rust,ignore
/// seguro_board::firmware! { name: "Nucleo-F767ZI", link: "Ethernet", device: Device }
/// ```
#[macro_export]
macro_rules! firmware {
    (name: $name:expr, link: $link:expr, device: $device:ty $(,)?) => {
        mod seguro_config {
            include!(concat!(env!("OUT_DIR"), "/seguro_config.rs"));
        }

        static SETTINGS: $crate::Settings = $crate::Settings {
            missing: seguro_config::MISSING,
            wifi_ssid: seguro_config::WIFI_SSID,
            wifi_password: seguro_config::WIFI_PASSWORD,
            server_host: seguro_config::SERVER_HOST,
            server_port: seguro_config::SERVER_PORT,
            user: seguro_config::USER,
            cert_der: seguro_config::CERT_DER,
            invite: seguro_config::INVITE,
        };

        const BOARD: $crate::Board = $crate::Board {
            name: $name,
            link: $link,
        };

        #[embassy_executor::task]
        async fn net_task(mut runner: embassy_net::Runner<'static, $device>) -> ! {
            runner.run().await
        }
    };
}

/// What the board's name and console look like, for the greeting.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    /// e.g. "Nucleo-F767ZI".
    pub name: &'static str,
    /// e.g. "Ethernet" or "Wi-Fi".
    pub link: &'static str,
}

/// Sends one line to the console.
pub async fn say(line: Output) {
    EVENTS.send(line).await;
}

/// The embassy-net stack over `device`, configured by DHCP (call once); run the
/// returned runner in the board's network task.
pub fn network<D: embassy_net_driver::Driver>(
    device: D,
    rng: &mut SeededRng,
) -> (Stack<'static>, Runner<'static, D>) {
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        rand_core::RngCore::next_u64(rng),
    )
}

/// Spawns the chat task (call once): see [`chat`]; and the task that reports on the
/// console what the key memory could not keep.
pub fn start_chat(
    spawner: Spawner,
    board: Board,
    stack: Stack<'static>,
    settings: &'static Settings,
    rng: &'static mut SeededRng,
    state: State,
) -> Result<(), SpawnError> {
    // 33 KiB of buffers, placed in .bss without passing through the stack.
    static STORAGE: ConstStaticCell<ChatStorage> = ConstStaticCell::new(ChatStorage::new());
    spawner.spawn(memory::notices_task()?);
    spawner.spawn(chat_task(
        board,
        stack,
        settings,
        rng,
        state,
        STORAGE.take(),
    )?);
    Ok(())
}

#[embassy_executor::task]
async fn chat_task(
    board: Board,
    stack: Stack<'static>,
    settings: &'static Settings,
    rng: &'static mut SeededRng,
    state: State,
    storage: &'static mut ChatStorage,
) -> ! {
    chat(board, stack, settings, rng, state, storage).await
}

/// Answers every command with `why` forever: the firmware cannot chat, but says so.
async fn park(why: Output) -> ! {
    say(why.clone()).await;
    loop {
        let _ = COMMANDS.receive().await;
        say(why.clone()).await;
    }
}

/// Why the flash store keeps the chat from starting, in words for the console.
async fn park_store(e: StoreError, user: &str) -> ! {
    let wipe = "wipe the flash store (see the board's README; peers then see a new key)";
    match e {
        StoreError::NameMismatch => {
            park(Output::error(format_args!(
                "flash: the identity kept in flash is not {user}'s: flash the firmware built \
                 with that identity's SEGURO_USER, or {wipe}"
            )))
            .await
        }
        StoreError::Format(_) => {
            park(Output::error(format_args!(
                "flash: the identity kept in flash is unreadable ({e}); it is not replaced \
                 silently, since peers would see a changed key: {wipe}"
            )))
            .await
        }
        _ => {
            park(Output::error(format_args!(
                "flash store: {e}; nothing was sent. Reset the board to try again; if this \
                 persists, {wipe}"
            )))
            .await
        }
    }
}

/// Runs the chat: checks the settings, takes the identity [`boot`] found, waits for
/// the network, resolves the server and runs the client until `/quit`. Never returns;
/// when it cannot go on it says why on the console and keeps answering with the
/// reason.
pub async fn chat(
    board: Board,
    stack: Stack<'static>,
    settings: &Settings,
    rng: &mut SeededRng,
    state: State,
    storage: &mut ChatStorage,
) -> ! {
    say(Output::sys(format_args!(
        "Seguro on {} ({})",
        board.name, board.link
    )))
    .await;
    if !settings.missing.is_empty() {
        for name in settings.missing {
            say(Output::error(format_args!(
                "this firmware was built without {name}"
            )))
            .await;
        }
        park(Output::error(format_args!(
            "rebuild it with the SEGURO_* variables set (see the board's README)"
        )))
        .await;
    }
    let pin = if settings.invite.is_empty() {
        match Pin::new(settings.cert_der) {
            Ok(pin) => pin,
            Err(e) => park(Output::error(format_args!("SEGURO_CERT: {e}"))).await,
        }
    } else {
        // Checked at build time already; parsed again here with the same code.
        match Invite::parse(settings.invite)
            .map_err(PinSetting::Invite)
            .and_then(|inv| Pin::from_invite(&inv).map_err(PinSetting::Pin))
        {
            Ok(pin) => pin,
            Err(e) => park(Output::error(format_args!("SEGURO_INVITE: {e}"))).await,
        }
    };
    if let Err(e) = msg::validate_name(settings.user) {
        park(Output::error(format_args!("SEGURO_USER: {e}"))).await;
    }
    let State {
        keys,
        memory,
        found,
    } = state;
    let keys = match (found, keys) {
        (Found::Failed(e), _) => park_store(e, settings.user).await,
        (_, Some(keys)) => keys,
        (_, None) => park(Output::error(format_args!("no identity was made"))).await,
    };
    if let Found::Ready {
        boots,
        created,
        contacts,
        seed_lost,
    } = found
    {
        say(Output::sys(format_args!(
            "flash: boot {boots}, identity {}, {contacts} contact(s) kept",
            if created {
                "created (first boot with this flash)"
            } else {
                "loaded"
            }
        )))
        .await;
        if seed_lost {
            say(Output::warn(format_args!(
                "flash: the stored RNG seed was unreadable; this boot is seeded from fresh \
                 entropy alone and the boot counter restarts"
            )))
            .await;
        }
    }
    // Made without an `.await` in the statement: a value alive across an await is kept in
    // this future, so awaiting `park` inside `match Client::new(..)` kept the matched
    // `Result<Client, _>` beside the chat (19 KiB of RAM, measured on the ESP32-C3). The
    // chat itself lives in `made`; `chat` borrows it.
    let mut made: Result<BoardChat, _> = match Client::new(settings.user, keys) {
        Ok(mut client) => {
            // A private server's invite carries a join token: sent in every hello.
            client.set_token(Invite::parse(settings.invite).ok().and_then(|i| i.token()));
            Ok(Chat::new(client, memory))
        }
        Err(e) => Err(e),
    };
    let chat: &mut BoardChat = match &mut made {
        Ok(chat) => chat,
        Err(e) => park(Output::error(format_args!("SEGURO_USER: {e}"))).await,
    };
    say(Output::sys(format_args!(
        "user {}, key fingerprint {}",
        settings.user,
        fingerprint::short(&chat.client().public_key())
    )))
    .await;

    if !stack.is_link_up() {
        say(Output::sys(format_args!(
            "waiting for the {} link",
            board.link
        )))
        .await;
        stack.wait_link_up().await;
    }
    say(Output::sys(format_args!(
        "link up; asking DHCP for an address"
    )))
    .await;
    stack.wait_config_up().await;
    if let Some(v4) = stack.config_v4() {
        say(Output::sys(format_args!("address {}", v4.address))).await;
    }

    let address = resolve(stack, settings.server_host).await;
    let server = IpEndpoint::new(address, settings.server_port);
    let config = Config::new(server, pin);
    Session::new(&config, storage.buffers(), chat, rng, (&COMMANDS, &EVENTS))
        .run(stack)
        .await;
    park(Output::sys(format_args!(
        "disconnected; reset the board to connect again"
    )))
    .await
}

/// The server's address: `host` itself when it is an IPv4 address, else a DNS
/// lookup, retried with growing delays until it succeeds.
async fn resolve(stack: Stack<'static>, host: &str) -> IpAddress {
    let mut delay = Duration::from_secs(1);
    loop {
        match stack.dns_query(host, DnsQueryType::A).await {
            Ok(addresses) => {
                if let Some(a) = addresses.first() {
                    if host.parse::<core::net::Ipv4Addr>().is_err() {
                        say(Output::sys(format_args!("{host} is {a}"))).await;
                    }
                    return *a;
                }
                say(Output::warn(format_args!(
                    "{host}: no IPv4 address; retrying in {} s",
                    delay.as_secs()
                )))
                .await;
            }
            Err(e) => {
                say(Output::warn(format_args!(
                    "cannot resolve {host} ({e:?}); retrying in {} s",
                    delay.as_secs()
                )))
                .await;
            }
        }
        Timer::after(delay).await;
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// A board's Wi-Fi radio, for [`keep_joined`].
// The executors boards use are single-threaded: no `Send` bound is needed on the
// futures, which is what the lint warns about.
#[allow(async_fn_in_trait)]
pub trait WifiLink {
    /// Why joining failed, in words for the console.
    type Error: fmt::Display;
    /// Joins `ssid` (an empty `password`: an open network).
    async fn join(&mut self, ssid: &str, password: &str) -> Result<(), Self::Error>;
    /// Returns when the connection to the access point is lost.
    async fn wait_lost(&mut self);
}

/// Joins the network of the settings, and joins again whenever the connection drops,
/// saying so on the console; retries a failed join after 2 s, doubling to 30 s.
/// Returns at once without Wi-Fi settings (the chat task reports them missing).
pub async fn keep_joined(settings: &Settings, mut link: impl WifiLink) {
    let ssid = settings.wifi_ssid;
    if ssid.is_empty() {
        return;
    }
    loop {
        let mut delay = Duration::from_secs(2);
        loop {
            say(Output::sys(format_args!("joining Wi-Fi network {ssid}"))).await;
            match link.join(ssid, settings.wifi_password).await {
                Ok(()) => break,
                Err(why) => {
                    say(Output::warn(format_args!(
                        "Wi-Fi: {why}; retrying in {} s",
                        delay.as_secs()
                    )))
                    .await;
                    Timer::after(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
        say(Output::sys(format_args!("joined {ssid}"))).await;
        link.wait_lost().await;
        say(Output::warn(format_args!(
            "Wi-Fi connection lost; joining again"
        )))
        .await;
    }
}

/// Feeds bytes typed on the console through `editor` into [`COMMANDS`]; `echo` sees
/// every byte after it was handled, and whether it erased a character, for consoles
/// that echo locally.
pub async fn typed(editor: &mut LineEditor, bytes: &[u8], mut echo: impl FnMut(bool, u8)) {
    for &b in bytes {
        let erased = submit(editor.feed(b)).await;
        echo(erased, b);
    }
}

/// The console over RTT: lines typed at the probe's prompt (probe-rs) arrive on down
/// channel 0, chat lines go out through defmt next to the log.
#[cfg(feature = "rtt")]
pub mod rtt {
    use embassy_executor::{SpawnError, Spawner};
    use embassy_time::Timer;
    use rtt_target::{ChannelMode, DownChannel, rtt_init};

    use crate::{EVENTS, LineEditor};

    /// Sets RTT up (defmt on up channel 0) and spawns the console tasks (call once,
    /// first thing: the log goes nowhere before).
    pub fn start(spawner: Spawner) -> Result<(), SpawnError> {
        let channels = rtt_init! {
            up: {
                0: { size: 4096, mode: ChannelMode::NoBlockSkip, name: "defmt" }
            }
            down: {
                0: { size: 512, name: "Terminal" }
            }
        };
        rtt_target::set_defmt_channel(channels.up.0);
        spawner.spawn(console_out()?);
        spawner.spawn(console_in(channels.down.0)?);
        Ok(())
    }

    #[embassy_executor::task]
    async fn console_in(mut down: DownChannel) -> ! {
        let mut editor = LineEditor::new();
        let mut buf = [0u8; 64];
        loop {
            let n = down.read(&mut buf);
            if n == 0 {
                Timer::after_millis(20).await;
                continue;
            }
            crate::typed(&mut editor, buf.get(..n).unwrap_or(&[]), |_, _| {}).await;
        }
    }

    #[embassy_executor::task]
    async fn console_out() -> ! {
        loop {
            let line = EVENTS.receive().await;
            defmt::println!("{=str}", line.text.as_str());
        }
    }
}

/// What one byte typed on the console did.
#[derive(Debug, PartialEq, Eq)]
// No allocator to box the line in; it moves into the command channel by value anyway.
#[allow(clippy::large_enum_variant)]
pub enum Key {
    /// Nothing to do yet.
    Pending,
    /// The previous character was erased (a terminal should show `\x08 \x08`).
    Erased,
    /// A whole line: send it to the client.
    Line(Input),
    /// The line was thrown away: too long, or not UTF-8.
    Rejected(&'static str),
}

/// Assembles console bytes into command lines: `\r` or `\n` ends a line (`\r\n` counts
/// once), backspace and DEL erase a character, other control bytes are ignored.
#[derive(Debug, Default)]
pub struct LineEditor {
    buf: heapless::Vec<u8, { session::INPUT_MAX }>,
    overflow: bool,
    last_cr: bool,
}

impl LineEditor {
    /// An empty editor.
    pub const fn new() -> Self {
        Self {
            buf: heapless::Vec::new(),
            overflow: false,
            last_cr: false,
        }
    }

    /// Feeds one byte.
    pub fn feed(&mut self, byte: u8) -> Key {
        let after_cr = core::mem::replace(&mut self.last_cr, byte == b'\r');
        match byte {
            b'\n' if after_cr => Key::Pending,
            b'\r' | b'\n' => self.finish(),
            0x08 | 0x7f => {
                // Erase one character: drop UTF-8 continuation bytes, then the lead.
                while let Some(b) = self.buf.pop() {
                    if b & 0xc0 != 0x80 {
                        break;
                    }
                }
                Key::Erased
            }
            b if b < 0x20 => Key::Pending,
            b => {
                if self.buf.push(b).is_err() {
                    self.overflow = true;
                }
                Key::Pending
            }
        }
    }

    fn finish(&mut self) -> Key {
        let overflow = core::mem::take(&mut self.overflow);
        let bytes = core::mem::take(&mut self.buf);
        if overflow {
            return Key::Rejected("line too long, not sent");
        }
        if bytes.is_empty() {
            return Key::Pending;
        }
        match core::str::from_utf8(&bytes) {
            Ok(s) => {
                let mut line = Input::new();
                match line.push_str(s) {
                    Ok(()) => Key::Line(line),
                    Err(_) => Key::Rejected("line too long, not sent"),
                }
            }
            Err(_) => Key::Rejected("the line is not UTF-8, not sent"),
        }
    }
}

/// Handles a [`Key`] the same way on every board: a line goes to the client, a
/// rejection to the console. Returns true when the console should erase a character.
pub async fn submit(key: Key) -> bool {
    match key {
        Key::Pending => false,
        Key::Erased => true,
        Key::Line(line) => {
            COMMANDS.send(line).await;
            false
        }
        Key::Rejected(why) => {
            say(Output::error(format_args!("{why}"))).await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(ed: &mut LineEditor, bytes: &[u8]) -> heapless::Vec<Key, 8> {
        let mut out = heapless::Vec::new();
        for &b in bytes {
            match ed.feed(b) {
                Key::Pending => {}
                k => {
                    let _ = out.push(k);
                }
            }
        }
        out
    }

    fn line(s: &str) -> Key {
        let mut l = Input::new();
        l.push_str(s).unwrap();
        Key::Line(l)
    }

    #[test]
    fn lines_end_with_cr_lf_or_both() {
        let mut ed = LineEditor::new();
        let keys = feed_all(&mut ed, b"/to bob hi\r\n/list\n/quit\r");
        assert_eq!(
            keys.as_slice(),
            &[line("/to bob hi"), line("/list"), line("/quit")]
        );
    }

    #[test]
    fn backspace_erases_whole_characters() {
        let mut ed = LineEditor::new();
        let keys = feed_all(&mut ed, "hé\x7fe\x08llo\n".as_bytes());
        assert_eq!(keys.as_slice(), &[Key::Erased, Key::Erased, line("hllo")]);
    }

    #[test]
    fn long_and_invalid_lines_are_rejected() {
        let mut ed = LineEditor::new();
        for _ in 0..session::INPUT_MAX + 1 {
            assert_eq!(ed.feed(b'x'), Key::Pending);
        }
        assert!(matches!(ed.feed(b'\n'), Key::Rejected(_)));
        assert_eq!(feed_all(&mut ed, b"ok\n").as_slice(), &[line("ok")]);
        assert!(matches!(
            feed_all(&mut ed, b"\xff\n").as_slice(),
            [Key::Rejected(_)]
        ));
        assert!(feed_all(&mut ed, b"\x1b\n\n").is_empty());
    }
}
