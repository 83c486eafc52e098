//! Replays `tests/vectors/fingerprints-v1.json`, made by an independent implementation
//! (`tests/vectors/fingerprints.py`, hashlib only), against `seguro_core::fingerprint`:
//! the codes two users read to each other must never change between versions.

use base64ct::{Base64, Encoding};
use seguro_core::fingerprint::{self, PAIR_LEN, SAFETY_GROUPS, SAFETY_LEN, SHORT_LEN};
use serde::Deserialize;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/fingerprints-v1.json"
);

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
    pairs: Vec<Pair>,
}

#[derive(Deserialize)]
struct Pair {
    a: String,
    b: String,
    pair_code: String,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    #[serde(rename = "pub")]
    key: String,
    short: String,
    safety_code: String,
}

fn file() -> File {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read the fingerprint vectors at {VECTORS}: {e}"));
    serde_json::from_str(&text).expect("vector file is valid JSON")
}

fn load() -> Vec<(String, [u8; 32], String, String)> {
    let file = file();
    assert!(file.vectors.len() >= 20, "too few vectors in {VECTORS}");
    file.vectors
        .into_iter()
        .map(|v| {
            let mut key = [0u8; 32];
            let n = Base64::decode(&v.key, &mut key)
                .unwrap_or_else(|e| panic!("{}: bad base64: {e}", v.name))
                .len();
            assert_eq!(n, 32, "{}: key length", v.name);
            (v.name, key, v.short, v.safety_code)
        })
        .collect()
}

#[test]
fn short_fingerprints_match_the_independent_implementation() {
    for (name, key, short, _) in load() {
        let fp = fingerprint::short(&key);
        assert_eq!(fp.as_str(), short, "{name}: as_str");
        assert_eq!(fp.as_str().len(), SHORT_LEN, "{name}: length");
        assert_eq!(fp.to_string(), short, "{name}: Display");
        assert_eq!(AsRef::<str>::as_ref(&fp), short, "{name}: as_ref");
        assert_eq!(
            format!("{fp:?}"),
            format!("ShortFingerprint({short:?})"),
            "{name}: Debug"
        );
    }
}

#[test]
fn safety_codes_match_the_independent_implementation() {
    for (name, key, _, code) in load() {
        let sc = fingerprint::safety_code(&key);
        assert_eq!(sc.as_str(), code, "{name}: as_str");
        assert_eq!(sc.as_str().len(), SAFETY_LEN, "{name}: length");
        assert_eq!(sc.to_string(), code, "{name}: Display");
        assert_eq!(AsRef::<str>::as_ref(&sc), code, "{name}: as_ref");
        assert_eq!(
            format!("{sc:?}"),
            format!("SafetyCode({code:?})"),
            "{name}: Debug"
        );
        let groups: Vec<&str> = sc.groups().collect();
        assert_eq!(groups.len(), SAFETY_GROUPS, "{name}: groups");
        assert_eq!(groups.join(" "), code, "{name}: groups in order");
    }
}

#[test]
fn different_keys_give_different_codes() {
    let all = load();
    for (i, (na, ka, _, _)) in all.iter().enumerate() {
        for (nb, kb, _, _) in all.iter().skip(i + 1) {
            assert_ne!(
                fingerprint::short(ka),
                fingerprint::short(kb),
                "{na} / {nb}"
            );
            assert_ne!(
                fingerprint::safety_code(ka),
                fingerprint::safety_code(kb),
                "{na} / {nb}"
            );
        }
        assert_eq!(fingerprint::short(ka), fingerprint::short(ka), "{na}: Eq");
        assert_eq!(
            fingerprint::safety_code(ka),
            fingerprint::safety_code(ka),
            "{na}: Eq"
        );
    }
}

/// The pair code `/verify` shows, for both orders of the two keys.
#[test]
fn pair_codes_match_the_independent_implementation() {
    let keys = load();
    let key = |name: &str| {
        keys.iter()
            .find(|k| k.0 == name)
            .unwrap_or_else(|| panic!("no key named {name}"))
            .1
    };
    let pairs = file().pairs;
    assert!(pairs.len() >= 20, "too few pair vectors in {VECTORS}");
    for p in pairs {
        let (a, b) = (key(&p.a), key(&p.b));
        for (x, y) in [(a, b), (b, a)] {
            let code = fingerprint::pair_code(&x, &y);
            let what = format!("{} / {}", p.a, p.b);
            assert_eq!(code.as_str(), p.pair_code, "{what}: as_str");
            assert_eq!(code.as_str().len(), PAIR_LEN, "{what}: length");
            assert_eq!(code.to_string(), p.pair_code, "{what}: Display");
            assert_eq!(
                format!("{code:?}"),
                format!("PairCode({:?})", p.pair_code),
                "{what}: Debug"
            );
        }
    }
}
