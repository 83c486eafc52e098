#![no_std]
use ml_kem::{B32, DecapsulationKey768, Seed, kem::Decapsulate};

#[cfg(feature = "with")]
#[unsafe(no_mangle)]
pub extern "C" fn mlkem_roundtrip(seed: &[u8; 64], m: &[u8; 32], out: &mut [u8; 64]) {
    let dk = DecapsulationKey768::from_seed(Seed::from(*seed));
    let ek = dk.encapsulation_key();
    let (ct, k1) = ek.encapsulate_deterministic(&B32::from(*m));
    let k2 = dk.decapsulate(&ct);
    out[..32].copy_from_slice(&k1);
    out[32..].copy_from_slice(&k2);
}
#[cfg(not(feature = "with"))]
#[unsafe(no_mangle)]
pub extern "C" fn mlkem_roundtrip(seed: &[u8; 64], m: &[u8; 32], out: &mut [u8; 64]) {
    out[..32].copy_from_slice(&seed[..32]);
    out[32..].copy_from_slice(m);
}
#[cfg(target_os = "none")]
#[panic_handler]
fn p(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
