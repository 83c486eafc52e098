//! Build-time settings (`SEGURO_*`, see the README) and the linker scripts.
//! The memory layout comes from embassy-stm32's `memory-x` feature (STM32F767ZI:
//! 2 MiB flash in single-bank mode, 512 KiB RAM).

fn main() {
    seguro_board_build::generate(seguro_board_build::Board { wifi: false });
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
}
