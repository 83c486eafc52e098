//! `seguro-bench dir`: the directory bytes one watcher is sent while N users join, a v1
//! watcher (full `users` lines) against a v2 watcher (`dir` deltas, protocol v2 §10),
//! measured in one run on the server's own hub (in process: the bytes it queues, before
//! TLS; no network).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use seguro::server::hub::{Hub, Outbox, Outgoing};
use seguro::server::router::{self, Close, Input, V2User};
use seguro_core::msg::Message;

/// Counts what is queued for one connection.
#[derive(Debug, Clone, Default)]
struct Count(Arc<AtomicU64>);

impl Outbox for Count {
    fn send(&self, item: Outgoing) {
        self.0.fetch_add(item.len() as u64, Ordering::Relaxed);
    }
    fn close(&self, _reason: Close) {}
}

/// `n` joins, each pushed before the next (joins slower than the push debounce);
/// joiners are v2 clients if `v2_joiners`.
pub fn run(n: usize, v2_joiners: bool) -> crate::net::Result<()> {
    let mut hub: Hub<Count> = Hub::new(router::Config {
        max_line: 1 << 20,
        max_errors: 20,
        grace: Duration::ZERO,
    });
    let v2_user = |i: usize| V2User {
        caps: "v2".into(),
        ed: [i as u8; 32],
        bind: [7; 64],
    };
    let join = |hub: &mut Hub<Count>, user: &str, key: &[u8; 32], v2: Option<V2User>| {
        let out = Count::default();
        let first = Input::Message(Message::Hello {
            user,
            key: *key,
            token: None,
        });
        hub.hello_v2(first, out.clone(), v2)
            .map_err(|e| format!("hello {user}: {e}"))?;
        Ok::<_, String>(out)
    };
    let v1 = join(&mut hub, "watcher1", &[1; 32], None)?;
    let v2 = join(&mut hub, "watcher2", &[2; 32], Some(v2_user(2)))?;
    let (v1_welcome, v2_welcome) = (v1.0.load(Ordering::Relaxed), v2.0.load(Ordering::Relaxed));
    let start = Instant::now();
    let mut keep = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("user{i:05}");
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64 + 10).to_be_bytes());
        let entry = v2_joiners.then(|| v2_user(i));
        keep.push(join(&mut hub, &name, &key, entry)?);
        hub.push();
    }
    let took = start.elapsed();
    let b1 = v1.0.load(Ordering::Relaxed) - v1_welcome;
    let b2 = v2.0.load(Ordering::Relaxed) - v2_welcome;
    println!(
        "dir: {n} joins ({} joiners), one push per join, in {:.2} s",
        if v2_joiners { "v2" } else { "v1" },
        took.as_secs_f64()
    );
    println!("  v1 watcher (full users lines): {b1} bytes");
    println!(
        "  v2 watcher (dir deltas):       {b2} bytes ({:.0} bytes per join)",
        b2 as f64 / n.max(1) as f64
    );
    println!("  v1 / v2 = {:.1}", b1 as f64 / b2.max(1) as f64);
    Ok(())
}
