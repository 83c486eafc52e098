//! Replays the protocol v2 vectors (`core/tests/vectors/v2/*.json`, made by the
//! independent Python implementation in `tools/v2vectors/gen.py` with pyca/cryptography)
//! against `seguro_core::v2`.

use crate::v2_common;

use std::collections::HashMap;

use seguro_core::identity::{Identity, PublicIdentity};
use seguro_core::v2::identity::{Challenge, HelloProof, IdentityError};
use seguro_core::v2::identity::{verify_binding, verify_prekey};
use seguro_core::v2::ratchet::{OpenError, Session, kdf_ck, kdf_rk, message_keys};
use seguro_core::v2::sas::{Sas, SasCode, SasParties};
use seguro_core::v2::wire::{self, Header, Inner, Prelude};
use seguro_core::v2::x3dh::{Bundle, PeerIdentity, PrekeyPair, binding_hash};
use serde_json::Value;
use v2_common::{Scripted, arr, hex, load};

fn identity(v: &Value) -> Identity {
    Identity::from_secrets(&arr(&v["x_secret"]), &arr(&v["ed_seed"]), 0)
}

fn public(v: &Value) -> PublicIdentity {
    PublicIdentity {
        x: arr(&v["x_public"]),
        ed: arr(&v["ed_public"]),
    }
}

#[test]
fn identity_binding() {
    let doc = load("identity");
    for c in doc["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let id = identity(c);
        assert_eq!(id.public_keys(), public(c), "{name}");
        assert_eq!(id.bind(name).unwrap().to_vec(), hex(&c["bind"]), "{name}");
        verify_binding(name, &public(c), &arr(&c["bind"])).unwrap();
    }
    for c in doc["negative"].as_array().unwrap() {
        let got = verify_binding(c["name"].as_str().unwrap(), &public(c), &arr(&c["bind"]));
        assert_eq!(got, Err(IdentityError::BadSignature), "{}", c["why"]);
    }
    let id = identity(&doc["cases"][0]);
    assert_eq!(id.bind(""), Err(IdentityError::BadName));
    assert_eq!(id.bind(&"x".repeat(129)), Err(IdentityError::BadName));
}

#[test]
fn hello_proof() {
    for c in load("hello")["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let id = identity(c);
        let (spki, nonce, eph) = (
            arr(&c["spki"]),
            arr(&c["nonce"]),
            arr(&c["server_eph_public"]),
        );
        let proof = id.hello_proof(name, &spki, &nonce, &eph).unwrap();
        assert_eq!(proof.sig.to_vec(), hex(&c["sig"]));
        assert_eq!(proof.mac.to_vec(), hex(&c["mac"]));
        let challenge = Challenge::from_parts(nonce, &arr(&c["server_eph_secret"]));
        assert_eq!(challenge.eph_public(), &eph);
        let bind = id.bind(name).unwrap();
        challenge
            .verify(name, &id.public_keys(), &bind, &spki, &proof)
            .unwrap();
        // Another server's SPKI, another name, a flipped MAC, a copied key: refused.
        let mut other = spki;
        other[0] ^= 1;
        assert_eq!(
            challenge.verify(name, &id.public_keys(), &bind, &other, &proof),
            Err(IdentityError::BadSignature)
        );
        let mut bad = proof;
        bad.mac[5] ^= 1;
        assert_eq!(
            challenge.verify(name, &id.public_keys(), &bind, &spki, &bad),
            Err(IdentityError::BadMac)
        );
        // An impostor who copies the victim's X25519 key but signs with its own
        // Ed25519 key cannot compute the MAC.
        let impostor = Identity::from_secrets(&[7; 32], &arr(&c["ed_seed"]), 0);
        let forged = impostor.hello_proof(name, &spki, &nonce, &eph).unwrap();
        let claimed = PublicIdentity {
            x: id.public(),
            ed: id.ed25519_public(),
        };
        assert_eq!(
            challenge.verify(
                name,
                &claimed,
                &bind,
                &spki,
                &HelloProof {
                    sig: proof.sig,
                    mac: forged.mac
                }
            ),
            Err(IdentityError::BadMac)
        );
    }
}

