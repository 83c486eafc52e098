use ml_kem::{B32, DecapsulationKey768, EncapsulationKey768, Seed, kem::Decapsulate};
use std::time::Instant;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() == 4 {
        let n: usize = a[2].parse().unwrap();
        std::thread::Builder::new()
            .stack_size(n)
            .spawn(|| {
                std::hint::black_box([0u8; 64]);
            })
            .unwrap()
            .join()
            .unwrap();
        return;
    }
    if a.len() == 3 {
        let n: usize = a[2].parse().unwrap();
        let h = std::thread::Builder::new()
            .stack_size(n)
            .spawn(|| {
                let dk = DecapsulationKey768::from_seed(Seed::from([3u8; 64]));
                let (c, k) = dk
                    .encapsulation_key()
                    .encapsulate_deterministic(&B32::from([1u8; 32]));
                assert_eq!(dk.decapsulate(&c), k);
            })
            .unwrap();
        h.join().unwrap();
        return;
    }
    let seed = Seed::from([7u8; 64]);
    let n = 200;
    let t = Instant::now();
    for i in 0..n {
        let mut s = [7u8; 64];
        s[0] = i as u8;
        std::hint::black_box(DecapsulationKey768::from_seed(Seed::from(s)));
    }
    let kg = t.elapsed() / n;
    let dk = DecapsulationKey768::from_seed(seed);
    let ek = dk.encapsulation_key().clone();
    let t = Instant::now();
    let mut ct = None;
    for i in 0..n {
        let (c, k) = ek.encapsulate_deterministic(&B32::from([i as u8; 32]));
        std::hint::black_box(k);
        ct = Some(c);
    }
    let enc = t.elapsed() / n;
    let ct = ct.unwrap();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(dk.decapsulate(&ct));
    }
    let dec = t.elapsed() / n;
    println!("keygen {kg:?} encaps {enc:?} decaps {dec:?}");
    println!(
        "size_of dk {} ek {}",
        std::mem::size_of::<DecapsulationKey768>(),
        std::mem::size_of::<EncapsulationKey768>()
    );
    let me = std::env::current_exe().unwrap();
    let mut lo = 1024usize;
    let mut hi = 1 << 20;
    while hi - lo > 256 {
        let mid = (lo + hi) / 2;
        let ok = std::process::Command::new(&me)
            .arg("probe")
            .arg(mid.to_string())
            .args(std::env::var("BASE").ok())
            .output()
            .unwrap()
            .status
            .success();
        if ok { hi = mid } else { lo = mid }
    }
    println!("min thread stack ~{hi} bytes (incl. thread start overhead)");
}
