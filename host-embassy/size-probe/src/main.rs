//! Size probe: a board-like firmware that runs a `seguro_embassy::session::Session` with
//! the default buffers and a chat of 8 users, over do-nothing network and time drivers.
#![no_std]
#![no_main]

use core::task::{Context, Waker};

use cortex_m as _;
use embassy_executor::Spawner;
use embassy_net::{Config, Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
#[cfg(not(feature = "baseline"))]
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use panic_halt as _;

/// A network driver that never receives and drops what it sends.
struct NullNet;
struct NullRx;
struct NullTx;

impl embassy_net_driver::RxToken for NullRx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(&mut [])
    }
}

impl embassy_net_driver::TxToken for NullTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = [0u8; 1514];
        f(&mut frame[..len.min(1514)])
    }
}

impl embassy_net_driver::Driver for NullNet {
    type RxToken<'a> = NullRx;
    type TxToken<'a> = NullTx;
    fn receive(&mut self, _: &mut Context) -> Option<(NullRx, NullTx)> {
        None
    }
    fn transmit(&mut self, _: &mut Context) -> Option<NullTx> {
        Some(NullTx)
    }
    fn link_state(&mut self, _: &mut Context) -> LinkState {
        LinkState::Up
    }
    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.max_transmission_unit = 1514;
        c
    }
    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet([2, 0, 0, 0, 0, 1])
    }
}

/// A time driver whose clock stands still (enough to link and measure).
struct NullTime;
impl embassy_time_driver::Driver for NullTime {
    fn now(&self) -> u64 {
        0
    }
    fn schedule_wake(&self, _at: u64, waker: &Waker) {
        waker.wake_by_ref();
    }
}
embassy_time_driver::time_driver_impl!(static DRIVER: NullTime = NullTime);

#[cfg(not(feature = "baseline"))]
type Mutex = CriticalSectionRawMutex;

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, NullNet>) -> ! {
    runner.run().await
}

#[cfg(not(feature = "baseline"))]
mod client {
    use super::Mutex;
    use seguro_embassy::pin::Pin;
    use seguro_embassy::rng::SeededRng;
    use seguro_embassy::seguro_core::chat::{Chat, RecentKeys};
    use seguro_embassy::seguro_core::client::Client;
    use seguro_embassy::seguro_core::e2ee::KeyPair;
    use seguro_embassy::session::{Commands, Config, Events, Session, Storage};

    /// Any P-256 certificate: the probe only needs it to parse.
    static CERT: &[u8] = include_bytes!("../../tests/data/server-p256.der");
    pub static COMMANDS: Commands<Mutex, 2> = Commands::new();
    pub static EVENTS: Events<Mutex, 2> = Events::new();

    #[embassy_executor::task]
    pub async fn client_task(stack: embassy_net::Stack<'static>) {
        let Ok(pin) = Pin::new(CERT) else { return };
        let mut rng = SeededRng::from_seed([7; 32]);
        let keys = KeyPair::generate(&mut rng);
        let Ok(client) = Client::<8>::new("board", keys) else {
            return;
        };
        let mut chat = Chat::new(client, RecentKeys::<8>::new());
        let mut storage = Storage::<16_640, 2_176, 2_048, 4_096, 2_048>::new();
        let server = embassy_net::IpEndpoint::new(
            embassy_net::IpAddress::Ipv4(embassy_net::Ipv4Address::new(10, 0, 0, 1)),
            7000,
        );
        let config = Config::new(server, pin);
        Session::new(
            &config,
            storage.buffers(),
            &mut chat,
            &mut rng,
            (&COMMANDS, &EVENTS),
        )
        .run(stack)
        .await;
    }

    #[embassy_executor::task]
    pub async fn sink_task() {
        loop {
            let line = EVENTS.receive().await;
            core::hint::black_box(&line);
        }
    }
}

static mut RESOURCES: StackResources<2> = StackResources::new();

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let config = Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 2), 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    #[allow(static_mut_refs)]
    let resources = unsafe { &mut RESOURCES };
    let (stack, runner) = embassy_net::new(NullNet, config, resources, 1);
    if let Ok(t) = net_task(runner) {
        spawner.spawn(t);
    }
    #[cfg(not(feature = "baseline"))]
    {
        if let Ok(t) = client::client_task(stack) {
            spawner.spawn(t);
        }
        if let Ok(t) = client::sink_task() {
            spawner.spawn(t);
        }
    }
    #[cfg(feature = "baseline")]
    core::hint::black_box(stack);
}
