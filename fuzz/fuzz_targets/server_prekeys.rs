//! The server's prekey file (`prekeys`, read at start): any bytes give a store or an
//! error naming the line, never a panic; a store that was read writes out a text that
//! reads back to the same store; handing out every bundle gives each one-time prekey
//! once, then bundles without one, and what is left still round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro::server::prekeys::PrekeyStore;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut store) = PrekeyStore::parse(text) else {
        return;
    };
    let out = store.to_text();
    let back = PrekeyStore::parse(&out).expect("our own text reads back");
    assert_eq!(back, store);
    assert_eq!(back.to_text(), out);
    let names: Vec<String> = store.names().map(str::to_owned).collect();
    assert_eq!(names.len(), store.len());
    for name in &names {
        let held = store.get(name).expect("listed").opks.clone();
        for (i, opk) in held.iter().enumerate() {
            let t = store
                .take(name, |_, _| true)
                .expect("a bundle while published");
            assert_eq!(t.opk.as_ref(), Some(opk), "oldest first, each once");
            assert_eq!(t.left, held.len() - i - 1);
        }
        let t = store
            .take(name, |_, _| true)
            .expect("the signed prekey stays");
        assert_eq!(t.opk, None);
        assert_eq!(PrekeyStore::parse(&store.to_text()).as_ref(), Ok(&store));
        // A name whose keys are no longer its owner's loses its prekeys.
        assert!(store.take(name, |_, _| false).is_none());
        assert!(store.get(name).is_none());
    }
    assert!(store.is_empty());
});
