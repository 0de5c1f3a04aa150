//! The parts of Python's standard library whose exact behaviour `mock_relay.py` exposes in its
//! answers: `json.loads(bytes)` (with the mock's duplicate-key hook) and `json.dumps` with
//! `ensure_ascii`, `repr(str)`, `urllib.parse.parse_qsl(strict_parsing=True)` and `unquote`,
//! `base64.b64decode(validate=True)`, `str.split()` and `str.strip()` whitespace. Python
//! strings may hold lone surrogates (`\ud800`, or UTF-8 decoded with `surrogatepass`), so JSON
//! strings are sequences of code points ([`PyStr`]), not Rust `String`s.

use std::fmt::Write as _;

/// A Python `str`: code points, surrogates included.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(crate) struct PyStr(pub(crate) Vec<u32>);

impl PyStr {
    pub(crate) fn from_str(s: &str) -> PyStr {
        PyStr(s.chars().map(u32::from).collect())
    }

    /// Whether it equals the Rust string `s`.
    pub(crate) fn is(&self, s: &str) -> bool {
        self.0.iter().copied().eq(s.chars().map(u32::from))
    }

    /// The string when every code point is ASCII (`str.encode("ascii")` succeeds).
    pub(crate) fn to_ascii(&self) -> Option<String> {
        self.0
            .iter()
            .map(|&c| (c < 0x80).then_some(c as u8 as char))
            .collect()
    }
}

/// Python's `str.isspace()` for the characters a Latin-1 decoded request can hold (and the
/// few other Unicode spaces), as `str.split()` and `str.strip()` use it.
pub(crate) fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\x0b'
            | '\x0c'
            | '\r'
            | '\x1c'..='\x1f'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Bytes decoded as ISO-8859-1 (what `http.server` does with the request line and headers).
pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

// ---------------------------------------------------------------------------------------------
// repr and json.dumps

/// Whether Python's `str.isprintable()` holds for `c`: exact for Latin-1, surrogates, private
/// use, the format characters and separators; other unassigned code points count as printable
/// here (Python's Unicode database says otherwise: a documented difference).
fn py_printable(c: u32) -> bool {
    match c {
        0..=0x1f | 0x7f..=0xa0 | 0xad => false,
        0x20..=0x7e => true,
        0xd800..=0xdfff | 0xe000..=0xf8ff | 0xf0000.. => false,
        0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890 | 0x891 | 0x8e2 | 0x180e => false,
        0x1680 | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f => false,
        0x3000 | 0xfeff | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x1343f => false,
        0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f => false,
        0x378 | 0x379 | 0x380..=0x383 | 0x38b | 0x38d | 0x3a2 | 0xfffe | 0xffff => false,
        _ => char::from_u32(c).is_some(),
    }
}

