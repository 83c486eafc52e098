//! Core's JSON reader (behind `msg::parse` and `v2::json::parse`) against serde_json as
//! an oracle: on documents written in any style (white space anywhere JSON allows it,
//! every escape form, surrogate pairs, nested values of every kind, numbers in every
//! form) and on random edits of them, core accepts exactly the JSON that serde_json
//! accepts — objects nested at most 16 deep — and decodes every string to the same text.

use proptest::prelude::*;
use seguro_core::msg::{self, Message, ParseError};
use serde_json::Value;

/// A JSON value as the generator builds it: numbers keep their exact text.
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// How to write a document: white space between tokens and the escaping of strings.
#[derive(Debug, Clone)]
struct Style {
    /// Cycled through for the white space before and after each token.
    ws: Vec<&'static str>,
    /// Cycled through: how each character of a string is written.
    esc: Vec<u8>,
}

struct Writer<'s> {
    style: &'s Style,
    out: String,
    i: usize,
    j: usize,
}

impl Writer<'_> {
    fn ws(&mut self) {
        let w = self.style.ws[self.i % self.style.ws.len()];
        self.i += 1;
        self.out.push_str(w);
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            let mode = self.style.esc[self.j % self.style.esc.len()];
            self.j += 1;
            let short = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"),
                '/' if mode % 2 == 1 => Some("\\/"),
                _ => None,
            };
            let must = (c as u32) < 0x20 || c == '"' || c == '\\';
            match (mode % 4, short) {
                (0 | 1, Some(e)) if must || mode == 1 => self.out.push_str(e),
                _ if must || mode % 4 >= 2 => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        if mode % 4 == 3 {
                            self.out.push_str(&format!("\\u{u:04X}"));
                        } else {
                            self.out.push_str(&format!("\\u{u:04x}"));
                        }
                    }
                }
                _ => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn value(&mut self, v: &J) {
        match v {
            J::Null => self.out.push_str("null"),
            J::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => self.out.push_str(n),
            J::Str(s) => self.string(s),
            J::Arr(items) => {
                self.out.push('[');
                self.ws();
                for (k, item) in items.iter().enumerate() {
                    if k > 0 {
                        self.out.push(',');
                        self.ws();
                    }
                    self.value(item);
                    self.ws();
                }
                self.out.push(']');
            }
            J::Obj(members) => self.object(members),
        }
    }

    fn object(&mut self, members: &[(String, J)]) {
        self.out.push('{');
        self.ws();
        for (k, (key, v)) in members.iter().enumerate() {
            if k > 0 {
                self.out.push(',');
                self.ws();
            }
            self.string(key);
            self.ws();
            self.out.push(':');
            self.ws();
            self.value(v);
            self.ws();
        }
        self.out.push('}');
    }
}

fn number() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,12}"],
        prop::option::of("[0-9]{1,6}"),
        prop::option::of(("[eE]", "[+-]?", "[0-9]{1,2}")),
    )
        .prop_map(|(neg, int, frac, exp)| {
            let mut s = String::new();
            if neg {
                s.push('-');
            }
            s.push_str(&int);
            if let Some(f) = frac {
                s.push('.');
                s.push_str(&f);
            }
            if let Some((e, sign, d)) = exp {
                s.push_str(&e);
                s.push_str(&sign);
                s.push_str(&d);
            }
            s
        })
}

fn text() -> impl Strategy<Value = String> {
    // Every kind of character: controls, quotes, backslashes, slashes, non-BMP.
    prop::collection::vec(
        prop_oneof![
            3 => any::<char>(),
            1 => prop::sample::select(vec!['"', '\\', '/', '\n', '\r', '\t', '\u{8}', '\u{c}', '\u{0}', '\u{1f}', '\u{7f}', '\u{2028}', '\u{1F680}', 'é']),
        ],
        0..12,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        number().prop_map(J::Num),
        text().prop_map(J::Str),
    ];
    leaf.prop_recursive(6, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
            prop::collection::vec((text(), inner), 0..5).prop_map(J::Obj),
        ]
    })
}

fn style() -> impl Strategy<Value = Style> {
    (
        prop::collection::vec(
            prop::sample::select(vec!["", " ", "\t", "\n", "\r", " \r\n\t "]),
            1..5,
        ),
        prop::collection::vec(0u8..4, 1..6),
    )
        .prop_map(|(ws, esc)| Style { ws, esc })
}

/// Nesting of containers within a member value, as core counts it.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.iter().map(depth).max().map_or(0, |d| d + 1),
        Value::Object(o) => o.values().map(depth).max().map_or(0, |d| d + 1),
        _ => 0,
    }
}

/// Whether core's reader accepts `line` as JSON (any other refusal is about fields).
fn core_reads(line: &[u8]) -> bool {
    let mut scratch = vec![0u8; line.len()];
    !matches!(
        msg::parse(line, &mut scratch),
        Err(ParseError::InvalidJson { .. } | ParseError::NotUtf8)
    )
}

/// Whether a reader following RFC 8259 accepts `line` as one of the objects core reads;
/// `None` when serde_json refuses for a reason outside the grammar (a number beyond
/// f64).
fn oracle_reads(line: &[u8]) -> Option<bool> {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(o)) => Some(o.values().all(|v| depth(v) <= 16)),
        Ok(_) => Some(false),
        Err(e) if e.to_string().contains("out of range") => None,
        Err(_) => Some(false),
    }
}

