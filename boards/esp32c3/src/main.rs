//! Seguro chat on the ESP32-C3: Wi-Fi (esp-radio) with DHCP, a CSPRNG seeded from the
//! RNG once the radio runs (which makes it a true RNG), and a console on the chip's
//! USB-serial-JTAG port (the USB connector of most C3 boards). The flash store lives in
//! the `seguro` data partition of `partitions.csv` (the last 64 KiB of flash).
//!
//! The radio driver needs a heap (esp-alloc); the chat code itself allocates nothing.
#![no_std]
#![no_main]

use core::fmt;
use core::ops::Range;

use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_executor::Spawner;
use embassy_time::{Duration, Timer};
use embedded_io_async::Read as _;
use esp_backtrace as _;
use esp_bootloader_esp_idf::partitions;
use esp_hal::Async;
use esp_hal::clock::CpuClock;
use esp_hal::rng::Trng;
use esp_hal::timer::timg::TimerGroup;
use esp_hal::usb::usb_serial_jtag::{UsbSerialJtag, UsbSerialJtagRx};
use esp_println::{print, println};
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{AuthenticationMethodConfig, Config, Interface, WifiController};
use esp_storage::FlashStorage;
use seguro_board::{EVENTS, LineEditor, WifiLink, say};
use seguro_embassy::output::Output as Line;
use seguro_embassy::rng::Seeder;
use static_cell::StaticCell;

esp_bootloader_esp_idf::esp_app_desc!();

seguro_board::firmware! {
    name: "ESP32-C3",
    link: "Wi-Fi",
    device: Interface,
}

/// The flash the store uses, through the blocking driver (which runs with interrupts
/// off and the flash cache paused; a 4 KiB erase takes some 50 ms).
type StoreFlash = BlockingAsync<FlashStorage<'static>>;

/// The key memory: 8 contacts (RAM is tight here: the radio needs a heap).
static MEMORY: StaticCell<seguro_board::BoardMemory<StoreFlash, 8>> = StaticCell::new();

/// Label of the store's data partition in `partitions.csv`.
const STORE_LABEL: &str = "seguro";

/// The flash range of the `seguro` data partition, or why there is none.
fn store_range(flash: &mut FlashStorage<'_>) -> Result<Range<u32>, &'static str> {
    let mut buf = [0u8; partitions::PARTITION_TABLE_MAX_LEN];
    let table = partitions::read_partition_table(flash, &mut buf)
        .map_err(|_| "the partition table is unreadable")?;
    let part = table
        .iter()
        .find(|p| p.label_as_str() == STORE_LABEL && p.raw_type() == 1)
        .ok_or(
            "no `seguro` data partition: flash with `cargo run --release` from boards/esp32c3 \
             (espflash --partition-table partitions.csv)",
        )?;
    let end = part
        .offset()
        .checked_add(part.len())
        .ok_or("bad `seguro` partition")?;
    Ok(part.offset()..end)
}

/// Keystrokes from the USB-serial-JTAG port (e.g. `espflash monitor`), echoed back.
#[embassy_executor::task]
async fn console_in(mut rx: UsbSerialJtagRx<'static, Async>) -> ! {
    let mut editor = LineEditor::new();
    let mut buf = [0u8; 64];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(n) => n,
            Err(_) => {
                Timer::after_millis(20).await;
                continue;
            }
        };
        let echo = |erased: bool, b: u8| match (erased, b) {
            (true, _) => print!("\x08 \x08"),
            (_, b'\r' | b'\n') => println!(),
            (_, b) if b >= 0x20 && b != 0x7f => print!("{}", b as char),
            _ => {}
        };
        seguro_board::typed(&mut editor, buf.get(..n).unwrap_or(&[]), echo).await;
    }
}

/// Chat lines go out on the same port. esp-println drops output after a short time
/// when no host reads it, so a board without a terminal never blocks.
#[embassy_executor::task]
async fn console_out() -> ! {
    loop {
        let line = EVENTS.receive().await;
        println!("{}", line.text.as_str());
    }
}

/// A Wi-Fi error, shown with its `Debug` form.
struct WifiError(esp_radio::wifi::ConnectionError);