#[test]
fn prekey_signatures() {
    for c in load("prekeys")["cases"].as_array().unwrap() {
        let id = Identity::from_secrets(&[1; 32], &arr(&c["ed_seed"]), 0);
        let spk =
            PrekeyPair::from_secret(c["spk_id"].as_u64().unwrap() as u32, &arr(&c["spk_secret"]));
        assert_eq!(spk.public().to_vec(), hex(&c["spk_public"]));
        let sig = id.sign_prekey(spk.id(), spk.public());
        assert_eq!(sig.to_vec(), hex(&c["sig"]));
        verify_prekey(&arr(&c["ed_public"]), spk.id(), spk.public(), &sig).unwrap();
        assert!(verify_prekey(&arr(&c["ed_public"]), spk.id() ^ 1, spk.public(), &sig).is_err());
    }
}

#[test]
fn kdfs_and_headers() {
    let doc = load("kdf");
    let (rk, ck) = kdf_rk(&arr(&doc["kdf_rk"]["rk"]), &arr(&doc["kdf_rk"]["dh"])).unwrap();
    assert_eq!(rk.to_vec(), hex(&doc["kdf_rk"]["new_rk"]));
    assert_eq!(ck.to_vec(), hex(&doc["kdf_rk"]["ck"]));
    let (mk, next) = kdf_ck(&arr(&doc["kdf_ck"]["ck"]));
    assert_eq!(mk.to_vec(), hex(&doc["kdf_ck"]["mk"]));
    assert_eq!(next.to_vec(), hex(&doc["kdf_ck"]["next_ck"]));
    let keys = message_keys(&arr(&doc["message_keys"]["mk"])).unwrap();
    assert_eq!(keys[..32].to_vec(), hex(&doc["message_keys"]["key"]));
    assert_eq!(keys[32..].to_vec(), hex(&doc["message_keys"]["nonce"]));
    for h in doc["headers"].as_array().unwrap() {
        let header = Header {
            flags: h["flags"].as_u64().unwrap() as u8,
            dh: arr(&h["dh"]),
            pn: h["pn"].as_u64().unwrap() as u32,
            n: h["n"].as_u64().unwrap() as u32,
        };
        let mut bytes = header.to_bytes().to_vec();
        if !h["prelude"].is_null() {
            let p = Prelude::from_bytes(&arr(&h["prelude"]));
            assert_eq!(p.to_bytes().to_vec(), hex(&h["prelude"]));
            bytes.extend_from_slice(&p.to_bytes());
        }
        assert_eq!(bytes, hex(&h["bytes"]));
        // The AD is the binding followed by these bytes; parse them back with a tag.
        assert_eq!([hex(&h["binding"]), bytes.clone()].concat(), hex(&h["ad"]));
        bytes.extend_from_slice(&[0; 16]);
        let view = wire::parse(&bytes).unwrap();
        assert_eq!(view.header, header);
        assert_eq!(view.authenticated, &hex(&h["bytes"])[..]);
    }
}

fn peer<'a>(v: &'a Value) -> PeerIdentity<'a> {
    PeerIdentity {
        name: v["name"].as_str().unwrap(),
        keys: public(v),
        bind: arr(&v["bind"]),
    }
}

fn bundle<'a>(v: &'a Value) -> Bundle<'a> {
    Bundle {
        peer: peer(&v["bob"]),
        spk_id: v["spk_id"].as_u64().unwrap() as u32,
        spk: arr(&v["spk_public"]),
        spk_sig: arr(&v["spk_sig"]),
        opk: v["opk_id"]
            .as_u64()
            .map(|id| (id as u32, arr(&v["opk_public"]))),
    }
}

fn bob_prekeys(v: &Value) -> (PrekeyPair, Option<PrekeyPair>) {
    let spk = PrekeyPair::from_secret(v["spk_id"].as_u64().unwrap() as u32, &arr(&v["spk_secret"]));
    let opk = v["opk_id"]
        .as_u64()
        .map(|id| PrekeyPair::from_secret(id as u32, &arr(&v["opk_secret"])));
    (spk, opk)
}

