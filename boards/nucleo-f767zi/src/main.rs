//! Seguro chat on the STM32 Nucleo-F767ZI: Ethernet (the board's LAN8742A PHY over
//! RMII), DHCP, the hardware RNG, and a console over RTT (defmt out, a down channel in).
#![no_std]
#![no_main]

use defmt::{info, unwrap};
use embassy_executor::Spawner;
use embassy_net::StackResources;
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::Rng;
use embassy_stm32::time::Hertz;
use embassy_stm32::{Config, bind_interrupts, eth, rng};
use embassy_time::Timer;
use rtt_target::{ChannelMode, DownChannel, rtt_init};
use seguro_board::{Board, ChatStorage, EVENTS, LineEditor, Settings};
use seguro_embassy::rng::{SeededRng, Seeder};
use static_cell::{ConstStaticCell, StaticCell};
use {panic_probe as _, rand_core::RngCore as _};

mod settings {
    include!(concat!(env!("OUT_DIR"), "/seguro_config.rs"));
}

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

const BOARD: Board = Board {
    name: "Nucleo-F767ZI",
    link: "Ethernet",
};

static SETTINGS: Settings = Settings {
    missing: settings::MISSING,
    server_host: settings::SERVER_HOST,
    server_port: settings::SERVER_PORT,
    user: settings::USER,
    cert_der: settings::CERT_DER,
    invite: settings::INVITE,
};

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn chat_task(
    stack: embassy_net::Stack<'static>,
    rng: &'static mut SeededRng,
    storage: &'static mut ChatStorage,
) -> ! {
    seguro_board::chat(BOARD, stack, &SETTINGS, rng, storage).await
}

/// Lines typed at the probe-rs prompt arrive on RTT down channel 0.
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
        for &b in buf.get(..n).unwrap_or(&[]) {
            seguro_board::submit(editor.feed(b)).await;
        }
    }
}

/// Chat lines go out through defmt, next to the log.
#[embassy_executor::task]
async fn console_out() -> ! {
    loop {
        let line = EVENTS.receive().await;
        defmt::println!("{=str}", line.text.as_str());
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let channels = rtt_init! {
        up: {
            0: { size: 4096, mode: ChannelMode::NoBlockSkip, name: "defmt" }
        }
        down: {
            0: { size: 512, name: "Terminal" }
        }
    };
    rtt_target::set_defmt_channel(channels.up.0);

    let mut config = Config::default();
    {
        use embassy_stm32::rcc::*;
        // 8 MHz from the ST-LINK's MCO; 216 MHz system clock, 48 MHz for the RNG.
        config.rcc.hse = Some(Hse {
            freq: Hertz(8_000_000),
            mode: HseMode::Bypass,
        });
        config.rcc.pll_src = PllSource::HSE;
        config.rcc.pll = Some(Pll {
            prediv: PllPreDiv::DIV4,
            mul: PllMul::MUL216,
            divp: Some(PllPDiv::DIV2),
            divq: Some(PllQDiv::DIV9),
            divr: None,
        });
        config.rcc.ahb_pre = AHBPrescaler::DIV1;
        config.rcc.apb1_pre = APBPrescaler::DIV4;
        config.rcc.apb2_pre = APBPrescaler::DIV2;
        config.rcc.sys = Sysclk::PLL1_P;
    }
    let p = embassy_stm32::init(config);
    info!("Seguro firmware for the Nucleo-F767ZI");

    // The CSPRNG: 64 bytes of the true RNG, the chip's unique ID for good measure.
    let uid = embassy_stm32::uid::uid();
    let mut hw = Rng::new(p.RNG, Irqs);
    let mut seeder = Seeder::new();
    seeder.absorb_rng(&mut hw, 64).absorb(&uid);
    static RNG_CELL: StaticCell<SeededRng> = StaticCell::new();
    let rng = RNG_CELL.init(seeder.finish());

    // A locally administered MAC address derived from the unique ID.
    let mac = [
        0x02,
        uid[0] ^ uid[6],
        uid[1] ^ uid[7],
        uid[2] ^ uid[8],
        uid[3] ^ uid[9],
        uid[4] ^ uid[10] ^ uid[5] ^ uid[11],
    ];

    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    // Nucleo-144 RMII: REF_CLK PA1, CRS_DV PA7, RXD0 PC4, RXD1 PC5, TXD0 PG13, TXD1 PB13,
    // TX_EN PG11; MDIO PA2, MDC PC1.
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::<4, 4>::new()),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        mac,
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );

    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        rng.next_u64(),
    );

    // 33 KiB of buffers, placed in .bss without passing through the stack.
    static STORAGE: ConstStaticCell<ChatStorage> = ConstStaticCell::new(ChatStorage::new());
    let storage = STORAGE.take();

    spawner.spawn(unwrap!(console_out()));
    spawner.spawn(unwrap!(console_in(channels.down.0)));
    spawner.spawn(unwrap!(net_task(runner)));
    spawner.spawn(unwrap!(chat_task(stack, rng, storage)));
}