fn chat_doc(text: &str, extra: &[(String, J)], style: &Style) -> String {
    let mut members = vec![
        ("type".to_owned(), J::Str("chat".to_owned())),
        ("text".to_owned(), J::Str(text.to_owned())),
    ];
    members.extend(extra.iter().cloned());
    // "type" and "text" last, so a duplicate in `extra` does not win.
    members.rotate_left(2);
    let mut w = Writer {
        style,
        out: String::new(),
        i: 0,
        j: 0,
    };
    w.ws();
    w.object(&members);
    w.ws();
    w.out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_style_reads_the_same_text(
        t in text(),
        extra in prop::collection::vec(("[a-z]{1,10}", value()), 0..4),
        s in style(),
    ) {
        let line = chat_doc(&t, &extra, &s);
        let want = serde_json::from_str::<Value>(&line).expect("the generator writes JSON");
        prop_assert_eq!(want["text"].as_str(), Some(t.as_str()));
        let mut scratch = vec![0u8; line.len()];
        prop_assert_eq!(msg::parse(line.as_bytes(), &mut scratch), Ok(Message::Chat { text: &t }));
    }

    #[test]
    fn edited_documents_are_accepted_exactly_when_json_is(
        t in text(),
        extra in prop::collection::vec(("[a-z]{1,10}", value()), 0..4),
        s in style(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, prop::sample::select(
            b"{}[],:\"\\/ \t\n\rx0-+.eEtfnulu1aAdD\x01\xc3\xa9\xff".to_vec())), 1..4),
    ) {
        let mut line = chat_doc(&t, &extra, &s).into_bytes();
        for (at, kind, byte) in edits {
            if line.is_empty() {
                break;
            }
            let i = at.index(line.len());
            match kind {
                0 => line[i] = byte,
                1 => { line.remove(i); }
                2 => line.insert(i, byte),
                _ => line.truncate(i),
            }
        }
        let oracle = oracle_reads(&line);
        if let Some(ok) = oracle {
            prop_assert_eq!(core_reads(&line), ok, "{}", String::from_utf8_lossy(&line));
        }
        // When both read it and it is still a chat, the text is the oracle's.
        let mut scratch = vec![0u8; line.len()];
        if let (Some(true), Ok(Message::Chat { text })) = (oracle, msg::parse(&line, &mut scratch)) {
            let v: Value = serde_json::from_slice(&line).unwrap();
            prop_assert_eq!(v["text"].as_str(), Some(text));
        }
    }
}

fn nested(open: &str, close: &str, n: usize) -> String {
    format!(
        r#"{{"type":"chat","text":"x","deep":{}1{}}}"#,
        open.repeat(n),
        close.repeat(n)
    )
}

#[test]
fn nesting_is_refused_beyond_sixteen_levels() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}"), ("[{\"a\":", "}]")] {
        let levels = if open.len() > 5 { 2 } else { 1 };
        let max = 16 / levels;
        let ok = nested(open, close, max);
        assert!(core_reads(ok.as_bytes()), "{ok}");
        let deep = nested(open, close, max + 1);
        assert!(!core_reads(deep.as_bytes()), "{deep}");
        let far = nested(open, close, 10_000);
        assert!(!core_reads(far.as_bytes()));
    }
    let empty = r#"{"type":"chat","text":"x","e":[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]}"#;
    assert_eq!(empty.matches('[').count(), 17);
    assert!(core_reads(empty.as_bytes()));
    let too = r#"{"type":"chat","text":"x","e":[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]}"#;
    assert!(!core_reads(too.as_bytes()));
}

#[test]
fn malformed_documents_say_where_they_stop() {
    let cases: [(&str, usize, &str); 14] = [
        (r#"{"type":"chat","text":"x",}"#, 26, "trailing comma"),
        (
            r#"{"type":"chat","text":"x" "a":1}"#,
            26,
            "expected ',' or '}'",
        ),
        (r#"{"type":"chat","text" "x"}"#, 22, "expected ':'"),
        (r#"{"type":"chat","text":}"#, 22, "expected a value"),
        (
            r#"{"type":"chat","text":"x","n":01}"#,
            31,
            "expected ',' or '}'",
        ),
        (r#"{"type":"chat","text":"x","n":-}"#, 31, "bad number"),
        (r#"{"type":"chat","text":"x","n":1.}"#, 32, "bad number"),
        (r#"{"type":"chat","text":"x","n":1e}"#, 32, "bad number"),
        (r#"{"type":"chat","text":"x","n":nul}"#, 30, "bad literal"),
        (r#"{"type":"chat","text":"\x"}"#, 24, "bad escape"),
        (r#"{"type":"chat","text":"\u12g4"}"#, 27, "bad \\u escape"),
        (
            r#"{"type":"chat","text":"\ud800x"}"#,
            23,
            "unpaired surrogate",
        ),
        (
            r#"{"type":"chat","text":"x"} {}"#,
            27,
            "data after the object",
        ),
        (r#"{"type":"chat","text":"x"#, 24, "unterminated string"),
    ];
    let mut bad = Vec::new();
    for (line, offset, what) in cases {
        let mut s = vec![0u8; line.len()];
        let got = msg::parse(line.as_bytes(), &mut s);
        if got != Err(ParseError::InvalidJson { offset, what }) {
            bad.push(format!("{line}: {got:?}"));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    let mut s = [0u8; 8];
    assert_eq!(
        msg::parse(b" [1]", &mut s),
        Err(ParseError::InvalidJson {
            offset: 1,
            what: "expected an object"
        })
    );
    assert_eq!(
        msg::parse(b"{\"a\":\"\x01\"}", &mut s),
        Err(ParseError::InvalidJson {
            offset: 6,
            what: "control character in string"
        })
    );
    assert_eq!(
        msg::parse(b"{,}", &mut s),
        Err(ParseError::InvalidJson {
            offset: 1,
            what: "expected a string"
        })
    );
}