#[test]
fn x3dh_first_message() {
    for c in load("x3dh")["cases"].as_array().unwrap() {
        let alice = identity(&c["alice"]);
        let bob = identity(&c["bob"]);
        let b = bundle(c);
        let mut rng = Scripted::new(&[&hex(&c["ek_secret"]), &hex(&c["initiator_ratchet_secret"])]);
        let mut a = Session::initiate(&mut rng, &alice, "alice", &b).unwrap();
        assert_eq!(a.binding().to_vec(), hex(&c["binding"]));
        assert_eq!(
            binding_hash("alice", &alice.public_keys(), "bob", &bob.public_keys())
                .unwrap()
                .to_vec(),
            hex(&c["binding"])
        );
        assert_eq!(
            a.pending_prelude().unwrap().ek.to_vec(),
            hex(&c["ek_public"])
        );
        let inner = hex(&c["first_inner"]);
        let mut out = vec![0; a.sealed_len(inner.len())];
        let n = a.seal(&mut rng, &inner, &mut out).unwrap();
        assert!(rng.is_empty());
        assert_eq!(out[..n].to_vec(), hex(&c["first_wire"]));
        let (spk, opk) = bob_prekeys(c);
        let mut plain = vec![0; n];
        let (s, m) = Session::respond(
            &bob,
            "bob",
            &peer(&c["alice"]),
            &spk,
            opk.as_ref(),
            &out[..n],
            &mut plain,
        )
        .unwrap();
        assert_eq!(plain[..m], inner[..]);
        assert!(!s.is_initiator());
        // The wrong one-time prekey, or none when one was used, is refused.
        let other = PrekeyPair::from_secret(99, &[5; 32]);
        let wrong = if opk.is_some() { None } else { Some(&other) };
        assert_eq!(
            Session::respond(
                &bob,
                "bob",
                &peer(&c["alice"]),
                &spk,
                wrong,
                &out[..n],
                &mut plain
            )
            .unwrap_err(),
            OpenError::UnknownPrekey
        );
        // Another responder name changes B: the first message does not authenticate.
        assert_eq!(
            Session::respond(
                &bob,
                "bobby",
                &peer(&c["alice"]),
                &spk,
                opk.as_ref(),
                &out[..n],
                &mut plain
            )
            .unwrap_err(),
            OpenError::Decrypt
        );
    }
}

fn open_error_name(e: OpenError) -> &'static str {
    match e {
        OpenError::Stale => "Stale",
        OpenError::Reflected => "Reflected",
        OpenError::Decrypt => "Decrypt",
        OpenError::TooFarAhead => "TooFarAhead",
        other => panic!("unexpected error {other:?}"),
    }
}

/// Replays the recorded run. With `persist`, every session is encoded and decoded
/// again after every step, as a host that stores it after each message would.
fn replay_ratchet(persist: bool) {
    let v = load("ratchet");
    let alice_id = identity(&v["alice"]);
    let bob_id = identity(&v["bob"]);
    let mut rngs: HashMap<&str, Scripted> = HashMap::new();
    rngs.insert("alice", Scripted::new(&[&hex(&v["ek_secret"])]));
    rngs.insert("bob", Scripted::default());
    let b = bundle(&v);
    let mut sessions: HashMap<&str, Session> = HashMap::new();
    sessions.insert(
        "alice",
        Session::initiate(rngs.get_mut("alice").unwrap(), &alice_id, "alice", &b).unwrap(),
    );
    let (spk, opk) = bob_prekeys(&v);
    let mut wires: Vec<Vec<u8>> = Vec::new();
    let mut inners: Vec<Vec<u8>> = Vec::new();
    let mut opened = 0;
    for e in v["events"].as_array().unwrap() {
        let by = e["by"].as_str().unwrap();
        match e["op"].as_str().unwrap() {
            "seal" => {
                if let Some(r) = e["rng"].as_str() {
                    rngs.get_mut(by).unwrap().push(&hex(&Value::from(r)));
                }
                let s = sessions.get_mut(by).unwrap();
                let inner = hex(&e["inner"]);
                let mut out = vec![0; s.sealed_len(inner.len())];
                let n = s.seal(rngs.get_mut(by).unwrap(), &inner, &mut out).unwrap();
                assert_eq!(
                    out[..n].to_vec(),
                    hex(&e["wire"]),
                    "seal of message {}",
                    e["msg"]
                );
                assert!(rngs[by].is_empty());
                assert_eq!(wires.len(), e["msg"].as_u64().unwrap() as usize);
                wires.push(out);
                inners.push(inner);
            }
            op => {
                let (wire, inner) = if op == "open" {
                    let i = e["msg"].as_u64().unwrap() as usize;
                    (wires[i].clone(), Some(inners[i].clone()))
                } else {
                    (hex(&e["wire"]), None)
                };
                let expect = e["expect"].as_str().unwrap();
                let mut out = vec![0xaa; wire.len()];
                let result = match sessions.get_mut(by) {
                    Some(s) => s.open(&wire, &mut out),
                    None => Session::respond(
                        &bob_id,
                        "bob",
                        &peer(&v["alice"]),
                        &spk,
                        opk.as_ref(),
                        &wire,
                        &mut out,
                    )
                    .map(|(s, n)| {
                        sessions.insert("bob", s);
                        n
                    }),
                };
                match result {
                    Ok(n) => {
                        assert_eq!(expect, "ok", "{e}");
                        assert_eq!(Some(out[..n].to_vec()), inner, "{e}");
                        opened += 1;
                    }
                    Err(err) => {
                        assert_eq!(open_error_name(err), expect, "{e}");
                        assert!(
                            out.iter().all(|b| *b == 0xaa || *b == 0),
                            "no plaintext left"
                        );
                    }
                }
            }
        }
        if persist {
            for s in sessions.values_mut() {
                let mut rec = vec![0; seguro_core::v2::ratchet::STATE_LEN];
                s.encode(&mut rec).unwrap();
                *s = Session::decode(&rec).unwrap();
            }
        }
    }
    let expected_ok = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["expect"] == "ok")
        .count();
    assert_eq!(opened, expected_ok);
    assert_eq!(opened, 16, "the run opens 16 messages");
}

