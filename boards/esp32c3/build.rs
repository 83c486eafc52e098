//! Build-time settings (`SEGURO_*`, see the README) and the linker scripts: esp-hal
//! provides the memory layout and sections (`linkall.x`), so building needs no espflash.

fn main() {
    seguro_board_build::generate(seguro_board_build::Board { wifi: true });
    println!("cargo:rustc-link-arg-bins=-Tlinkall.x");
}
