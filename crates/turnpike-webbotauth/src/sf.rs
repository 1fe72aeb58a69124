//! RFC 8941 structured field values: the subset HTTP Message Signatures needs (items, inner
//! lists with parameters, dictionaries; integers, decimals, strings, tokens, byte sequences,
//! booleans), parsed strictly and within fixed bounds, and serialized back (RFC 8941 §4.1).
//!
//! Every parse error names what was wrong and the byte offset where; no input panics.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// The longest field value parsed, in bytes.
pub const MAX_FIELD_LEN: usize = 8 * 1024;
/// The most members a dictionary may have.
pub const MAX_MEMBERS: usize = 32;
/// The most items an inner list may have.
pub const MAX_INNER_ITEMS: usize = 64;
/// The most parameters one item or inner list may have.
pub const MAX_PARAMS: usize = 16;
/// The longest key (dictionary or parameter), in bytes.
pub const MAX_KEY_LEN: usize = 64;

/// Standard base64 that accepts byte sequences with or without `=` padding (RFC 8941 §3.3.5).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a structured field value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfError {
    /// The value is longer than [`MAX_FIELD_LEN`].
    #[error("structured field is {0} bytes, more than the {MAX_FIELD_LEN} allowed")]
    TooLong(usize),
    /// A dictionary, inner list or parameter list has more entries than its bound.
    #[error("structured field has more than {0} {1}")]
    TooMany(usize, &'static str),
    /// The value is malformed.
    #[error("malformed structured field at byte {at}: {what}")]
    Malformed {
        /// Byte offset of the fault.
        at: usize,
        /// What was expected or found.
        what: &'static str,
    },
}

/// A bare item (RFC 8941 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem {
    /// An integer, at most 15 digits.
    Integer(i64),
    /// A decimal, held in thousandths (at most 12 integer digits and 3 fraction digits).
    Decimal(i64),
    /// A string of printable ASCII.
    String(String),
    /// A token.
    Token(String),
    /// A byte sequence (decoded).
    ByteSeq(Vec<u8>),
    /// A boolean.
    Boolean(bool),
}

/// Parameters, in order of first appearance; a repeated key keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, BareItem)>);

impl Params {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&BareItem> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Every parameter, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BareItem)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parameters of these pairs, in this order (for a signer building its own).
    pub fn from_pairs(pairs: Vec<(String, BareItem)>) -> Self {
        Params(pairs)
    }

    fn insert(&mut self, key: String, value: BareItem) -> Result<(), SfError> {
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
            return Ok(());
        }
        if self.0.len() >= MAX_PARAMS {
            return Err(SfError::TooMany(MAX_PARAMS, "parameters"));
        }
        self.0.push((key, value));
        Ok(())
    }
}

/// An item with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The value.
    pub bare: BareItem,
    /// Its parameters.
    pub params: Params,
}

/// An inner list with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerList {
    /// The items.
    pub items: Vec<Item>,
    /// The list's parameters.
    pub params: Params,
}

/// A dictionary member's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// A single item.
    Item(Item),
    /// An inner list.
    InnerList(InnerList),
}

/// A dictionary: members in order of first appearance; a repeated key keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dictionary(Vec<(String, Member)>);

impl Dictionary {
    /// The member named `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Member> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Every member, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Member)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parses a dictionary field value (RFC 8941 §4.2.2).
pub fn parse_dictionary(input: &[u8]) -> Result<Dictionary, SfError> {
    let mut p = Parser::new(input)?;
    let mut dict = Dictionary::default();
    p.skip_sp();
    while !p.eof() {
        let key = p.key()?;
        let member = if p.peek() == Some(b'=') {
            p.pos += 1;
            p.item_or_inner_list()?
        } else {
            let params = p.params()?;
            Member::Item(Item {
                bare: BareItem::Boolean(true),
                params,
            })
        };
        if let Some(slot) = dict.0.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = member;
        } else if dict.0.len() >= MAX_MEMBERS {
            return Err(SfError::TooMany(MAX_MEMBERS, "dictionary members"));
        } else {
            dict.0.push((key, member));
        }
        p.skip_ows();
        if p.eof() {
            break;
        }
        p.expect(b',', "expected ',' between dictionary members")?;
        p.skip_ows();
        if p.eof() {
            return Err(p.err("trailing ',' in dictionary"));
        }
    }
    Ok(dict)
}

