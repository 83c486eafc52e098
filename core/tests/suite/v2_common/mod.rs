//! Helpers shared by the v2 tests: vector loading, hex, and an RNG that yields
//! recorded bytes.
#![allow(dead_code)]

use std::collections::VecDeque;

use seguro_core::rand_core::{self, CryptoRng, RngCore};
use serde_json::Value;

pub fn load(name: &str) -> Value {
    let path = format!(
        "{}/tests/vectors/v2/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("vector JSON")
}

pub fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn arr<const N: usize>(v: &Value) -> [u8; N] {
    hex(v).try_into().expect("length")
}

/// Yields exactly the queued bytes, and panics if asked for more: a test that draws
/// randomness the vectors did not record fails.
#[derive(Default)]
pub struct Scripted(pub VecDeque<u8>);

impl Scripted {
    pub fn new(chunks: &[&[u8]]) -> Self {
        let mut s = Self::default();
        for c in chunks {
            s.push(c);
        }
        s
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.0.extend(bytes.iter().copied());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl RngCore for Scripted {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            *d = self
                .0
                .pop_front()
                .expect("the test drew more randomness than recorded");
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Scripted {}
