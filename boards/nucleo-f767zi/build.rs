//! Build-time settings (`SEGURO_*`, see the README) and the linker scripts.
//! The memory layout is `memory.x` (STM32F767ZI: 2 MiB flash in single-bank mode, of
//! which the last 512 KiB hold the flash store; 512 KiB RAM), copied to `$OUT_DIR`.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    seguro_board_build::generate(seguro_board_build::Board { wifi: false });
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
}