/// Parses an item field value (RFC 8941 §4.2, item).
pub fn parse_item(input: &[u8]) -> Result<Item, SfError> {
    let mut p = Parser::new(input)?;
    p.skip_sp();
    let item = p.item()?;
    p.skip_sp();
    if !p.eof() {
        return Err(p.err("unexpected bytes after the item"));
    }
    Ok(item)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Result<Self, SfError> {
        if input.len() > MAX_FIELD_LEN {
            return Err(SfError::TooLong(input.len()));
        }
        Ok(Self { input, pos: 0 })
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn eof(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn err(&self, what: &'static str) -> SfError {
        SfError::Malformed { at: self.pos, what }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), SfError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn item_or_inner_list(&mut self) -> Result<Member, SfError> {
        if self.peek() == Some(b'(') {
            self.inner_list().map(Member::InnerList)
        } else {
            self.item().map(Member::Item)
        }
    }

    fn inner_list(&mut self) -> Result<InnerList, SfError> {
        self.expect(b'(', "expected '('")?;
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            match self.peek() {
                None => return Err(self.err("inner list not closed")),
                Some(b')') => {
                    self.pos += 1;
                    let params = self.params()?;
                    return Ok(InnerList { items, params });
                }
                Some(_) => {
                    if items.len() >= MAX_INNER_ITEMS {
                        return Err(SfError::TooMany(MAX_INNER_ITEMS, "inner list items"));
                    }
                    items.push(self.item()?);
                    if !matches!(self.peek(), Some(b' ' | b')')) {
                        return Err(self.err("expected ' ' or ')' after an inner list item"));
                    }
                }
            }
        }
    }

    fn item(&mut self) -> Result<Item, SfError> {
        let bare = self.bare_item()?;
        let params = self.params()?;
        Ok(Item { bare, params })
    }

    fn params(&mut self) -> Result<Params, SfError> {
        let mut params = Params::default();
        while self.peek() == Some(b';') {
            self.pos += 1;
            self.skip_sp();
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            params.insert(key, value)?;
        }
        Ok(params)
    }

    fn key(&mut self) -> Result<String, SfError> {
        let start = self.pos;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.pos += 1,
            _ => return Err(self.err("a key starts with a lowercase letter or '*'")),
        }
        while let Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*') = self.peek() {
            self.pos += 1;
            if self.pos - start > MAX_KEY_LEN {
                return Err(self.err("key too long"));
            }
        }
        Ok(ascii(&self.input[start..self.pos]))
    }

    fn bare_item(&mut self) -> Result<BareItem, SfError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b'*' | b'A'..=b'Z' | b'a'..=b'z') => Ok(self.token()),
            Some(b':') => self.byte_seq(),
            Some(b'?') => self.boolean(),
            None => Err(self.err("expected an item, found the end")),
            Some(_) => Err(self.err("not the start of an item")),
        }
    }

    fn number(&mut self) -> Result<BareItem, SfError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let mut int: i64 = 0;
        let mut int_digits = 0usize;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            int_digits += 1;
            if int_digits > 15 {
                return Err(self.err("integer longer than 15 digits"));
            }
            int = int * 10 + i64::from(d - b'0');
            self.pos += 1;
        }
        if int_digits == 0 {
            return Err(self.err("expected a digit"));
        }
        let sign = if negative { -1 } else { 1 };
        if self.peek() != Some(b'.') {
            return Ok(BareItem::Integer(sign * int));
        }
        if int_digits > 12 {
            return Err(self.err("decimal with more than 12 integer digits"));
        }
        self.pos += 1;
        let mut frac: i64 = 0;
        let mut frac_digits = 0u32;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            frac_digits += 1;
            if frac_digits > 3 {
                return Err(self.err("decimal with more than 3 fraction digits"));
            }
            frac = frac * 10 + i64::from(d - b'0');
            self.pos += 1;
        }
        if frac_digits == 0 {
            return Err(self.err("decimal ends with '.'"));
        }
        let thousandths = int * 1000 + frac * 10i64.pow(3 - frac_digits);
        Ok(BareItem::Decimal(sign * thousandths))
    }

    fn string(&mut self) -> Result<BareItem, SfError> {
        self.expect(b'"', "expected '\"'")?;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("string not closed")),
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(char::from(c));
                            self.pos += 1;
                        }
                        _ => return Err(self.err("only '\\\"' and '\\\\' may be escaped")),
                    }
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(BareItem::String(out));
                }
                Some(c @ 0x20..=0x7e) => {
                    out.push(char::from(c));
                    self.pos += 1;
                }
                Some(_) => return Err(self.err("string byte outside printable ASCII")),
            }
        }
    }

    fn token(&mut self) -> BareItem {
        let start = self.pos;
        self.pos += 1;
        while let Some(c) = self.peek() {
            if is_tchar(c) || c == b':' || c == b'/' {
                self.pos += 1;
            } else {
                break;
            }
        }
        BareItem::Token(ascii(&self.input[start..self.pos]))
    }

    fn byte_seq(&mut self) -> Result<BareItem, SfError> {
        self.expect(b':', "expected ':'")?;
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.err("byte sequence not closed")),
                Some(b':') => break,
                Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=') => {
                    self.pos += 1;
                }
                Some(_) => return Err(self.err("byte outside base64 in a byte sequence")),
            }
        }
        let encoded = &self.input[start..self.pos];
        let decoded = B64.decode(encoded).map_err(|_| SfError::Malformed {
            at: start,
            what: "byte sequence is not valid base64",
        })?;
        self.pos += 1;
        Ok(BareItem::ByteSeq(decoded))
    }

    fn boolean(&mut self) -> Result<BareItem, SfError> {
        self.expect(b'?', "expected '?'")?;
        let value = match self.peek() {
            Some(b'0') => false,
            Some(b'1') => true,
            _ => return Err(self.err("a boolean is ?0 or ?1")),
        };
        self.pos += 1;
        Ok(BareItem::Boolean(value))
    }
}

