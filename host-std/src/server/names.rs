//! The server's name policy, after Unicode's security mechanisms for identifiers
//! (UTS #39, through `unicode-security`; normalization forms of UAX #15 through
//! `unicode-normalization`).
//!
//! On top of the protocol's rules ([`seguro_core::msg::validate_name`]), a name must:
//!
//! - be in Unicode Normalization Form C (the server refuses rather than rewrites, so a
//!   client always knows the name it is listed under);
//! - contain no format, bidi-control, zero-width, variation-selector, private-use or
//!   other default-ignorable characters, and no character outside UTS #39's General
//!   Security Profile for identifiers (printable ASCII other than brackets is allowed
//!   as such: `bob.smith`, `ana-2`, `x_y!`);
//! - not mix scripts beyond UTS #39's "moderately restrictive" level (`аlice` with a
//!   Cyrillic `а` is refused even when no `alice` is connected);
//! - not be a reserved name (`SYS`, `SERVER`, `WARN`, `ERROR`, in any case or look-alike)
//!   and not contain a bracket, so nobody can pose as a system line;
//! - not collide with a connected name: two names collide when their confusable
//!   skeletons (UTS #39 §4) are equal, or those of their lower-case forms are.
//!
//! [`check`] is the pure part (one name alone); [`Keys`] are what the router compares
//! against connected names.

use std::fmt;

use unicode_normalization::{UnicodeNormalization as _, is_nfc};
use unicode_security::{GeneralSecurityProfile as _, RestrictionLevel, RestrictionLevelDetection};

/// Names nobody may take: clients print lines from them as system lines.
pub const RESERVED: [&str; 4] = ["SYS", "SERVER", "WARN", "ERROR"];

/// Why a name breaks the policy. Its `Display` is the text the client is sent.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRefusal {
    /// Not in Normalization Form C.
    NotNfc,
    /// A character of a refused class.
    Character {
        /// The character.
        c: char,
        /// Its class.
        class: CharClass,
    },
    /// Letters of scripts that should not be mixed (UTS #39 restriction levels).
    MixedScripts,
    /// A reserved name, or a look-alike of one.
    Reserved(&'static str),
    /// A bracket.
    Bracket(char),
}

/// Classes of refused characters.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    /// Bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C).
    Bidi,
    /// Zero-width characters and joiners (U+200B–U+200D, U+2060, U+FEFF).
    ZeroWidth,
    /// Variation selectors.
    VariationSelector,
    /// Private use.
    PrivateUse,
    /// Other format or default-ignorable characters (invisible).
    Invisible,
    /// Anything else outside UTS #39's General Security Profile for identifiers.
    NotIdentifier,
}

impl fmt::Display for CharClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bidi => "a bidirectional control character",
            Self::ZeroWidth => "a zero-width character",
            Self::VariationSelector => "a variation selector",
            Self::PrivateUse => "a private-use character",
            Self::Invisible => "an invisible format character",
            Self::NotIdentifier => "a character not allowed in names (Unicode UTS #39)",
        })
    }
}

impl fmt::Display for NameRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotNfc => f.write_str("user name is not in Unicode normalization form C (NFC)"),
            // The code point, never the character: it may be invisible or reorder text.
            Self::Character { c, class } => {
                write!(f, "user name contains U+{:04X}, {class}", u32::from(*c))
            }
            Self::MixedScripts => f.write_str(
                "user name mixes letters of scripts that look alike (e.g. Latin and Cyrillic)",
            ),
            Self::Reserved(r) => write!(f, "user name \"{r}\" (or a look-alike) is reserved"),
            Self::Bracket(c) => write!(f, "user name contains a bracket ('{c}')"),
        }
    }
}

impl std::error::Error for NameRefusal {}

fn class_of(c: char) -> Option<CharClass> {
    let cp = u32::from(c);
    let class = match cp {
        0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F | 0x061C => CharClass::Bidi,
        0x200B..=0x200D | 0x2060 | 0xFEFF => CharClass::ZeroWidth,
        0xFE00..=0xFE0F | 0xE0100..=0xE01EF | 0x180B..=0x180D | 0x180F => {
            CharClass::VariationSelector
        }
        0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD => CharClass::PrivateUse,
        _ if c.is_ascii_graphic() => return None,
        _ => match c.identifier_type() {
            Some(unicode_security::general_security_profile::IdentifierType::Default_Ignorable) => {
                CharClass::Invisible
            }
            _ if c.identifier_allowed() => return None,
            _ => CharClass::NotIdentifier,
        },
    };
    Some(class)
}

