//! Build-time settings (`SEGURO_*`, see the README), the chip's memory layout, the
//! linker scripts, and the CYW43439 NVRAM image.
//!
//! Each chip's memory file has its own name (`memory-rp2040.x`, `memory-rp2350.x`) and
//! is copied to `$OUT_DIR/memory.x`: a `memory.x` in the package root would silently win
//! over the one in `OUT_DIR`, so there must never be one.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let rp2040 = env::var_os("CARGO_FEATURE_RP2040").is_some();
    let rp2350 = env::var_os("CARGO_FEATURE_RP2350").is_some();
    let target = env::var("TARGET").unwrap_or_default();
    let (memory, expected_target) = match (rp2040, rp2350) {
        (true, false) => ("memory-rp2040.x", "thumbv6m-none-eabi"),
        (false, true) => ("memory-rp2350.x", "thumbv8m.main-none-eabihf"),
        _ => panic!(
            "\n\nselect exactly one chip: the `rp2040` feature (Pico W, the default) or \
             `--no-default-features --features rp2350` (Pico 2 W)\n\n"
        ),
    };
    if target != expected_target {
        panic!(
            "\n\nthis chip builds for {expected_target}, not {target} (see the README: \
             `cargo build-pico2` builds the Pico 2 W firmware)\n\n"
        );
    }
    assert!(
        !PathBuf::from("memory.x").exists(),
        "a memory.x in the package root would override the chip's memory file: remove it"
    );
    fs::copy(memory, out.join("memory.x")).expect("copy the memory file");
    println!("cargo:rerun-if-changed={memory}");
    println!("cargo:rustc-link-search={}", out.display());

    // The NVRAM: one `key=value` per line in the text file; the chip wants them
    // NUL-separated, the list ended by an empty entry, the whole padded to 4 bytes.
    let text = fs::read_to_string("cyw43/nvram-pico-w.txt").expect("read the NVRAM text");
    println!("cargo:rerun-if-changed=cyw43/nvram-pico-w.txt");
    let mut nvram = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        nvram.extend_from_slice(line.as_bytes());
        nvram.push(0);
    }
    nvram.push(0);
    while nvram.len() % 4 != 0 {
        nvram.push(0);
    }
    fs::write(out.join("nvram.bin"), nvram).expect("write nvram.bin");

    seguro_board_build::generate(seguro_board_build::Board { wifi: true });

    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    if rp2040 {
        println!("cargo:rustc-link-arg-bins=-Tlink-rp.x");
    }
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
}
