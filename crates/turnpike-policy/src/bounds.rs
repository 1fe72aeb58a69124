//! What a rule may be, checked on its text before CEL parses it: its length, how deeply its
//! brackets nest, no comprehension inside another, and which parts of the call it reads.

/// The longest expression accepted, in bytes.
pub const MAX_EXPR_BYTES: usize = 4096;

/// The deepest nesting of `(`, `[` and `{` accepted.
pub const MAX_NESTING: usize = 32;

/// The comprehension macros: each walks a list or map once.
const COMPREHENSIONS: &[&str] = &["all", "exists", "exists_one", "map", "filter"];

/// A problem with a rule's text, at a byte offset of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextProblem {
    /// Byte offset in the expression.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// What the text of a rule reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    /// It names `arguments` (outside string literals).
    pub arguments: bool,
    /// It names `annotations`.
    pub annotations: bool,
    /// It reads `call.tool`, or `call` otherwise than by one of its fields (then it may read
    /// anything of it).
    pub tool: bool,
}

/// Checks `src` against the bounds; what it reads, or the first problem.
pub fn check(src: &str) -> Result<Reads, TextProblem> {
    if src.len() > MAX_EXPR_BYTES {
        return Err(TextProblem {
            offset: 0,
            message: format!(
                "the expression is {} bytes long; at most {MAX_EXPR_BYTES} are accepted",
                src.len()
            ),
        });
    }
    let b = src.as_bytes();
    let mut reads = Reads::default();
    // Open brackets: whether each opened a comprehension macro's arguments.
    let mut open: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' => i = skip_string(b, i),
            b'(' | b'[' | b'{' => {
                let comprehension = c == b'(' && ends_comprehension(b, i);
                if comprehension && open.iter().any(|&c| c) {
                    return Err(TextProblem {
                        offset: i,
                        message: "a comprehension (all, exists, exists_one, map, filter) inside another is not accepted".into(),
                    });
                }
                open.push(comprehension);
                if open.len() > MAX_NESTING {
                    return Err(TextProblem {
                        offset: i,
                        message: format!("brackets nest deeper than {MAX_NESTING} levels"),
                    });
                }
                i += 1;
            }
            b')' | b']' | b'}' => {
                open.pop();
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                match &src[start..i] {
                    "arguments" => reads.arguments = true,
                    "annotations" => reads.annotations = true,
                    "call" => match field_after(b, i) {
                        Some("method") => {}
                        Some("arguments") => reads.arguments = true,
                        Some("annotations") => reads.annotations = true,
                        _ => {
                            // `call.tool`, or `call` as a whole (any part of it).
                            reads.tool = true;
                            if field_after(b, i) != Some("tool") {
                                reads.arguments = true;
                                reads.annotations = true;
                            }
                        }
                    },
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
    Ok(reads)
}

/// The field named right after byte `at` (`.name`, spaces allowed around the dot), if any.
fn field_after(b: &[u8], at: usize) -> Option<&str> {
    let mut i = at;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    if b.get(i) != Some(&b'.') {
        return None;
    }
    i += 1;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    std::str::from_utf8(&b[start..i])
        .ok()
        .filter(|n| !n.is_empty())
}

/// Whether the `(` at `at` opens a comprehension macro's arguments (`.all(`, `.map(`, …).
fn ends_comprehension(b: &[u8], at: usize) -> bool {
    let mut start = at;
    while start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
        start -= 1;
    }
    let name = std::str::from_utf8(&b[start..at]).unwrap_or("");
    let mut dot = start;
    while dot > 0 && b[dot - 1].is_ascii_whitespace() {
        dot -= 1;
    }
    dot > 0 && b[dot - 1] == b'.' && COMPREHENSIONS.contains(&name)
}

/// The index just past the string literal starting at `at` (a quote; triple quotes too).
fn skip_string(b: &[u8], at: usize) -> usize {
    let q = b[at];
    let triple = b.len() >= at + 3 && b[at + 1] == q && b[at + 2] == q;
    let mut i = if triple { at + 3 } else { at + 1 };
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if !triple {
                return i + 1;
            }
            if b.len() >= i + 3 && b[i + 1] == q && b[i + 2] == q {
                return i + 3;
            }
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(check("identity.kind == 'oauth'").is_ok());
        let long = "a".repeat(MAX_EXPR_BYTES + 1);
        assert!(check(&long).unwrap_err().message.contains("4096"));
        let deep = format!(
            "{}1{}",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        assert_eq!(check(&deep).unwrap_err().offset, MAX_NESTING);
        let ok = format!("{}1{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(check(&ok).is_ok());
        assert!(check("[1,2].all(x, x > 0) && [3].exists(y, y == 3)").is_ok());
        let nested = check("[1,2].all(x, [x].exists(y, y == x))").unwrap_err();
        assert_eq!(nested.offset, 23);
        assert!(
            check("'((((' == \"[[[\"").is_ok(),
            "brackets in strings do not count"
        );
    }

    #[test]
    fn reads() {
        assert_eq!(
            check("call.arguments.path.startsWith('/tmp')").unwrap(),
            Reads {
                arguments: true,
                annotations: false,
                tool: false,
            }
        );
        assert_eq!(
            check("identity.kind == 'x' && call.method == 'tools/call'").unwrap(),
            Reads::default()
        );
        assert!(check("call . tool == 'x'").unwrap().tool);
        let whole = check("size(call) == 4").unwrap();
        assert!(whole.tool && whole.arguments && whole.annotations);
        assert!(check("[call].all(c, c.tool == 'x')").unwrap().tool);
        assert!(!check("call.tool == 'arguments'").unwrap().arguments);
        assert!(check("call.annotations.readOnlyHint").unwrap().annotations);
    }
}
