//! A record's JSON read in place: a tree borrowing its text (no `String` per field), objects
//! sorted by key as serde_json's maps are, written back in the canonical form content hashes
//! are taken of.

use std::borrow::Cow;
use std::fmt;
use std::io;

/// Lists and objects nested this deep are refused, as serde_json refuses them (its recursion
/// limit of 128 counts the outermost; 127 levels pass).
const MAX_NESTING: usize = 128;

/// The key under which serde_json (`arbitrary_precision`) reads a one-member object as a
/// number: `{"$serde_json::private::Number": "12.5"}` is the number 12.5 to a `Value`, so it
/// must be to a record's hash and encoding, and to a page's envelope, too.
pub const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// One JSON value borrowed from a record's text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// A number's text as serde_json keeps it (`arbitrary_precision`): as sent, but for an
    /// exponent written `e` with its sign (`1E5` is `1e+5`). Decimals never pass through a float.
    Number(Cow<'a, str>),
    /// Borrowed unless the vendor escaped something in it.
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// An object's members sorted by key (byte order), one per key, the last of duplicates
/// winning: what a serde_json map holds for the same text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

/// Text that is not the JSON it should be, with the byte offset where reading stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid json at byte {at}: {reason}")]
pub struct JsonError {
    pub at: usize,
    pub reason: String,
}

impl<'a> Object<'a> {
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok().map(|i| &self.0[i].1)
    }

    /// Members in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> Json<'a> {
    /// Reads `text`, which must hold one JSON value (white space around it allowed).
    pub fn parse(text: &'a str) -> Result<Json<'a>, JsonError> {
        let mut p = Parser { text, at: 0 };
        let v = p.value(0)?;
        p.end()?;
        Ok(v)
    }

    /// The member `key` of an object; `None` for a missing member or a non-object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(o) => o.get(key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Writes the canonical text: compact, keys sorted, strings escaped and numbers written as
    /// serde_json writes a `Value` of the same text, byte for byte (content hashes stored in
    /// watermarks are taken of it).
    pub fn write_canonical(&self, out: &mut impl io::Write) -> io::Result<()> {
        match self {
            Json::Null => out.write_all(b"null"),
            Json::Bool(true) => out.write_all(b"true"),
            Json::Bool(false) => out.write_all(b"false"),
            Json::Number(n) => out.write_all(n.as_bytes()),
            Json::String(s) => serde_json::to_writer(out, s.as_ref()).map_err(io::Error::other),
            Json::Array(items) => {
                out.write_all(b"[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    item.write_canonical(out)?;
                }
                out.write_all(b"]")
            }
            Json::Object(o) => {
                out.write_all(b"{")?;
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    serde_json::to_writer(&mut *out, k).map_err(io::Error::other)?;
                    out.write_all(b":")?;
                    v.write_canonical(out)?;
                }
                out.write_all(b"}")
            }
        }
    }
}

/// The canonical text (as `serde_json::Value` displays the same JSON).
impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::new();
        self.write_canonical(&mut buf).map_err(|_| fmt::Error)?;
        f.write_str(&String::from_utf8_lossy(&buf))
    }
}