fn is_bracket(c: char) -> bool {
    matches!(c, '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>')
}

/// What a name is compared by: its confusable skeleton, and that of its lower-case form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Keys {
    /// UTS #39 skeleton of the name.
    pub skeleton: String,
    /// The skeleton of the lower case of the skeleton of the lower case (look-alikes
    /// in any case).
    pub folded: String,
}

impl Keys {
    /// The keys of `name`.
    pub fn of(name: &str) -> Self {
        let skeleton: String = unicode_security::skeleton(name).collect();
        // Lower case, skeleton, and the same again: `ALICE` meets `alice` (the prototype
        // of `I` is `l`, so lower case comes first), and `b0b` meets `bob` (the
        // prototype of `0` is `O`, so lower case comes after the skeleton too).
        let lower = |s: &str| -> String { s.nfc().flat_map(char::to_lowercase).collect() };
        let once: String = unicode_security::skeleton(&lower(name)).collect();
        let folded = unicode_security::skeleton(&lower(&once)).collect();
        Self { skeleton, folded }
    }

    /// True if a name with these keys would be mistaken for one with `other`.
    pub fn collides(&self, other: &Keys) -> bool {
        self.skeleton == other.skeleton || self.folded == other.folded
    }
}

/// Checks one name against the policy (everything but collisions with connected
/// names), returning its [`Keys`]. `name` has passed
/// [`seguro_core::msg::validate_name`].
pub fn check(name: &str) -> Result<Keys, NameRefusal> {
    if !is_nfc(name) {
        return Err(NameRefusal::NotNfc);
    }
    for c in name.chars() {
        if is_bracket(c) {
            return Err(NameRefusal::Bracket(c));
        }
        if let Some(class) = class_of(c) {
            return Err(NameRefusal::Character { c, class });
        }
    }
    // Restriction levels look at letters; ASCII punctuation is allowed as such above.
    let letters: String = name.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    if letters.as_str().detect_restriction_level() > RestrictionLevel::ModeratelyRestrictive {
        return Err(NameRefusal::MixedScripts);
    }
    let keys = Keys::of(name);
    for r in RESERVED {
        if keys.collides(&Keys::of(r)) {
            return Err(NameRefusal::Reserved(r));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(name: &str) -> NameRefusal {
        check(name).unwrap_err()
    }

    #[test]
    fn ordinary_names_pass() {
        for n in [
            "alice",
            "Bob",
            "bob.smith",
            "ana-2",
            "x_y!",
            "José",
            "Zoë",
            "Ελένη",
            "Дмитрий",
            "山田",
            "user@home",
            "a#1",
            "0",
            "ΑΒΓ",
        ] {
            assert!(check(n).is_ok(), "{n}: {:?}", check(n));
        }
    }

    #[test]
    fn the_issue_s_names_are_refused_with_their_reason() {
        let cases: [(&str, NameRefusal, &str); 10] = [
            (
                "SYS",
                NameRefusal::Reserved("SYS"),
                "user name \"SYS\" (or a look-alike) is reserved",
            ),
            ("SERVER", NameRefusal::Reserved("SERVER"), ""),
            ("WARN", NameRefusal::Reserved("WARN"), ""),
            ("ERROR", NameRefusal::Reserved("ERROR"), ""),
            ("sys", NameRefusal::Reserved("SYS"), ""),
            ("ErrOr", NameRefusal::Reserved("ERROR"), ""),
            (
                "alice\u{2060}",
                NameRefusal::Character {
                    c: '\u{2060}',
                    class: CharClass::ZeroWidth,
                },
                "user name contains U+2060, a zero-width character",
            ),
            (
                "alice\u{200d}",
                NameRefusal::Character {
                    c: '\u{200d}',
                    class: CharClass::ZeroWidth,
                },
                "",
            ),
            (
                "\u{202e}ecila",
                NameRefusal::Character {
                    c: '\u{202e}',
                    class: CharClass::Bidi,
                },
                "user name contains U+202E, a bidirectional control character",
            ),
            (
                "\u{430}lice",
                NameRefusal::MixedScripts,
                "user name mixes letters of scripts that look alike (e.g. Latin and Cyrillic)",
            ),
        ];
        for (name, want, text) in cases {
            let got = refusal(name);
            assert_eq!(got, want, "{name:?}");
            if !text.is_empty() {
                assert_eq!(got.to_string(), text);
            }
        }
    }

    #[test]
    fn every_refused_class() {
        let class = |name: &str| match refusal(name) {
            NameRefusal::Character { class, .. } => class,
            other => panic!("{name:?}: {other:?}"),
        };
        assert_eq!(class("a\u{200f}b"), CharClass::Bidi);
        assert_eq!(class("a\u{2067}b"), CharClass::Bidi);
        assert_eq!(class("a\u{061c}b"), CharClass::Bidi);
        assert_eq!(class("a\u{200b}b"), CharClass::ZeroWidth);
        assert_eq!(class("a\u{feff}b"), CharClass::ZeroWidth);
        assert_eq!(class("a\u{fe0f}"), CharClass::VariationSelector);
        assert_eq!(class("a\u{e0100}"), CharClass::VariationSelector);
        assert_eq!(class("a\u{e000}"), CharClass::PrivateUse);
        assert_eq!(class("a\u{f0000}"), CharClass::PrivateUse);
        assert_eq!(class("a\u{00ad}"), CharClass::Invisible);
        assert_eq!(class("a\u{2061}"), CharClass::Invisible);
        assert_eq!(class("a\u{1d400}"), CharClass::NotIdentifier);
        assert_eq!(class("a\u{ff01}"), CharClass::NotIdentifier);
        assert_eq!(class("\u{263a}"), CharClass::NotIdentifier);
        for b in ['(', ')', '[', ']', '{', '}', '<', '>'] {
            assert_eq!(refusal(&format!("a{b}b")), NameRefusal::Bracket(b));
        }
        assert_eq!(
            refusal("[SYS]").to_string(),
            "user name contains a bracket ('[')"
        );
    }

    #[test]
    fn nfc_is_required_and_nfd_refused() {
        assert!(check("Jos\u{e9}").is_ok());
        assert_eq!(refusal("Jose\u{301}"), NameRefusal::NotNfc);
        assert_eq!(
            NameRefusal::NotNfc.to_string(),
            "user name is not in Unicode normalization form C (NFC)"
        );
        // A singleton decomposition (Kelvin sign → K) is not NFC either.
        assert_eq!(refusal("\u{212a}im"), NameRefusal::NotNfc);
    }

    #[test]
    fn look_alikes_and_case_variants_collide() {
        let alice = check("alice").unwrap();
        for n in ["Alice", "ALICE", "aIice", "alíce"] {
            let k = Keys::of(n);
            if n == "alíce" {
                assert!(!k.collides(&alice), "{n}: accents are not look-alikes");
            } else {
                assert!(k.collides(&alice), "{n}");
            }
        }
        // rn / m, 0 / O, l / 1 (skeleton prototypes).
        assert!(Keys::of("rnallory").collides(&Keys::of("mallory")));
        assert!(Keys::of("b0b").collides(&Keys::of("bob")));
        assert!(Keys::of("pau1").collides(&Keys::of("paul")));
        // A Cyrillic look-alike, all in Cyrillic, collides with the Latin name.
        assert!(check("\u{441}\u{43e}\u{440}\u{435}").is_ok());
        assert!(Keys::of("\u{441}\u{43e}\u{440}\u{435}").collides(&Keys::of("cope")));
        assert!(!Keys::of("bob").collides(&Keys::of("rob")));
        // The reserved names by look-alike: Cyrillic Ѕ (U+0405), all-Cyrillic letters.
        assert_eq!(
            refusal("\u{405}\u{423}\u{405}"),
            NameRefusal::Reserved("SYS")
        );
    }
}
