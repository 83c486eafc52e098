//! The chat session (core's `Chat` around its `Client`) fed arbitrary server lines and
//! typed lines: never panics, lines and transmissions drain, every rendered line has a
//! prefix and no hidden (control, bidi, format) character, and transmissions fit a
//! line buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro_core::chat::escape::is_hidden;
use seguro_core::chat::{Chat, RecentKeys};
use seguro_core::client::Client;
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

type FuzzChat = Chat<RecentKeys<2>, 4, 128, 2>;

fn drain(c: &mut FuzzChat, out: &mut [u8]) {
    let mut n = 0;
    while let Some(line) = c.poll_line() {
        let text = line.to_string();
        assert!(text.starts_with('['), "{text:?}");
        assert!(!text.chars().any(is_hidden), "{text:?}");
        n += 1;
        assert!(n < 64, "lines must drain");
    }
    let mut n = 0;
    while let Ok(Some(len)) = c.poll_transmit(out) {
        assert!(len <= out.len() && out[len - 1] == b'\n');
        n += 1;
        assert!(n < 8, "transmissions must drain");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rng = Counter(1);
    let client = Client::new("alice", KeyPair::from_secret([7; 32])).unwrap();
    let mut c: FuzzChat = Chat::new(client, RecentKeys::new());
    let mut out = [0u8; 1024];
    let mut scratch = [0u8; 1024];
    drain(&mut c, &mut out);
    // Lines starting with '/' are typed by the user, the others come from the server;
    // a line "~" drops the connection.
    for line in data.split(|&b| b == b'\n') {
        match line.first() {
            Some(b'/') => {
                let typed = String::from_utf8_lossy(line);
                let _ = c.input(&typed, &mut rng);
            }
            Some(b'~') => c.reset(),
            _ => c.handle_line(line, &mut scratch, 0),
        }
        drain(&mut c, &mut out);
        let _ = c.send_text("bob", "hi", &mut rng);
        drain(&mut c, &mut out);
    }
});
