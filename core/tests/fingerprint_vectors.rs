//! Replays `tests/vectors/fingerprints-v1.json`, made by an independent implementation
//! (`tests/vectors/fingerprints.py`, hashlib only), against `seguro_core::fingerprint`:
//! the codes two users read to each other must never change between versions.

use base64ct::{Base64, Encoding};
use seguro_core::fingerprint::{self, SAFETY_GROUPS, SAFETY_LEN, SHORT_LEN};
use serde::Deserialize;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/fingerprints-v1.json"
);

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    #[serde(rename = "pub")]
    key: String,
    short: String,
    safety_code: String,
}

fn load() -> Vec<(String, [u8; 32], String, String)> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read the fingerprint vectors at {VECTORS}: {e}"));
    let file: File = serde_json::from_str(&text).expect("vector file is valid JSON");
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
