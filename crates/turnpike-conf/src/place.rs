//! Places in the document.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// The place of a dotted path (`limits.tools.search.burst`) in the document: the deepest key
/// of it that is there.
pub fn span_of_path(root: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let segs: Vec<&str> = path.split('.').collect();
    let mut table = root;
    let mut found = None;
    let mut i = 0;
    while i < segs.len() {
        // A key may itself hold dots (a tool or method name): the longest match first.
        let hit = (i + 1..=segs.len())
            .rev()
            .find_map(|j| table.get(segs[i..j].join(".").as_str()).map(|v| (j, v)));
        let Some((j, v)) = hit else { break };
        found = Some(v.span());
        i = j;
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

/// A key as it is written in a table header.
pub fn quote_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_owned()
    } else {
        format!("{k:?}")
    }
}
