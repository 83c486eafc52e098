//! Key pins of real keys made by an independent implementation (OpenSSL 3:
//! `openssl genpkey … | openssl pkey -pubout -outform DER`, hashed with `sha256sum`, the
//! text form with Python's `base64.b32encode`): the key type read from the SPKI, the
//! hash, and the text users and invites carry are fixed.

use seguro_core::invite::{KeyAlg, KeyPin};

/// (key type label, DER SubjectPublicKeyInfo, its SHA-256, the pin's text form).
const KEYS: &[(&str, &str, &str, &str)] = &[
    (
        "p256",
        "3059301306072a8648ce3d020106082a8648ce3d030107034200042dd5c686695ebfad98bfe09f4a395b2ccb025f9e93c59d2225424dddd87c7c4c22f9d9af5f1474090d4a92b4711a632eaf2876326fc2c0bde55e49156e996011",
        "7afdf9ca74c254e03b7ff22774db6ef0cb4234e7df58847917f8853f4b23053d",
        "p256:pl67tstuyjkoao376itxjw3o6dfuenhh35mii6ix7cct6szdau6q",
    ),
    (
        "p384",
        "3076301006072a8648ce3d020106052b81040022036200040593a729d66e9e74381ab910a63dc3494e049551db7dbb2a9be6c7423dddcd565846c66dfe9b91a0451c4c950de17e47079ae6146e614d49e861d28a3ca81df82109baea110f7855be8737db10914c573e9773df3037611cca12097ca123fda4",
        "b1c28153192e0117c3b275df2a079f1bca045dfcbdaf0c9ed5ca38d236fc3660",
        "p384:whbicuyzfyarpq5soxpsub47dpfaixp4xwxqzhwvzi4nenx4gzqa",
    ),
    (
        "p521",
        "30819b301006072a8648ce3d020106052b810400230381860004002cec7e2406455d775efd3f09574a1ee9ae6e6bd35d6a9c1fb29491a7fdd9dff281f26a0e6a1bb64a6ff5c6cb956e2786245d4ee6910ece917e636df83c0629e97601719b2964108627ed151cef95763d3d0455804443157895f2a7e4f90b7c2af673c34625cfe0692413545939b46d1ad5e397b3c6d99fd74484bd5a3266ba480c6e99",
        "f3f825e4581a105cc15ca8a16e1fbb451b2c1302d432d412156e0528bb76675f",
        "p521:6p4clzcydiifzqk4vcqw4h53iunsyeyc2qznieqvnycsro3wm5pq",
    ),
    (
        "rsa",
        "30819f300d06092a864886f70d010101050003818d0030818902818100c859e463ebf311e0045d7cd7c4fefeb2dc271afedec8f99eb48aedfd6cbc28301da2c74c94eac9bcc61a57633c91078186b14f5e249617bf29bd51db433e3faa175ffd7863c30737f5f0f1881ce3d83eabf521bf756136d447cdd1fb2526f2e71c24e00e66a1c67b62f83f74de83b244bd74984f2210994f38e44b6afd32ec970203010001",
        "f7e6daeb88d3feabb2baac49eec47ed99167bf02f3fb02d27351b39d0d1f68fd",
        "rsa:67tnv24i2p7kxmv2vre65rd63giwppyc6p5qfuttkgzz2di7nd6q",
    ),
    (
        "ed25519",
        "302a300506032b6570032100273d0a42c4207c5f4bcd4d877818341d29819af762272d887c861865035c6517",
        "5e54ce4cfcac46fc183a1f4488f5176429375eb26535d89ab4c7826ecced01f9",
        "ed25519:lzkm4th4vrdpygb2d5cir5ixmqutoxvsmu25rgvuy6bg5thnah4q",
    ),
    (
        "ed448",
        "3043300506032b6571033a009b8966fe9b4922b95e5fbf6dcb12b42cb49da2e788fe61e73f20c6ad053a4449f0bbf757fd7f6b15045f2928e6544e8a0c1b40ab308d719900",
        "4809a3f353d41ef3991c6dbb66dbc4f5a79fb178fee4d80caddcacfe77c805c7",
        "ed448:jae2h42t2qpphgi4nw5wnw6e6wtz7mly73snqdfn3swp456iaxdq",
    ),
    (
        "other",
        "302a300506032b656e032100ee8f0613ff6c6351f036367c242abb4f882e04012861ad5f31710aade3689156",
        "8b7919f0f4465485b229affdc89a4fee118dd8fc27110d6441de0a5b054c685e",
        "other:rn4rt4huizkilmrjv764rgsp5yiy3wh4e4iq2zcb3yffwbkmnbpa",
    ),
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn pins_of_openssl_keys() {
    for (label, der, sha, text) in KEYS {
        let spki = unhex(der);
        let pin = KeyPin::of_spki(&spki).unwrap();
        let want = match *label {
            "p256" => KeyAlg::P256,
            "p384" => KeyAlg::P384,
            "p521" => KeyAlg::P521,
            "rsa" => KeyAlg::Rsa,
            "ed25519" => KeyAlg::Ed25519,
            "ed448" => KeyAlg::Ed448,
            _ => KeyAlg::Other,
        };
        assert_eq!(pin.alg, want, "{label}");
        assert_eq!(pin.sha256.to_vec(), unhex(sha), "{label}");
        assert_eq!(pin.to_string(), *text, "{label}");
        if want != KeyAlg::Other {
            assert_eq!(KeyPin::parse(text).unwrap(), pin, "{label}");
        }
        assert!(pin.matches_spki(&spki));
        // Another key of the same type does not match.
        let mut other = spki.clone();
        *other.last_mut().unwrap() ^= 1;
        assert!(!pin.matches_spki(&other), "{label}");
    }
}