impl fmt::Display for WifiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The radio as the Wi-Fi link `seguro_board::keep_joined` keeps up.
struct Wifi(WifiController<'static>);

impl WifiLink for Wifi {
    type Error = WifiError;

    async fn join(&mut self, _ssid: &str, _password: &str) -> Result<(), WifiError> {
        // The network was configured once, in `wifi`.
        self.0.connect_async().await.map(|_| ()).map_err(WifiError)
    }

    async fn wait_lost(&mut self) {
        let _ = self.0.wait_for_disconnect_async().await;
        Timer::after(Duration::from_secs(1)).await;
    }
}

/// Configures the radio for the network of the settings, then keeps it joined.
async fn wifi(mut controller: WifiController<'static>) {
    let (ssid, password) = (SETTINGS.wifi_ssid, SETTINGS.wifi_password);
    if ssid.is_empty() {
        // The chat task reports the missing setting.
        return;
    }
    let auth = if password.is_empty() {
        Some(AuthenticationMethodConfig::Open)
    } else {
        password
            .try_into()
            .ok()
            .map(AuthenticationMethodConfig::Wpa2Personal)
    };
    let config = match (ssid.try_into(), auth) {
        (Ok(ssid), Some(auth)) => Config::Station(
            StationConfig::default()
                .with_ssid(ssid)
                .with_authentication(auth),
        ),
        _ => {
            say(Line::error(format_args!(
                "SEGURO_WIFI_SSID or SEGURO_WIFI_PASSWORD is not usable"
            )))
            .await;
            return;
        }
    };
    if let Err(e) = controller.set_config(&config) {
        say(Line::error(format_args!(
            "Wi-Fi configuration refused: {e:?}"
        )))
        .await;
        return;
    }
    seguro_board::keep_joined(&SETTINGS, Wifi(controller)).await;
}

#[esp_rtos::main]
async fn main(spawner: Spawner) {
    let p = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    // The radio driver's heap: 64 KiB in the RAM the second-stage boot loader used
    // (free once the firmware runs), 8 KiB more in ordinary RAM.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 8 * 1024);

    let timg0 = TimerGroup::new(p.TIMG0);
    esp_rtos::start(timg0.timer0, p.FROM_CPU_INTR0);

    let (rx, _tx) = UsbSerialJtag::new(p.USB_DEVICE).into_async().split();
    spawner.spawn(console_out().expect("console_out spawns once"));
    spawner.spawn(console_in(rx).expect("console_in spawns once"));

    let controller = match WifiController::new(p.WIFI, Default::default()) {
        Ok(c) => c,
        Err(e) => {
            say(Line::error(format_args!("cannot start the radio: {e:?}"))).await;
            loop {
                Timer::after(Duration::from_secs(3600)).await;
            }
        }
    };

    // With the radio running, the RNG is a true RNG.
    let mut seeder = Seeder::new();
    match Trng::try_new() {
        Ok(mut trng) => {
            seeder.absorb_rng(&mut trng, 128);
        }
        Err(_) => {
            say(Line::error(format_args!(
                "no true random source: refusing to make keys"
            )))
            .await;
            loop {
                Timer::after(Duration::from_secs(3600)).await;
            }
        }
    }
    seeder.absorb(esp_hal::efuse::base_mac_address().as_bytes());
    // The generator from the flash store's seed and this entropy, the identity and the
    // contacts (see seguro_board::memory).
    let mut flash = FlashStorage::new(p.FLASH);
    let range = match store_range(&mut flash) {
        Ok(r) => r,
        Err(why) => {
            say(Line::error(format_args!("flash store: {why}"))).await;
            // An empty range: the store refuses it and the chat does not start.
            0..0
        }
    };
    let (rng, kept) =
        seguro_board::boot(&MEMORY, BlockingAsync::new(flash), range, seeder, &SETTINGS);

    let (stack, runner) = seguro_board::network(Interface::station(), rng);
    spawner.spawn(net_task(runner).expect("net_task spawns once"));
    seguro_board::start_chat(spawner, BOARD, stack, &SETTINGS, rng, kept)
        .expect("chat_task spawns once");

    wifi(controller).await;
    // Without Wi-Fi settings: keep the radio (and so the RNG source) alive anyway.
    loop {
        Timer::after(Duration::from_secs(3600)).await;
    }
}