/// Python's `repr()` of a string.
pub(crate) fn repr(s: impl IntoIterator<Item = u32> + Clone) -> String {
    let has = |q: u32| s.clone().into_iter().any(|c| c == q);
    let quote = if has('\'' as u32) && !has('"' as u32) {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s {
        match c {
            0x5c => out.push_str("\\\\"),
            0x09 => out.push_str("\\t"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            _ if c == quote as u32 => {
                out.push('\\');
                out.push(quote);
            }
            _ if py_printable(c) => out.push(char::from_u32(c).unwrap_or('\u{fffd}')),
            0..=0xff => write!(out, "\\x{c:02x}").unwrap(),
            0x100..=0xffff => write!(out, "\\u{c:04x}").unwrap(),
            _ => write!(out, "\\U{c:08x}").unwrap(),
        }
    }
    out.push(quote);
    out
}

/// `repr()` of a Rust string.
pub(crate) fn repr_str(s: &str) -> String {
    repr(s.chars().map(u32::from).collect::<Vec<_>>())
}

/// Appends `s` as `json.dumps` writes a string with `ensure_ascii=True`.
pub(crate) fn dump_str(s: impl IntoIterator<Item = u32>, out: &mut String) {
    out.push('"');
    for c in s {
        match c {
            0x22 => out.push_str("\\\""),
            0x5c => out.push_str("\\\\"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            0x09 => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            0x20..=0x7e => out.push(c as u8 as char),
            0..=0xffff => write!(out, "\\u{c:04x}").unwrap(),
            _ => {
                let v = c - 0x10000;
                let (hi, lo) = (0xd800 | (v >> 10), 0xdc00 | (v & 0x3ff));
                write!(out, "\\u{hi:04x}\\u{lo:04x}").unwrap();
            }
        }
    }
    out.push('"');
}

/// A Rust string as a JSON string (`json.dumps`, `ensure_ascii=True`).
pub(crate) fn dump_string(s: &str) -> String {
    let mut out = String::new();
    dump_str(s.chars().map(u32::from), &mut out);
    out
}

/// Python's `repr(float)` (and `json.dumps` of a float).
pub(crate) fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Shortest round-trip digits and decimal exponent, from Rust's `{:e}` ("d.ddde-N").
    let sci = format!("{:e}", x.abs());
    let (mant, exp) = sci.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if x.is_sign_negative() { "-" } else { "" };
    // Python: decpt = exp + 1; exponent notation when decpt <= -4 or decpt > 16.
    let decpt = exp + 1;
    if decpt <= -4 || decpt > 16 {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    let body = if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt as usize >= digits.len() {
        format!("{digits}{}.0", "0".repeat(decpt as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..decpt as usize],
            &digits[decpt as usize..]
        )
    };
    format!("{sign}{body}")
}

// ---------------------------------------------------------------------------------------------
// JSON values

/// A value as Python's `json` module decodes it: ints keep their exact decimal text, objects
/// their key order (the mock's hook refuses duplicate keys).
#[derive(Clone, Debug)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// Canonical decimal text (`-0` is `0`).
    Int(String),
    Float(f64),
    Str(PyStr),
    Array(Vec<Json>),
    Object(Vec<(PyStr, Json)>),
}

impl Json {
    pub(crate) fn str(s: &str) -> Json {
        Json::Str(PyStr::from_str(s))
    }

    pub(crate) fn int(i: i64) -> Json {
        Json::Int(i.to_string())
    }

    pub(crate) fn object(pairs: &[(&str, Json)]) -> Json {
        Json::Object(
            pairs
                .iter()
                .map(|(k, v)| (PyStr::from_str(k), v.clone()))
                .collect(),
        )
    }

    /// The mock's `strict_equal`: equality that tells `true` from `1` and ints from floats;
    /// objects compare as sets of keys.
    pub(crate) fn strict_eq(&self, other: &Json) -> bool {
        match (self, other) {
            (Json::Null, Json::Null) => true,
            (Json::Bool(a), Json::Bool(b)) => a == b,
            (Json::Int(a), Json::Int(b)) => a == b,
            (Json::Float(a), Json::Float(b)) => a == b,
            (Json::Str(a), Json::Str(b)) => a == b,
            (Json::Array(a), Json::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.strict_eq(y))
            }
            (Json::Object(a), Json::Object(b)) => {
                a.len() == b.len()
                    && a.iter().all(|(k, v)| {
                        b.iter()
                            .find(|(k2, _)| k2 == k)
                            .is_some_and(|(_, v2)| v.strict_eq(v2))
                    })
            }
            _ => false,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(pairs) => pairs.iter().find(|(k, _)| k.is(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether this is an object whose keys are exactly `keys` (in any order).
    pub(crate) fn has_exactly_keys(&self, keys: &[&str]) -> bool {
        match self {
            Json::Object(pairs) => {
                pairs.len() == keys.len() && keys.iter().all(|k| pairs.iter().any(|(p, _)| p.is(k)))
            }
            _ => false,
        }
    }

    /// `json.dumps(self, separators=(",", ":"))`.
    pub(crate) fn compact(&self) -> String {
        let mut out = String::new();
        self.dump(&mut out);
        out
    }

    fn dump(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(s) => out.push_str(s),
            Json::Float(f) => out.push_str(&float_repr(*f)),
            Json::Str(s) => dump_str(s.0.iter().copied(), out),
            Json::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.dump(out);
                }
                out.push(']');
            }
            Json::Object(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    dump_str(k.0.iter().copied(), out);
                    out.push(':');
                    v.dump(out);
                }
                out.push('}');
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// json.loads(bytes)

/// Nesting deeper than this fails the way Python's recursion limit does (no answer).
pub(crate) const MAX_DEPTH: usize = 980;

/// Why `json.loads` failed.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// A `ValueError` (decode error, JSON syntax, duplicate key, too many digits): its text.
    Value(String),
    /// A `RecursionError`: the mock's handler dies (no answer, connection closed).
    Recursion,
}

/// `json.loads(body, object_pairs_hook=no_duplicate_keys)` of `mock_relay.py`.
pub(crate) fn loads(body: &[u8]) -> Result<Json, LoadError> {
    let text = decode_for_json(body).map_err(LoadError::Value)?;
    let mut p = Parser { s: &text, depth: 0 };
    let start = p.skip_ws(0);
    let (value, end) = match p.value(start) {
        Ok(v) => v,
        Err(Fail::Stop(at)) => return Err(LoadError::Value(p.err("Expecting value", at))),
        Err(Fail::Msg(m)) => return Err(LoadError::Value(m)),
        Err(Fail::Recursion) => return Err(LoadError::Recursion),
    };
    let end = p.skip_ws(end);
    if end != text.len() {
        return Err(LoadError::Value(p.err("Extra data", end)));
    }
    Ok(value)
}

/// `bytes.decode(json.detect_encoding(b), "surrogatepass")`.
fn decode_for_json(b: &[u8]) -> Result<Vec<u32>, String> {
    let starts = |p: &[u8]| b.starts_with(p);
    if starts(&[0, 0, 0xfe, 0xff]) {
        return decode_utf32(&b[4..], false, 4, "utf-32-be");
    }
    if starts(&[0xff, 0xfe, 0, 0]) {
        return decode_utf32(&b[4..], true, 4, "utf-32-le");
    }
    if starts(&[0xfe, 0xff]) {
        return decode_utf16(&b[2..], false, 2, "utf-16-be");
    }
    if starts(&[0xff, 0xfe]) {
        return decode_utf16(&b[2..], true, 2, "utf-16-le");
    }
    if starts(&[0xef, 0xbb, 0xbf]) {
        // utf-8-sig decodes what follows the BOM: positions count from there.
        return decode_utf8(&b[3..], 0);
    }
    if b.len() >= 4 {
        if b[0] == 0 {
            return if b[1] != 0 {
                decode_utf16(b, false, 0, "utf-16-be")
            } else {
                decode_utf32(b, false, 0, "utf-32-be")
            };
        }
        if b[1] == 0 {
            return if b[2] != 0 || b[3] != 0 {
                decode_utf16(b, true, 0, "utf-16-le")
            } else {
                decode_utf32(b, true, 0, "utf-32-le")
            };
        }
    } else if b.len() == 2 {
        if b[0] == 0 {
            return decode_utf16(b, false, 0, "utf-16-be");
        }
        if b[1] == 0 {
            return decode_utf16(b, true, 0, "utf-16-le");
        }
    }
    decode_utf8(b, 0)
}

/// A `UnicodeDecodeError`'s text; `start..end` are byte positions in the whole body.
fn decode_error(codec: &str, b: &[u8], start: usize, end: usize, reason: &str) -> String {
    if end - start == 1 {
        format!(
            "'{codec}' codec can't decode byte 0x{:02x} in position {start}: {reason}",
            b[start]
        )
    } else {
        format!(
            "'{codec}' codec can't decode bytes in position {start}-{}: {reason}",
            end - 1
        )
    }
}

fn decode_utf16(b: &[u8], le: bool, off: usize, codec: &str) -> Result<Vec<u32>, String> {
    let whole_len = off + b.len();
    let mut units = Vec::with_capacity(b.len() / 2);
    let mut pairs = b.chunks_exact(2);
    for p in &mut pairs {
        units.push(if le {
            u16::from_le_bytes([p[0], p[1]])
        } else {
            u16::from_be_bytes([p[0], p[1]])
        });
    }
    // Surrogate pairs join; lone surrogates pass (surrogatepass).
    let mut out = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        let u = u32::from(units[i]);
        if (0xd800..0xdc00).contains(&u)
            && i + 1 < units.len()
            && (0xdc00..0xe000).contains(&u32::from(units[i + 1]))
        {
            let lo = u32::from(units[i + 1]);
            out.push(0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00));
            i += 2;
        } else {
            out.push(u);
            i += 1;
        }
    }
    if !pairs.remainder().is_empty() {
        let whole: Vec<u8> = std::iter::repeat_n(0, off)
            .chain(b.iter().copied())
            .collect();
        return Err(decode_error(
            codec,
            &whole,
            whole_len - 1,
            whole_len,
            "truncated data",
        ));
    }
    Ok(out)
}

fn decode_utf32(b: &[u8], le: bool, off: usize, codec: &str) -> Result<Vec<u32>, String> {
    let whole: Vec<u8> = std::iter::repeat_n(0, off)
        .chain(b.iter().copied())
        .collect();
    let mut out = Vec::with_capacity(b.len() / 4);
    for (i, q) in b.chunks(4).enumerate() {
        let at = off + 4 * i;
        if q.len() < 4 {
            return Err(decode_error(
                codec,
                &whole,
                at,
                at + q.len(),
                "truncated data",
            ));
        }
        let c = if le {
            u32::from_le_bytes([q[0], q[1], q[2], q[3]])
        } else {
            u32::from_be_bytes([q[0], q[1], q[2], q[3]])
        };
        if c > 0x10ffff {
            return Err(decode_error(
                codec,
                &whole,
                at,
                at + 4,
                "code point not in range(0x110000)",
            ));
        }
        out.push(c);
    }
    Ok(out)
}

/// CPython's UTF-8 decoder with the `surrogatepass` handler (same error ranges and reasons).
fn decode_utf8(b: &[u8], off: usize) -> Result<Vec<u32>, String> {
    let whole: Vec<u8> = std::iter::repeat_n(0, off)
        .chain(b.iter().copied())
        .collect();
    let cont = |x: u8| (0x80..0xc0).contains(&x);
    let err = |s: usize, e: usize, why: &str| decode_error("utf-8", &whole, off + s, off + e, why);
    let mut out = Vec::with_capacity(b.len());
    let mut s = 0;
    let end = b.len();
    while s < end {
        let ch = b[s];
        if ch < 0x80 {
            out.push(u32::from(ch));
            s += 1;
            continue;
        }
        if !(0xc2..0xf5).contains(&ch) {
            return Err(err(s, s + 1, "invalid start byte"));
        }
        if ch < 0xe0 {
            if end - s < 2 {
                return Err(err(s, end, "unexpected end of data"));
            }
            if !cont(b[s + 1]) {
                return Err(err(s, s + 1, "invalid continuation byte"));
            }
            out.push((u32::from(ch & 0x1f) << 6) | u32::from(b[s + 1] & 0x3f));
            s += 2;
            continue;
        }
        if ch < 0xf0 {
            // surrogatepass: an encoded surrogate (ED A0..BF xx) is taken as is.
            if ch == 0xed && end - s >= 3 && b[s + 1] >= 0xa0 && cont(b[s + 1]) && cont(b[s + 2]) {
                out.push(
                    (u32::from(ch & 0x0f) << 12)
                        | (u32::from(b[s + 1] & 0x3f) << 6)
                        | u32::from(b[s + 2] & 0x3f),
                );
                s += 3;
                continue;
            }
            let bad2 = |c2: u8| !cont(c2) || (if c2 < 0xa0 { ch == 0xe0 } else { ch == 0xed });
            if end - s < 3 {
                if end - s < 2 {
                    return Err(err(s, end, "unexpected end of data"));
                }
                if bad2(b[s + 1]) {
                    return Err(err(s, s + 1, "invalid continuation byte"));
                }
                return Err(err(s, end, "unexpected end of data"));
            }
            if bad2(b[s + 1]) {
                return Err(err(s, s + 1, "invalid continuation byte"));
            }
            if !cont(b[s + 2]) {
                return Err(err(s, s + 2, "invalid continuation byte"));
            }
            out.push(
                (u32::from(ch & 0x0f) << 12)
                    | (u32::from(b[s + 1] & 0x3f) << 6)
                    | u32::from(b[s + 2] & 0x3f),
            );
            s += 3;
            continue;
        }
        let bad2 = |c2: u8| !cont(c2) || (if c2 < 0x90 { ch == 0xf0 } else { ch == 0xf4 });
        if end - s < 4 {
            if end - s < 2 {
                return Err(err(s, end, "unexpected end of data"));
            }
            if bad2(b[s + 1]) {
                return Err(err(s, s + 1, "invalid continuation byte"));
            }
            if end - s >= 3 && !cont(b[s + 2]) {
                return Err(err(s, s + 2, "invalid continuation byte"));
            }
            return Err(err(s, end, "unexpected end of data"));
        }
        if bad2(b[s + 1]) {
            return Err(err(s, s + 1, "invalid continuation byte"));
        }
        if !cont(b[s + 2]) {
            return Err(err(s, s + 2, "invalid continuation byte"));
        }
        if !cont(b[s + 3]) {
            return Err(err(s, s + 3, "invalid continuation byte"));
        }
        out.push(
            (u32::from(ch & 0x07) << 18)
                | (u32::from(b[s + 1] & 0x3f) << 12)
                | (u32::from(b[s + 2] & 0x3f) << 6)
                | u32::from(b[s + 3] & 0x3f),
        );
        s += 4;
    }
    Ok(out)
}

enum Fail {
    /// `StopIteration(at)`: no value starts there ("Expecting value" once it reaches the top).
    Stop(usize),
    /// A `ValueError`'s full text.
    Msg(String),
    Recursion,
}

/// CPython's C scanner (`Modules/_json.c`), index for index.
struct Parser<'a> {
    s: &'a [u32],
    depth: usize,
}

fn is_ws(c: u32) -> bool {
    matches!(c, 0x20 | 0x09 | 0x0a | 0x0d)
}

impl Parser<'_> {
    fn at(&self, i: usize) -> Option<u32> {
        self.s.get(i).copied()
    }

    fn skip_ws(&self, mut i: usize) -> usize {
        while self.at(i).is_some_and(is_ws) {
            i += 1;
        }
        i
    }

    /// `JSONDecodeError(msg, doc, pos)`'s text.
    fn err(&self, msg: &str, pos: usize) -> String {
        let before = &self.s[..pos.min(self.s.len())];
        let line = before.iter().filter(|&&c| c == 0x0a).count() + 1;
        let col = match before.iter().rposition(|&c| c == 0x0a) {
            Some(nl) => pos - nl,
            None => pos + 1,
        };
        format!("{msg}: line {line} column {col} (char {pos})")
    }

    fn fail(&self, msg: &str, pos: usize) -> Fail {
        Fail::Msg(self.err(msg, pos))
    }

    fn matches(&self, i: usize, word: &str) -> bool {
        word.chars()
            .enumerate()
            .all(|(k, c)| self.at(i + k) == Some(u32::from(c)))
    }

    /// `scan_once_unicode`: the value at `i` and the index after it.
    fn value(&mut self, i: usize) -> Result<(Json, usize), Fail> {
        let Some(c) = self.at(i) else {
            return Err(Fail::Stop(i));
        };
        match char::from_u32(c) {
            Some('"') => return self.string(i + 1).map(|(s, e)| (Json::Str(s), e)),
            Some('{') | Some('[') => {
                if self.depth >= MAX_DEPTH {
                    return Err(Fail::Recursion);
                }
                self.depth += 1;
                let r = if c == u32::from('{') {
                    self.object(i + 1)
                } else {
                    self.array(i + 1)
                };
                self.depth -= 1;
                return r;
            }
            Some('n') if self.matches(i, "null") => return Ok((Json::Null, i + 4)),
            Some('t') if self.matches(i, "true") => return Ok((Json::Bool(true), i + 4)),
            Some('f') if self.matches(i, "false") => return Ok((Json::Bool(false), i + 5)),
            Some('N') if self.matches(i, "NaN") => return Ok((Json::Float(f64::NAN), i + 3)),
            Some('I') if self.matches(i, "Infinity") => {
                return Ok((Json::Float(f64::INFINITY), i + 8))
            }
            Some('-') if self.matches(i, "-Infinity") => {
                return Ok((Json::Float(f64::NEG_INFINITY), i + 9))
            }
            _ => {}
        }
        self.number(i)
    }

    fn digit(&self, i: usize) -> bool {
        self.at(i).is_some_and(|c| (0x30..=0x39).contains(&c))
    }

    /// `_match_number_unicode`.
    fn number(&self, start: usize) -> Result<(Json, usize), Fail> {
        let len = self.s.len();
        let mut i = start;
        if self.at(i) == Some(u32::from('-')) {
            i += 1;
            if i >= len {
                return Err(Fail::Stop(start));
            }
        }
        match self.at(i) {
            Some(c) if (0x31..=0x39).contains(&c) => {
                i += 1;
                while self.digit(i) {
                    i += 1;
                }
            }
            Some(0x30) => i += 1,
            _ => return Err(Fail::Stop(start)),
        }
        let mut is_float = false;
        if i + 1 < len && self.at(i) == Some(u32::from('.')) && self.digit(i + 1) {
            is_float = true;
            i += 2;
            while self.digit(i) {
                i += 1;
            }
        }
        if i + 1 < len && matches!(self.at(i), Some(0x65) | Some(0x45)) {
            let e_start = i;
            i += 1;
            if i + 1 < len && matches!(self.at(i), Some(0x2d) | Some(0x2b)) {
                i += 1;
            }
            while self.digit(i) {
                i += 1;
            }
            if self.digit(i - 1) {
                is_float = true;
            } else {
                i = e_start;
            }
        }
        let text: String = self.s[start..i].iter().map(|&c| c as u8 as char).collect();
        if is_float {
            return Ok((Json::Float(text.parse().unwrap_or(f64::NAN)), i));
        }
        let digits = text.trim_start_matches('-');
        if digits.len() > 4300 {
            return Err(Fail::Msg(format!(
                "Exceeds the limit (4300 digits) for integer string conversion: value has {} \
                 digits; use sys.set_int_max_str_digits() to increase the limit",
                digits.len()
            )));
        }
        let canonical = if digits == "0" { digits } else { &text };
        Ok((Json::Int(canonical.to_string()), i))
    }

    fn hex4(&self, from: usize) -> Option<u32> {
        let mut v = 0;
        for k in 0..4 {
            let d = char::from_u32(self.at(from + k)?)?.to_digit(16)?;
            v = (v << 4) | d;
        }
        Some(v)
    }

    /// `scanstring_unicode` (strict): the string whose body starts at `begin` (after the
    /// quote), and the index after its closing quote.
    fn string(&self, begin: usize) -> Result<(PyStr, usize), Fail> {
        let quote_at = begin - 1;
        let len = self.s.len();
        let mut out = Vec::new();
        let mut end = begin;
        loop {
            let mut next = end;
            let mut c = 0;
            while next < len {
                c = self.s[next];
                if c == 0x22 || c == 0x5c {
                    break;
                }
                if c <= 0x1f {
                    return Err(self.fail("Invalid control character at", next));
                }
                next += 1;
            }
            if next >= len || !(c == 0x22 || c == 0x5c) {
                return Err(self.fail("Unterminated string starting at", quote_at));
            }
            out.extend_from_slice(&self.s[end..next]);
            next += 1;
            if c == 0x22 {
                return Ok((PyStr(out), next));
            }
            if next == len {
                return Err(self.fail("Unterminated string starting at", quote_at));
            }
            let e = self.s[next];
            if e != u32::from('u') {
                end = next + 1;
                let decoded = match char::from_u32(e) {
                    Some('"') => 0x22,
                    Some('\\') => 0x5c,
                    Some('/') => 0x2f,
                    Some('b') => 0x08,
                    Some('f') => 0x0c,
                    Some('n') => 0x0a,
                    Some('r') => 0x0d,
                    Some('t') => 0x09,
                    _ => return Err(self.fail("Invalid \\escape", end - 2)),
                };
                out.push(decoded);
                continue;
            }
            next += 1;
            end = next + 4;
            if end >= len {
                return Err(self.fail("Invalid \\uXXXX escape", next - 1));
            }
            let Some(mut ch) = self.hex4(next) else {
                return Err(self.fail("Invalid \\uXXXX escape", end - 5));
            };
            if (0xd800..0xdc00).contains(&ch)
                && end + 6 < len
                && self.s[end] == 0x5c
                && self.s[end + 1] == u32::from('u')
            {
                let Some(c2) = self.hex4(end + 2) else {
                    return Err(self.fail("Invalid \\uXXXX escape", end + 6 - 5));
                };
                if (0xdc00..0xe000).contains(&c2) {
                    ch = 0x10000 + ((ch - 0xd800) << 10) + (c2 - 0xdc00);
                    end += 6;
                }
            }
            out.push(ch);
        }
    }

    /// `_parse_object_unicode` with the mock's `no_duplicate_keys` hook (called when the
    /// object closes).
    fn object(&mut self, mut i: usize) -> Result<(Json, usize), Fail> {
        let mut pairs: Vec<(PyStr, Json)> = Vec::new();
        i = self.skip_ws(i);
        if self.at(i) != Some(u32::from('}')) {
            loop {
                if self.at(i) != Some(0x22) {
                    return Err(self.fail("Expecting property name enclosed in double quotes", i));
                }
                let (key, next) = self.string(i + 1)?;
                i = self.skip_ws(next);
                if self.at(i) != Some(u32::from(':')) {
                    return Err(self.fail("Expecting ':' delimiter", i));
                }
                i = self.skip_ws(i + 1);
                let (value, next) = self.value(i)?;
                pairs.push((key, value));
                i = self.skip_ws(next);
                if self.at(i) == Some(u32::from('}')) {
                    break;
                }
                if self.at(i) != Some(u32::from(',')) {
                    return Err(self.fail("Expecting ',' delimiter", i));
                }
                i = self.skip_ws(i + 1);
            }
        }
        for (n, (k, _)) in pairs.iter().enumerate() {
            if pairs[..n].iter().any(|(k0, _)| k0 == k) {
                return Err(Fail::Msg(format!(
                    "duplicate key {}",
                    repr(k.0.iter().copied())
                )));
            }
        }
        Ok((Json::Object(pairs), i + 1))
    }

    /// `_parse_array_unicode`.
    fn array(&mut self, mut i: usize) -> Result<(Json, usize), Fail> {
        let mut items = Vec::new();
        i = self.skip_ws(i);
        if self.at(i) != Some(u32::from(']')) {
            loop {
                let (value, next) = self.value(i)?;
                items.push(value);
                i = self.skip_ws(next);
                if self.at(i) == Some(u32::from(']')) {
                    break;
                }
                if self.at(i) != Some(u32::from(',')) {
                    return Err(self.fail("Expecting ',' delimiter", i));
                }
                i = self.skip_ws(i + 1);
            }
        }
        Ok((Json::Array(items), i + 1))
    }
}