/// A cursor over the text.
struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn fail(&self, reason: &str) -> JsonError {
        JsonError { at: self.at, reason: reason.to_owned() }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), JsonError> {
        if self.next() == Some(b) { Ok(()) } else { Err(self.fail(&format!("expected `{}`", b as char))) }
    }

    fn end(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.at == self.text.len() { Ok(()) } else { Err(self.fail("trailing characters")) }
    }

    fn literal(&mut self, word: &str) -> Result<(), JsonError> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.fail("expected a value"))
        }
    }

    /// Refuses a list or object at `depth` (the outermost value is at 0) that serde_json would.
    fn nest(&self, depth: usize) -> Result<(), JsonError> {
        if depth + 1 >= MAX_NESTING { Err(self.fail("nested too deeply")) } else { Ok(()) }
    }

    fn value(&mut self, depth: usize) -> Result<Json<'a>, JsonError> {
        self.ws();
        Ok(match self.peek() {
            Some(b'{') => {
                self.nest(depth)?;
                self.at += 1;
                let mut members: Vec<(Cow<'a, str>, Json<'a>)> = Vec::with_capacity(16);
                self.ws();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                } else {
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.ws();
                        self.expect(b':')?;
                        if members.is_empty() && k == NUMBER_TOKEN {
                            return self.number_object();
                        }
                        let v = self.value(depth + 1)?;
                        members.push((k, v));
                        self.ws();
                        match self.next() {
                            Some(b',') => continue,
                            Some(b'}') => break,
                            _ => return Err(self.fail("expected `,` or `}` in an object")),
                        }
                    }
                }
                // Stable, so among equal keys the last stays last; keep that one.
                members.sort_by(|a, b| a.0.cmp(&b.0));
                if members.windows(2).any(|w| w[0].0 == w[1].0) {
                    let mut unique: Vec<(Cow<'a, str>, Json<'a>)> = Vec::with_capacity(members.len());
                    for m in members {
                        match unique.last_mut() {
                            Some(last) if last.0 == m.0 => *last = m,
                            _ => unique.push(m),
                        }
                    }
                    members = unique;
                }
                Json::Object(Object(members))
            }
            Some(b'[') => {
                self.nest(depth)?;
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.at += 1;
                } else {
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.next() {
                            Some(b',') => continue,
                            Some(b']') => break,
                            _ => return Err(self.fail("expected `,` or `]` in a list")),
                        }
                    }
                }
                Json::Array(items)
            }
            Some(b'"') => Json::String(self.string()?),
            Some(b't') => {
                self.literal("true")?;
                Json::Bool(true)
            }
            Some(b'f') => {
                self.literal("false")?;
                Json::Bool(false)
            }
            Some(b'n') => {
                self.literal("null")?;
                Json::Null
            }
            Some(b'-' | b'0'..=b'9') => Json::Number(self.number()?),
            _ => return Err(self.fail("expected a value")),
        })
    }

    /// The rest of `{"$serde_json::private::Number": "<text>"}` after its key, read as
    /// serde_json reads it: the text must be a number, and the object end there.
    fn number_object(&mut self) -> Result<Json<'a>, JsonError> {
        self.ws();
        let at = self.at;
        let text = self.string()?;
        let n = text
            .parse::<serde_json::Number>()
            .map_err(|e| JsonError { at, reason: format!("{NUMBER_TOKEN} is not a number: {e}") })?;
        self.ws();
        self.expect(b'}')?;
        Ok(Json::Number(Cow::Owned(n.to_string())))
    }

    /// Moves past a string; whether it holds an escape.
    fn string_end(&mut self) -> Result<bool, JsonError> {
        self.expect(b'"')?;
        let bytes = self.text.as_bytes();
        let mut escaped = false;
        loop {
            match bytes.get(self.at) {
                None => return Err(self.fail("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.at += 2;
                }
                Some(&b) if b < 0x20 => return Err(self.fail("control character in a string")),
                Some(_) => self.at += 1,
            }
        }
    }

    /// A string, borrowed when it holds no escape; escapes are undone by serde_json itself, so
    /// they mean exactly what they mean to a `Value`.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let start = self.at;
        let escaped = self.string_end()?;
        let token = &self.text[start..self.at];
        if !escaped {
            return Ok(Cow::Borrowed(&token[1..token.len() - 1]));
        }
        serde_json::from_str::<String>(token)
            .map(Cow::Owned)
            .map_err(|e| JsonError { at: start, reason: format!("bad string: {e}") })
    }

    /// A number's text, checked against JSON's grammar, its exponent written as serde_json
    /// writes it.
    fn number(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let start = self.at;
        let bytes = self.text.as_bytes();
        let digits = |p: &mut Self| {
            let from = p.at;
            while bytes.get(p.at).is_some_and(u8::is_ascii_digit) {
                p.at += 1;
            }
            p.at - from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.fail("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return Err(self.fail("expected a digit after `.`"));
            }
        }
        let mut exponent = None;
        if let Some(e @ (b'e' | b'E')) = self.peek() {
            let at = self.at;
            self.at += 1;
            let signed = matches!(self.peek(), Some(b'+' | b'-'));
            if signed {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(self.fail("expected a digit in the exponent"));
            }
            if e == b'E' || !signed {
                exponent = Some((at, signed));
            }
        }
        let text = &self.text[start..self.at];
        Ok(match exponent {
            None => Cow::Borrowed(text),
            Some((at, signed)) => {
                let (mantissa, rest) = text.split_at(at - start);
                let rest = &rest[1..];
                Cow::Owned(format!("{mantissa}e{}{rest}", if signed { "" } else { "+" }))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Canonical text through the borrowed tree and through a serde_json `Value`.
    fn both(text: &str) -> (String, String) {
        let ours = Json::parse(text).unwrap().to_string();
        let theirs = serde_json::from_str::<Value>(text).unwrap().to_string();
        (ours, theirs)
    }

    #[test]
    fn canonical_text_is_what_serde_json_writes_for_the_same_json() {
        for text in [
            r#"{"b": 1, "a": "x", "c": [true, false, null, {"z": 0, "y": -0}]}"#,
            r#"{"n": [0, -1, 1.50, 1e5, 1E+5, 2.5e-3, -0.0, 123456789012345678901234567890.000100]}"#,
            r#"{"s": "引号\"反斜杠\\ tab\t nl\n cr\r bs\b ff\f ctl\u0001 \u00e9 \ud83d\ude00 \/ 中文"}"#,
            r#"{"dup": 1, "a": 2, "dup": 3}"#,
            r#"{"ключ": "значение", "Z": 1, "a": 2, "_": 3, "": 4}"#,
            r#"  {"deep": {"er": {"est": [[[]], {}]}}}  "#,
            r#"{"esc\"aped key": "x", "k\u0041": "A"}"#,
            // serde_json's private number form, which a `Value` reads as the number.
            r#"{"id": "k", "amt": {"$serde_json::private::Number": "12.5"}, "e": {"\u0024serde_json::private::Number": "1E5"}}"#,
            r#"{"$serde_json::private::Number": "-0"}"#,
            "[]",
            "\"just text\"",
        ] {
            let (ours, theirs) = both(text);
            assert_eq!(ours, theirs, "for {text}");
        }
    }

    #[test]
    fn text_without_escapes_is_borrowed() {
        let text = r#"{"plain": "借用", "esc": "a\nb"}"#;
        let v = Json::parse(text).unwrap();
        assert!(matches!(v.get("plain"), Some(Json::String(Cow::Borrowed("借用")))));
        assert!(matches!(v.get("esc"), Some(Json::String(Cow::Owned(s))) if s == "a\nb"));
    }

    #[test]
    fn what_serde_json_refuses_is_refused() {
        for text in [
            r#"{"a": 1,}"#,
            r#"{"a" 1}"#,
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": .5}"#,
            r#"{"a": 1e}"#,
            r#"{"a": +1}"#,
            r#"{"a": tru}"#,
            r#"{"a": "\x"}"#,
            r#"{"a": "\ud800"}"#,
            "{\"a\": \"raw\u{1}control\"}",
            r#"{"a": "open"#,
            r#"{"a": 1} x"#,
            r#"[1, 2"#,
            r#"{"x": {"$serde_json::private::Number": "abc"}}"#,
            r#"{"x": {"$serde_json::private::Number": 1}}"#,
            r#"{"$serde_json::private::Number": "1", "y": 2}"#,
        ] {
            assert!(serde_json::from_str::<Value>(text).is_err(), "serde_json accepts {text}");
            let err = Json::parse(text).unwrap_err();
            assert!(err.to_string().starts_with("invalid json at byte"), "{text}: {err}");
        }
        // serde_json's recursion limit: 127 levels pass, 128 do not, lists or objects.
        let deep = |n: usize, open: &str, close: &str| format!("{}1{}", open.repeat(n), close.repeat(n));
        for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
            let (ok, refused) = (deep(127, open, close), deep(128, open, close));
            assert!(serde_json::from_str::<Value>(&ok).is_ok() && Json::parse(&ok).is_ok(), "127 {open}");
            assert!(serde_json::from_str::<Value>(&refused).is_err(), "serde_json takes 128 {open}");
            assert!(Json::parse(&refused).unwrap_err().reason.contains("nested too deeply"), "128 {open}");
        }
    }

    #[test]
    fn lookups_follow_the_sorted_members() {
        let v = Json::parse(r#"{"c": 3, "a": 1, "b": {"x": "y"}}"#).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(v.get("b").and_then(|b| b.get("x")).and_then(Json::as_str), Some("y"));
        assert_eq!(v.get("zz"), None);
        assert_eq!(o.len(), 3);
    }
}
