//! Seguro chat on the ESP32-C3: Wi-Fi (esp-radio) with DHCP, a CSPRNG seeded from the
//! RNG once the radio runs (which makes it a true RNG), and a console on the chip's
//! USB-serial-JTAG port (the USB connector of most C3 boards).
//!
//! The radio driver needs a heap (esp-alloc); the chat code itself allocates nothing.
#![no_std]
#![no_main]

use core::hint::black_box;

use embassy_executor::Spawner;
use embassy_net::{Stack, StackResources};
use embassy_time::{Duration, Timer};
use embedded_io_async::Read as _;
use esp_backtrace as _;
use esp_hal::Async;
use esp_hal::clock::CpuClock;
use esp_hal::rng::Trng;
use esp_hal::timer::timg::TimerGroup;
use esp_hal::usb::usb_serial_jtag::{UsbSerialJtag, UsbSerialJtagRx};
use esp_println::{print, println};
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{AuthenticationMethodConfig, Config, Interface, WifiController};
use rand_core::RngCore as _;
use seguro_board::{Board, ChatStorage, EVENTS, Key, LineEditor, Settings};
use seguro_embassy::output::Output as Line;
use seguro_embassy::rng::{SeededRng, Seeder};
use static_cell::{ConstStaticCell, StaticCell};

esp_bootloader_esp_idf::esp_app_desc!();

mod settings {
    include!(concat!(env!("OUT_DIR"), "/seguro_config.rs"));
}

const BOARD: Board = Board {
    name: "ESP32-C3",
    link: "Wi-Fi",
};

static SETTINGS: Settings = Settings {
    missing: settings::MISSING,
    server_host: settings::SERVER_HOST,
    server_port: settings::SERVER_PORT,
    user: settings::USER,
    cert_der: settings::CERT_DER,
    invite: settings::INVITE,
};

async fn say(line: Line) {
    EVENTS.send(line).await;
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Interface>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn chat_task(
    stack: Stack<'static>,
    rng: &'static mut SeededRng,
    storage: &'static mut ChatStorage,
) -> ! {
    seguro_board::chat(BOARD, stack, &SETTINGS, rng, storage).await
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
        for &b in buf.get(..n).unwrap_or(&[]) {
            let key = editor.feed(b);
            match (&key, b) {
                (Key::Erased, _) => print!("\x08 \x08"),
                (_, b'\r' | b'\n') => println!(),
                (_, b) if b >= 0x20 && b != 0x7f => print!("{}", b as char),
                _ => {}
            }
            seguro_board::submit(key).await;
        }
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

/// Joins the network, and joins again whenever the connection drops.
async fn wifi(mut controller: WifiController<'static>) {
    let ssid = black_box(settings::WIFI_SSID);
    let password = black_box(settings::WIFI_PASSWORD);
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
    loop {
        let mut delay = Duration::from_secs(2);
        loop {
            say(Line::sys(format_args!("joining Wi-Fi network {ssid}"))).await;
            match controller.connect_async().await {
                Ok(_) => break,
                Err(e) => {
                    say(Line::warn(format_args!(
                        "Wi-Fi: {e:?}; retrying in {} s",
                        delay.as_secs()
                    )))
                    .await;
                    Timer::after(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
        say(Line::sys(format_args!("joined {ssid}"))).await;
        let _ = controller.wait_for_disconnect_async().await;
        say(Line::warn(format_args!(
            "Wi-Fi connection lost; joining again"
        )))
        .await;
        Timer::after(Duration::from_secs(1)).await;
    }
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
    static RNG_CELL: StaticCell<SeededRng> = StaticCell::new();
    let rng = RNG_CELL.init(seeder.finish());

    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        Interface::station(),
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        rng.next_u64(),
    );
    spawner.spawn(net_task(runner).expect("net_task spawns once"));

    // 33 KiB of buffers, placed in .bss without passing through the stack.
    static STORAGE: ConstStaticCell<ChatStorage> = ConstStaticCell::new(ChatStorage::new());
    spawner.spawn(chat_task(stack, rng, STORAGE.take()).expect("chat_task spawns once"));

    wifi(controller).await;
    // Without Wi-Fi settings: keep the radio (and so the RNG source) alive anyway.
    loop {
        Timer::after(Duration::from_secs(3600)).await;
    }
}
