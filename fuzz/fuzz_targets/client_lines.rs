//! The client state machine fed arbitrary server lines: never panics, events drain,
//! and transmissions fit a line buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro_core::client::Client;
use seguro_core::command::Command;
use seguro_core::e2ee::KeyPair;

/// A deterministic RNG: fuzzing explores the protocol, not the randomness.
struct Counter(u64);
impl rand_core::RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.next_u64() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for Counter {}

fuzz_target!(|data: &[u8]| {
    let mut rng = Counter(1);
    let mut c: Client<4, 128, 2> = Client::new("alice", KeyPair::from_secret([7; 32])).unwrap();
    let mut out = [0u8; 1024];
    let _ = c.poll_transmit(&mut out);
    let mut scratch = [0u8; 1024];
    for line in data.split(|&b| b == b'\n') {
        let _ = c.handle_line(line, &mut scratch);
        let mut n = 0;
        while c.poll_event().is_some() {
            n += 1;
            assert!(n < 64, "events must drain");
        }
        while let Ok(Some(_)) = c.poll_transmit(&mut out) {}
        for cmd in [
            Command::To { user: "bob", text: "hi" },
            Command::List,
            Command::Server { text: "x" },
        ] {
            let _ = c.send(&cmd, &mut rng, &mut out);
        }
    }
});
