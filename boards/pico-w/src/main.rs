//! Seguro chat on the Raspberry Pi Pico W (RP2040, feature `rp2040`) and Pico 2 W
//! (RP2350, feature `rp2350`): CYW43439 Wi-Fi over the PIO SPI bus, DHCP, a CSPRNG
//! seeded from the chip's entropy sources and the flash store's seed, the flash store in
//! the last 64 KiB of flash, and a console over RTT (defmt out, a down channel in).
#![no_std]
#![no_main]

use core::ops::Range;

use cyw43::{A4, Aligned, JoinOptions};
use cyw43_pio::{DEFAULT_CLOCK_DIVIDER, PioSpi};
use defmt::{info, unwrap};
use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_executor::Spawner;
use embassy_net::Stack;
#[cfg(feature = "rp2350")]
use embassy_rp::Peri;
use embassy_rp::bind_interrupts;
use embassy_rp::dma;
use embassy_rp::flash::{Blocking, Flash};
use embassy_rp::gpio::{Level, Output};
use embassy_rp::peripherals::{DMA_CH0, FLASH, PIO0};
use embassy_rp::pio::{self, Pio};
use embassy_time::Instant;
use panic_probe as _;
use seguro_board::WifiLink;
use seguro_embassy::rng::Seeder;
use static_cell::StaticCell;

#[cfg(feature = "rp2040")]
const NAME: &str = "Raspberry Pi Pico W";
#[cfg(feature = "rp2350")]
const NAME: &str = "Raspberry Pi Pico 2 W";

seguro_board::firmware! {
    name: NAME,
    link: "Wi-Fi",
    device: cyw43::NetDriver<'static>,
}

#[cfg(feature = "rp2040")]
bind_interrupts!(struct Irqs {
    PIO0_IRQ_0 => pio::InterruptHandler<PIO0>;
    DMA_IRQ_0 => dma::InterruptHandler<DMA_CH0>;
});

#[cfg(feature = "rp2350")]
bind_interrupts!(struct Irqs {
    PIO0_IRQ_0 => pio::InterruptHandler<PIO0>;
    DMA_IRQ_0 => dma::InterruptHandler<DMA_CH0>;
    TRNG_IRQ => embassy_rp::trng::InterruptHandler<embassy_rp::peripherals::TRNG>;
});

/// Flash size: 2 MiB on the Pico W, 4 MiB on the Pico 2 W.
#[cfg(feature = "rp2040")]
const FLASH_SIZE: usize = 2 * 1024 * 1024;
#[cfg(feature = "rp2350")]
const FLASH_SIZE: usize = 4 * 1024 * 1024;

/// The flash store: the last 64 KiB (16 sectors of 4 KiB), as offsets from the start of
/// flash; the chip's memory file keeps them out of the firmware.
const STORE: Range<u32> = (FLASH_SIZE - 64 * 1024) as u32..FLASH_SIZE as u32;

/// The flash the store uses, through the blocking driver (writes and erases run with
/// interrupts off from RAM, as the RP2040 and RP2350 need: an erase of 4 KiB takes
/// some 50 ms).
type StoreFlash = BlockingAsync<Flash<'static, FLASH, Blocking, FLASH_SIZE>>;

/// The key memory's contacts: 16 on the Pico W (264 KiB of RAM), 32 on the Pico 2 W.
#[cfg(feature = "rp2040")]
const CONTACTS: usize = 16;
#[cfg(feature = "rp2350")]
const CONTACTS: usize = 32;

static MEMORY: StaticCell<seguro_board::BoardMemory<StoreFlash, CONTACTS>> = StaticCell::new();

/// The CYW43439's Wi-Fi firmware and its country locale matrix (from the pinned
/// `cyw43-firmware` crate), and the board's NVRAM (built from `cyw43/nvram-pico-w.txt`).
static FIRMWARE: &Aligned<A4, [u8]> = &Aligned(*cyw43_firmware::CYW43_43439A0);
static CLM: &[u8] = cyw43_firmware::CYW43_43439A0_CLM;
static NVRAM: &Aligned<A4, [u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/nvram.bin")));

type Spi = PioSpi<'static, PIO0, 0>;

#[embassy_executor::task]
async fn cyw43_task(runner: cyw43::Runner<'static, cyw43::SpiBus<Output<'static>, Spi>>) -> ! {
    runner.run().await
}

/// The CYW43439 as the Wi-Fi link `seguro_board::keep_joined` keeps up.
struct Wifi {
    control: cyw43::Control<'static>,
    stack: Stack<'static>,
}

impl WifiLink for Wifi {
    type Error = &'static str;

    async fn join(&mut self, ssid: &str, password: &str) -> Result<(), &'static str> {
        let options = if password.is_empty() {
            JoinOptions::new_open()
        } else {
            JoinOptions::new(password.as_bytes())
        };
        self.control.join(ssid, options).await.map_err(|e| match e {
            cyw43::JoinError::NetworkNotFound => "network not found",
            cyw43::JoinError::AuthenticationFailure => "wrong password",
            cyw43::JoinError::JoinFailure(_) => "join failed",
        })
    }

    async fn wait_lost(&mut self) {
        self.stack.wait_link_down().await;
    }
}