#[test]
fn ratchet_run() {
    replay_ratchet(false);
}

#[test]
fn ratchet_run_through_storage() {
    replay_ratchet(true);
}

#[test]
fn inner_messages() {
    let doc = load("inner");
    for t in doc["text"].as_array().unwrap() {
        let bytes = hex(&t["bytes"]);
        let m = Inner::parse(&bytes).unwrap();
        assert_eq!(
            m,
            Inner::Text {
                id: t["id"].as_u64().unwrap() as u32,
                text: t["text"].as_str().unwrap()
            }
        );
        let mut out = vec![0; m.encoded_len()];
        assert_eq!(m.emit(&mut out), Ok(bytes.len()));
        assert_eq!(out, bytes);
    }
    for r in doc["receipt"].as_array().unwrap() {
        let ids: Vec<u32> = r["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        let bytes = hex(&r["bytes"]);
        let mut out = vec![0; 80];
        let n = wire::emit_receipt(&ids, &mut out).unwrap();
        assert_eq!(out[..n], bytes[..]);
        let Inner::Receipt(got) = Inner::parse(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(got.iter().collect::<Vec<_>>(), ids);
        let m = Inner::Receipt(got);
        let mut again = vec![0; m.encoded_len()];
        m.emit(&mut again).unwrap();
        assert_eq!(again, bytes);
    }
    let lost = hex(&doc["session_lost"]["bytes"]);
    assert_eq!(Inner::parse(&lost), Ok(Inner::SessionLost));
    let mut out = vec![0; Inner::SessionLost.encoded_len()];
    assert_eq!(Inner::SessionLost.emit(&mut out), Ok(lost.len()));
    assert_eq!(out, lost);
    for bad in doc["invalid"].as_array().unwrap() {
        assert!(Inner::parse(&hex(&bad["bytes"])).is_err(), "{}", bad["why"]);
    }
}

#[test]
fn sas_run() {
    let v = load("sas");
    let parties = SasParties {
        a_name: v["alice"]["name"].as_str().unwrap(),
        a: public(&v["alice"]),
        b_name: v["bob"]["name"].as_str().unwrap(),
        b: public(&v["bob"]),
    };
    let emit = |m: Inner<'_>| {
        let mut out = vec![0; m.encoded_len()];
        m.emit(&mut out).unwrap();
        out
    };
    let mut rng_a = Scripted::new(&[&hex(&v["sid"]), &hex(&v["esk_a"])]);
    let mut rng_b = Scripted::new(&[&hex(&v["esk_b"])]);
    let (mut a, start) = Sas::start(&mut rng_a);
    assert_eq!(emit(start), hex(&v["start"]));
    let Inner::SasStart { sid, commit } = start else {
        panic!()
    };
    let (mut b, key) = Sas::accept(&mut rng_b, sid, commit);
    assert_eq!(emit(key), hex(&v["key"]));
    let Inner::SasKey { epk: epk_b, .. } = key else {
        panic!()
    };
    let reveal = a.on_key(&parties, &sid, &epk_b).unwrap();
    assert_eq!(emit(reveal), hex(&v["reveal"]));
    let Inner::SasReveal { epk: epk_a, .. } = reveal else {
        panic!()
    };
    b.on_reveal(&parties, &sid, &epk_a).unwrap();
    let code = a.code().unwrap();
    assert_eq!(b.code(), Some(code));
    assert_eq!(code, SasCode::from_bytes(arr(&v["code_bytes"])));
    let digits: Vec<u16> = v["decimal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as u16)
        .collect();
    assert_eq!(code.decimal().to_vec(), digits);
    let emoji: Vec<u8> = v["emoji"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(code.emoji_indices().to_vec(), emoji);
    // What people see: the Matrix specification's emoji table (names as the spec lists
    // them, transcribed independently of core's table).
    assert_eq!(
        code.emoji().map(|(_, name)| name),
        [
            "Octopus", "Train", "Rocket", "Globe", "Elephant", "Gift", "Tree"
        ]
    );
    assert_eq!(code.emoji()[0].0, "\u{1f419}");
    let confirm_a = a.confirm().unwrap();
    assert_eq!(emit(confirm_a), hex(&v["confirm_a"]));
    let Inner::SasConfirm { mac: mac_a, .. } = confirm_a else {
        panic!()
    };
    assert!(!b.is_verified());
    b.on_confirm(&sid, &mac_a).unwrap();
    assert!(!b.is_verified(), "bob's user has not confirmed yet");
    let Inner::SasConfirm { mac: mac_b, .. } = b.confirm().unwrap() else {
        panic!()
    };
    assert_eq!(mac_b.to_vec(), hex(&v["confirm_mac_b"]));
    assert!(b.is_verified());
    a.on_confirm(&sid, &mac_b).unwrap();
    assert!(a.is_verified());
    for c in v["code_cases"].as_array().unwrap() {
        let code = SasCode::from_bytes(arr(&c["bytes"]));
        let d: Vec<u16> = c["decimal"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as u16)
            .collect();
        let e: Vec<u8> = c["emoji"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(code.decimal().to_vec(), d);
        assert_eq!(code.emoji_indices().to_vec(), e);
    }
    assert_eq!(
        Inner::parse(&hex(&v["cancel"])).unwrap(),
        Inner::SasCancel {
            sid,
            reason: wire::CancelReason::Mismatch
        }
    );
}

#[test]
fn either_name_unusable_refuses_the_binding_hash_and_errors_say_why() {
    use seguro_core::v2::x3dh::SetupError;
    let a = Identity::from_secrets(&[1; 32], &[2; 32], 0).public_keys();
    let b = Identity::from_secrets(&[3; 32], &[4; 32], 0).public_keys();
    assert!(binding_hash("ana", &a, "beto", &b).is_ok());
    let long = "n".repeat(129);
    for (i, r) in [
        ("", "beto"),
        ("ana", ""),
        (long.as_str(), "beto"),
        ("ana", long.as_str()),
    ] {
        assert_eq!(
            binding_hash(i, &a, r, &b),
            Err(SetupError::Identity(IdentityError::BadName)),
            "{i:?} {r:?}"
        );
    }
    assert_eq!(
        SetupError::WeakKey.to_string(),
        "a prekey or identity key is a low-order point"
    );
    assert_eq!(
        SetupError::KeyDerivation.to_string(),
        "key derivation failed"
    );
    assert!(
        SetupError::Identity(IdentityError::BadName)
            .to_string()
            .starts_with("peer identity refused: ")
    );
    // A prekey pair's Debug names its id and never its secret.
    let p = PrekeyPair::from_secret(7, &[9; 32]);
    let d = format!("{p:?}");
    assert!(d.starts_with("PrekeyPair { id: 7"), "{d}");
    assert!(!d.contains("9, 9"), "{d}");
}