// ---------------------------------------------------------------------------------------------
// base64.b64decode(s, validate=True) and b64encode

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_value(c: u8) -> Option<u8> {
    B64.iter().position(|&x| x == c).map(|i| i as u8)
}

/// `binascii.a2b_base64(s, strict_mode=True)`: the bytes, or the `binascii.Error` text.
pub(crate) fn b64decode_strict(s: &[u8]) -> Result<Vec<u8>, String> {
    if s.first() == Some(&b'=') {
        return Err("Leading padding not allowed".into());
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut quad_pos = 0;
    let mut left: u8 = 0;
    let mut pads = 0;
    let mut padding_started = false;
    for (i, &c) in s.iter().enumerate() {
        if c == b'=' {
            padding_started = true;
            if quad_pos >= 2 {
                pads += 1;
                if quad_pos + pads >= 4 {
                    if i + 1 < s.len() {
                        return Err("Excess data after padding".into());
                    }
                    return Ok(out);
                }
            }
            continue;
        }
        let Some(v) = b64_value(c) else {
            return Err("Only base64 data is allowed".into());
        };
        if padding_started {
            return Err("Discontinuous padding not allowed".into());
        }
        pads = 0;
        match quad_pos {
            0 => {
                quad_pos = 1;
                left = v;
            }
            1 => {
                quad_pos = 2;
                out.push((left << 2) | (v >> 4));
                left = v & 0x0f;
            }
            2 => {
                quad_pos = 3;
                out.push((left << 4) | (v >> 2));
                left = v & 0x03;
            }
            _ => {
                quad_pos = 0;
                out.push((left << 6) | v);
                left = 0;
            }
        }
    }
    match quad_pos {
        0 => Ok(out),
        1 => Err(format!(
            "Invalid base64-encoded string: number of data characters ({}) cannot be 1 more \
             than a multiple of 4",
            out.len() / 3 * 4 + 1
        )),
        _ => Err("Incorrect padding".into()),
    }
}

/// `base64.b64encode`.
pub(crate) fn b64encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// urllib.parse

/// `urllib.parse.unquote(s)` (UTF-8, errors "replace"): percent escapes in each ASCII run are
/// decoded; other characters pass as they are.
pub(crate) fn unquote(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let ascii_len = rest.find(|c: char| !c.is_ascii()).unwrap_or(rest.len());
        if ascii_len == 0 {
            let other_len = rest.find(|c: char| c.is_ascii()).unwrap_or(rest.len());
            out.push_str(&rest[..other_len]);
            rest = &rest[other_len..];
            continue;
        }
        let run = &rest.as_bytes()[..ascii_len];
        let mut bytes = Vec::with_capacity(run.len());
        let mut i = 0;
        while i < run.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if run[i] == b'%' {
                if let (Some(h), Some(l)) = (
                    run.get(i + 1).and_then(|&b| hex(b)),
                    run.get(i + 2).and_then(|&b| hex(b)),
                ) {
                    bytes.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            bytes.push(run[i]);
            i += 1;
        }
        out.push_str(&String::from_utf8_lossy(&bytes));
        rest = &rest[ascii_len..];
    }
    out
}

/// `urllib.parse.parse_qsl(qs, keep_blank_values=True, strict_parsing=True)`: the pairs, or
/// the `ValueError` text.
pub(crate) fn parse_qsl_strict(qs: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    if qs.is_empty() {
        return Ok(pairs);
    }
    for field in qs.split('&') {
        let Some((name, value)) = field.split_once('=') else {
            return Err(format!("bad query field: {}", repr_str(field)));
        };
        pairs.push((
            unquote(&name.replace('+', " ")),
            unquote(&value.replace('+', " ")),
        ));
    }
    Ok(pairs)
}