/// RFC 9110 tchar.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Bytes the parser has already checked are ASCII.
fn ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Serializes a bare item (RFC 8941 §4.1.3).
pub fn serialize_bare(out: &mut String, item: &BareItem) {
    match item {
        BareItem::Integer(i) => out.push_str(&i.to_string()),
        BareItem::Decimal(t) => {
            if *t < 0 {
                out.push('-');
            }
            let abs = t.unsigned_abs();
            out.push_str(&(abs / 1000).to_string());
            out.push('.');
            let frac = format!("{:03}", abs % 1000);
            let trimmed = frac.trim_end_matches('0');
            out.push_str(if trimmed.is_empty() { "0" } else { trimmed });
        }
        BareItem::String(s) => {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        BareItem::Token(t) => out.push_str(t),
        BareItem::ByteSeq(b) => {
            out.push(':');
            out.push_str(&B64.encode(b));
            out.push(':');
        }
        BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
}

/// Serializes parameters (RFC 8941 §4.1.1.2): `;key` for true, `;key=value` otherwise.
pub fn serialize_params(out: &mut String, params: &Params) {
    for (key, value) in params.iter() {
        out.push(';');
        out.push_str(key);
        if *value != BareItem::Boolean(true) {
            out.push('=');
            serialize_bare(out, value);
        }
    }
}

/// Serializes an item with its parameters.
pub fn serialize_item(out: &mut String, item: &Item) {
    serialize_bare(out, &item.bare);
    serialize_params(out, &item.params);
}

/// Serializes an inner list with its parameters (RFC 8941 §4.1.1.1).
pub fn serialize_inner_list(out: &mut String, list: &InnerList) {
    out.push('(');
    for (i, item) in list.items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        serialize_item(out, item);
    }
    out.push(')');
    serialize_params(out, &list.params);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_input_round_trips() {
        let text = r#"sig1=("@method" "@authority" "content-digest";sf);created=1618884473;keyid="k";alg="ed25519";x;y=?0;d=-1.50"#;
        let dict = parse_dictionary(text.as_bytes()).unwrap();
        let Some(Member::InnerList(list)) = dict.get("sig1") else {
            panic!("not an inner list")
        };
        assert_eq!(list.items.len(), 3);
        assert_eq!(
            list.params.get("created"),
            Some(&BareItem::Integer(1618884473))
        );
        assert_eq!(list.params.get("d"), Some(&BareItem::Decimal(-1500)));
        let mut out = String::new();
        serialize_inner_list(&mut out, list);
        assert_eq!(
            out,
            r#"("@method" "@authority" "content-digest";sf);created=1618884473;keyid="k";alg="ed25519";x;y=?0;d=-1.5"#
        );
    }

    #[test]
    fn byte_sequences_decode_with_or_without_padding() {
        let dict = parse_dictionary(b"a=:aGk=:, b=:aGk:").unwrap();
        for key in ["a", "b"] {
            let Some(Member::Item(item)) = dict.get(key) else {
                panic!("missing")
            };
            assert_eq!(item.bare, BareItem::ByteSeq(b"hi".to_vec()));
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            &b"a=1,"[..],
            b"A=1",
            b"a=(1 2",
            b"a=\"x",
            b"a=\"\\n\"",
            b"a=:!!:",
            b"a=?2",
            b"a=1234567890123456",
            b"a=1.2345",
            b"a=1.",
            b"a=(1,2)",
            b"a=1 b=2",
            b"a=\"\x7f\"",
        ] {
            assert!(
                parse_dictionary(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bounds_hold() {
        let many: Vec<String> = (0..=MAX_MEMBERS).map(|i| format!("k{i}=1")).collect();
        assert_eq!(
            parse_dictionary(many.join(",").as_bytes()),
            Err(SfError::TooMany(MAX_MEMBERS, "dictionary members"))
        );
        let long = vec![b'a'; MAX_FIELD_LEN + 1];
        assert_eq!(
            parse_dictionary(&long),
            Err(SfError::TooLong(MAX_FIELD_LEN + 1))
        );
        let items = vec!["1"; MAX_INNER_ITEMS + 1].join(" ");
        assert!(matches!(
            parse_dictionary(format!("a=({items})").as_bytes()),
            Err(SfError::TooMany(..))
        ));
    }

    #[test]
    fn repeated_keys_keep_the_last_value_in_first_place() {
        let dict = parse_dictionary(b"a=1, b=2, a=3").unwrap();
        let keys: Vec<&str> = dict.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(matches!(
            dict.get("a"),
            Some(Member::Item(Item {
                bare: BareItem::Integer(3),
                ..
            }))
        ));
    }

    #[test]
    fn items_parse() {
        assert_eq!(
            parse_item(b" \"https://agent.example/\" ").unwrap().bare,
            BareItem::String("https://agent.example/".into())
        );
        assert!(parse_item(b"\"a\" x").is_err());
    }
}
