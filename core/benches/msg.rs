//! Cost of the text side of the protocol: framing plus parsing a relay line (in the
//! reference's spaced form and compact form), emitting it, and a whole client receive
//! path (frame, parse, decrypt). The baseline measured in the same run is a plain
//! `memchr`-style newline scan over the same bytes, the least any framing must do.
//!
//! Run with `cargo bench -p seguro-core --bench msg`; compare ratios within one run.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use seguro_core::client::Client;
use seguro_core::e2ee::KeyPair;
use seguro_core::frame::{FeedResult, LineAccumulator};
use seguro_core::msg::{self, Message, UserList};

fn relay_line(text_len: usize) -> (String, String) {
    let cipher = "QUJD".repeat(text_len.div_ceil(3));
    let python = format!(
        "{{\"type\": \"relay\", \"to\": \"bob\", \"from\": \"alice\", \"alg\": \"X25519+AESGCM\", \"nonce\": \"OMJ180rtBWrW6o7s\", \"cipher\": \"{cipher}\"}}\n"
    );
    let compact = python.replace("\": \"", "\":\"").replace("\", \"", "\",\"");
    (python, compact)
}

fn frame_and_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame+parse relay");
    for len in [100usize, 4096] {
        let (python, compact) = relay_line(len);
        // 16 lines per iteration, as they would arrive in a TLS record.
        for (form, line) in [("python", &python), ("compact", &compact)] {
            let stream = line.repeat(16);
            g.throughput(Throughput::Bytes(stream.len() as u64));
            g.bench_function(format!("newline scan baseline {form} {len} B"), |b| {
                b.iter(|| {
                    black_box(stream.as_bytes())
                        .iter()
                        .filter(|&&c| c == b'\n')
                        .count()
                })
            });
            g.bench_function(format!("frame+parse {form} {len} B"), |b| {
                let mut acc = LineAccumulator::new(vec![0u8; 16 * 1024]);
                let mut scratch = vec![0u8; 16 * 1024];
                b.iter(|| {
                    let mut w = black_box(stream.as_bytes());
                    let mut n = 0;
                    loop {
                        match acc.feed(w) {
                            FeedResult::Consumed => break,
                            FeedResult::Line { line, remaining } => {
                                let m = msg::parse(line, &mut scratch).expect("valid line");
                                n += matches!(m, Message::Relay(_)) as usize;
                                w = remaining;
                            }
                            FeedResult::Overlong { remaining } => w = remaining,
                        }
                    }
                    n
                })
            });
        }
    }
    g.finish();
}

fn emit(c: &mut Criterion) {
    let mut g = c.benchmark_group("emit");
    let (_, compact) = relay_line(4096);
    let mut scratch = vec![0u8; compact.len()];
    let m = msg::parse(compact.trim_end().as_bytes(), &mut scratch).expect("valid");
    let mut out = vec![0u8; 16 * 1024];
    g.bench_function("relay 4 KiB", |b| {
        b.iter(|| black_box(&m).emit_line(&mut out))
    });
    let keys: Vec<[u8; 32]> = (0..100u8).map(|i| [i; 32]).collect();
    let names: Vec<String> = (0..100).map(|i| format!("user{i}")).collect();
    let mut packed = vec![0u8; 16 * 1024];
    let list =
        UserList::pack(names.iter().map(String::as_str).zip(&keys), &mut packed).expect("fits");
    let users = Message::Users { users: list };
    g.bench_function("users, 100 entries", |b| {
        b.iter(|| black_box(&users).emit_line(&mut out))
    });
    g.finish();
}

fn client_receive(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut alice: Client = Client::new("alice", KeyPair::generate(&mut rng)).expect("name");
    let mut bob: Client = Client::new("bob", KeyPair::generate(&mut rng)).expect("name");
    let mut buf = vec![0u8; 8192];
    let mut scratch = vec![0u8; 8192];
    // Register both with a directory listing both.
    let (ka, kb) = (alice.public_key(), bob.public_key());
    let mut packed = [0u8; 256];
    let list = UserList::pack([("alice", &ka), ("bob", &kb)], &mut packed).expect("fits");
    let n = Message::Welcome { users: list }
        .emit_line(&mut buf)
        .expect("fits");
    let welcome = buf[..n - 1].to_vec();
    for c in [&mut alice, &mut bob] {
        c.poll_transmit(&mut buf).expect("hello");
        c.handle_line(&welcome, &mut scratch).expect("welcome");
        while c.poll_event().is_some() {}
    }
    let text = "x".repeat(100);
    alice.send_to("bob", &text, &mut rng).expect("send");
    let n = alice
        .poll_transmit(&mut buf)
        .expect("fits")
        .expect("queued");
    let line = buf[..n - 1].to_vec();
    c.bench_function("client: receive + decrypt a 100 B message", |b| {
        b.iter(|| {
            bob.handle_line(black_box(&line), &mut scratch)
                .expect("relay");
            let mut k = 0;
            while bob.poll_event().is_some() {
                k += 1;
            }
            k
        })
    });
    c.bench_function("client: encrypt + emit a 100 B message", |b| {
        b.iter(|| {
            alice
                .send_to("bob", black_box(&text), &mut rng)
                .expect("send");
            alice.poll_transmit(&mut buf).expect("fits")
        })
    });
}

criterion::criterion_group!(benches, frame_and_parse, emit, client_receive);
criterion::criterion_main!(benches);
