//! Seguro chat on the STM32 Nucleo-F767ZI: Ethernet (the board's LAN8742A PHY over
//! RMII), DHCP, the hardware RNG, the flash store in the last two flash sectors, and a
//! console over RTT (defmt out, a down channel in).
#![no_std]
#![no_main]

use core::ops::Range;

use defmt::{info, unwrap};
use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_executor::Spawner;
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::flash::{Bank1Region3, Blocking, Flash};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::Rng;
use embassy_stm32::time::Hertz;
use embassy_stm32::{Config, bind_interrupts, eth, rng};
use panic_probe as _;
use seguro_embassy::rng::Seeder;
use static_cell::StaticCell;

seguro_board::firmware! {
    name: "Nucleo-F767ZI",
    link: "Ethernet",
    device: Device,
}

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

/// The flash the store uses: sectors 5 to 11 (256 KiB each, from 0x08040000), written
/// with the blocking driver (the CPU stalls while a sector is erased, up to a few
/// seconds for 256 KiB, about once per 600 messages).
type StoreFlash = BlockingAsync<Bank1Region3<'static, Blocking>>;

/// Sectors 10 and 11 (0x08180000-0x081FFFFF), as offsets in sectors 5 to 11: the
/// store needs two erase pages, and `memory.x` keeps them out of the firmware.
const STORE: Range<u32> = 5 * SECTOR..7 * SECTOR;
const SECTOR: u32 = 256 * 1024;

/// The key memory: 32 contacts (512 KiB of RAM leave room).
static MEMORY: StaticCell<seguro_board::BoardMemory<StoreFlash, 32>> = StaticCell::new();

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    unwrap!(seguro_board::rtt::start(spawner));

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
    // The generator from the flash store's seed and this entropy, the identity and the
    // contacts (see seguro_board::memory).
    let flash = Flash::new_blocking(p.FLASH)
        .into_blocking_regions()
        .bank1_region3;
    let (rng, state) =
        seguro_board::boot(&MEMORY, BlockingAsync::new(flash), STORE, seeder, &SETTINGS);

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

    let (stack, runner) = seguro_board::network(device, rng);
    spawner.spawn(unwrap!(net_task(runner)));
    unwrap!(seguro_board::start_chat(
        spawner, BOARD, stack, &SETTINGS, rng, state
    ));
}