#[embassy_executor::task]
async fn wifi_task(control: cyw43::Control<'static>, stack: Stack<'static>) {
    seguro_board::keep_joined(&SETTINGS, Wifi { control, stack }).await;
}

/// The chip's entropy, condensed by SHA-256 into the ChaCha20 seed.
///
/// RP2040 has no true RNG: 1 KiB of the ring oscillator's random bit (biased and
/// correlated, hence the amount), each 64-byte block followed by the µs timer as
/// jitter, and the flash's unique ID (not secret, but makes the seeds of two boards
/// differ). RP2350: 128 bytes of its TRNG, the chip ID and the OTP's per-device
/// random number.
#[cfg(feature = "rp2040")]
fn seed_chip(seeder: &mut Seeder, flash: &mut Flash<'static, FLASH, Blocking, FLASH_SIZE>) {
    let mut uid = [0u8; 8];
    if flash.blocking_unique_id(&mut uid).is_ok() {
        seeder.absorb(&uid);
    }
    let mut rosc = embassy_rp::clocks::RoscRng;
    for _ in 0..16 {
        seeder.absorb_rng(&mut rosc, 64);
        seeder.absorb(&Instant::now().as_ticks().to_le_bytes());
    }
}

#[cfg(feature = "rp2350")]
fn seed_chip(seeder: &mut Seeder, trng: Peri<'static, embassy_rp::peripherals::TRNG>) {
    use embassy_rp::otp;
    if let Ok(id) = otp::get_chipid() {
        seeder.absorb(&id.to_le_bytes());
    }
    // A per-device random number programmed at manufacture: secret to this board.
    if let Ok(secret) = otp::get_private_random_number() {
        seeder.absorb(&secret.to_le_bytes());
    }
    let mut trng = embassy_rp::trng::Trng::new(trng, Irqs, embassy_rp::trng::Config::default());
    seeder.absorb_rng(&mut trng, 128);
    seeder.absorb(&Instant::now().as_ticks().to_le_bytes());
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    unwrap!(seguro_board::rtt::start(spawner));
    let p = embassy_rp::init(Default::default());
    info!("Seguro firmware for the {=str}", BOARD.name);

    #[cfg_attr(feature = "rp2350", allow(unused_mut))] // only the RP2040 reads its ID
    let mut flash = Flash::<_, Blocking, FLASH_SIZE>::new_blocking(p.FLASH);
    let mut seeder = Seeder::new();
    #[cfg(feature = "rp2040")]
    seed_chip(&mut seeder, &mut flash);
    #[cfg(feature = "rp2350")]
    seed_chip(&mut seeder, p.TRNG);
    // The generator from the flash store's seed and this entropy, the identity and the
    // contacts (see seguro_board::memory).
    let (rng, kept) =
        seguro_board::boot(&MEMORY, BlockingAsync::new(flash), STORE, seeder, &SETTINGS);

    // CYW43439: power on GPIO23, SPI chip select GPIO25, data GPIO24, clock GPIO29.
    let pwr = Output::new(p.PIN_23, Level::Low);
    let cs = Output::new(p.PIN_25, Level::High);
    let mut pio = Pio::new(p.PIO0, Irqs);
    let spi = PioSpi::new(
        &mut pio.common,
        pio.sm0,
        DEFAULT_CLOCK_DIVIDER,
        pio.irq0,
        cs,
        p.PIN_24,
        p.PIN_29,
        dma::Channel::new(p.DMA_CH0, Irqs),
    );
    static STATE: StaticCell<cyw43::State> = StaticCell::new();
    let state = STATE.init(cyw43::State::new());
    let (device, mut control, runner) = cyw43::new(state, pwr, spi, FIRMWARE, NVRAM).await;
    spawner.spawn(unwrap!(cyw43_task(runner)));
    control.init(CLM).await;
    control
        .set_power_management(cyw43::PowerManagementMode::PowerSave)
        .await;

    let (stack, runner) = seguro_board::network(device, rng);
    spawner.spawn(unwrap!(net_task(runner)));
    spawner.spawn(unwrap!(wifi_task(control, stack)));
    unwrap!(seguro_board::start_chat(
        spawner, BOARD, stack, &SETTINGS, rng, kept
    ));
}
