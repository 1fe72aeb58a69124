//! Server-Sent Events framing (the `text/event-stream` format of the HTML standard), as MCP's
//! Streamable HTTP uses it.
//!
//! [`SseParser`] is incremental: feed it bytes as they arrive with [`SseParser::push`] and take
//! complete events with [`SseParser::next_event`]. Lines end in `\n`, `\r\n` or a lone `\r`
//! (also when a `\r\n` pair is split across two chunks); an event ends at a blank line. Each
//! event keeps its exact bytes ([`SseEvent::raw`]), so a proxy that modifies one event can pass
//! every other event on byte for byte; [`write_event`] writes a (modified) event from its
//! fields.
//!
//! Field rules: a line starting with `:` is a comment; otherwise the field name runs to the first
//! `:` and one space after it is dropped from the value. `data` lines are joined with `\n`;
//! `id` values containing NUL are ignored; `retry` must be all ASCII digits; unknown fields are
//! ignored. A UTF-8 byte-order mark at the start of the stream is skipped.

/// One event: its exact bytes and its parsed fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The event's bytes as received, up to and including the blank line that ends it.
    pub raw: Vec<u8>,
    /// The `event` field (the event type), when present.
    pub event: Option<String>,
    /// The `data` lines joined with `\n`; `None` when the event has no `data` line.
    pub data: Option<String>,
    /// The `id` field, when present.
    pub id: Option<String>,
    /// The `retry` field (milliseconds), when present and valid.
    pub retry: Option<u64>,
    /// Comment lines (without the leading `:`).
    pub comments: Vec<String>,
}

/// An incremental SSE parser.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current (unfinished) event, from its first byte.
    buf: Vec<u8>,
    /// Where the next unparsed line starts in `buf`.
    line_start: usize,
    /// Fields parsed so far for the current event.
    cur: SseEvent,
    /// Whether the next line is the first of the stream (for the byte-order mark).
    at_stream_start: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        SseParser {
            at_stream_start: true,
            ..Default::default()
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// How many bytes are held for the event not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete event, if the bytes pushed so far finish one.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let rest = self.buf.get(self.line_start..)?;
            let i = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
            let term = match rest.get(i) {
                Some(b'\n') => 1,
                _ => match rest.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A `\r` at the end of what arrived: a `\n` may follow in the next chunk.
                    None => return None,
                },
            };
            let line_end = self.line_start + i;
            let next = line_end + term;
            let mut line = self.buf.get(self.line_start..line_end).unwrap_or_default();
            if self.at_stream_start {
                self.at_stream_start = false;
                line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
            }
            if line.is_empty() {
                let mut ev = std::mem::take(&mut self.cur);
                let tail = self.buf.split_off(next);
                ev.raw = std::mem::replace(&mut self.buf, tail);
                self.line_start = 0;
                return Some(ev);
            }
            let line = String::from_utf8_lossy(line).into_owned();
            self.field(&line);
            self.line_start = next;
        }
    }

    /// Ends the stream: returns the bytes of an unfinished event (which SSE clients discard),
    /// for a proxy to pass on as they are.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    fn field(&mut self, line: &str) {
        if let Some(comment) = line.strip_prefix(':') {
            self.cur.comments.push(comment.to_owned());
            return;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match name {
            "event" => self.cur.event = Some(value.to_owned()),
            "data" => match &mut self.cur.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.cur.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.cur.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.cur.retry = value.parse().ok();
            }
            _ => {}
        }
    }
}

/// Writes `ev` from its fields (not from `raw`): comments, `event`, `id`, `retry`, then one
/// `data` line per line of the data, then the blank line. Line breaks inside `event`, `id` and
/// comments are removed so they cannot split the event.
pub fn write_event(out: &mut Vec<u8>, ev: &SseEvent) {
    let clean = |s: &str| s.replace(['\r', '\n'], "");
    for c in &ev.comments {
        out.push(b':');
        out.extend_from_slice(clean(c).as_bytes());
        out.push(b'\n');
    }
    if let Some(e) = &ev.event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(clean(e).as_bytes());
        out.push(b'\n');
    }
    if let Some(id) = &ev.id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(clean(id).as_bytes());
        out.push(b'\n');
    }
    if let Some(r) = ev.retry {
        out.extend_from_slice(format!("retry: {r}\n").as_bytes());
    }
    if let Some(data) = &ev.data {
        let normalized = data.replace("\r\n", "\n").replace('\r', "\n");
        for line in normalized.split('\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut SseParser) -> Vec<SseEvent> {
        std::iter::from_fn(|| p.next_event()).collect()
    }

    #[test]
    fn basic_fields() {
        let mut p = SseParser::new();
        p.push(b"event: message\nid: 7\nretry: 3000\ndata: {\"a\":1}\n\n: keep-alive\n\n");
        let evs = all(&mut p);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event.as_deref(), Some("message"));
        assert_eq!(evs[0].id.as_deref(), Some("7"));
        assert_eq!(evs[0].retry, Some(3000));
        assert_eq!(evs[0].data.as_deref(), Some("{\"a\":1}"));
        assert_eq!(
            evs[0].raw,
            b"event: message\nid: 7\nretry: 3000\ndata: {\"a\":1}\n\n".to_vec()
        );
        assert_eq!(evs[1].data, None);
        assert_eq!(evs[1].comments, vec![" keep-alive".to_string()]);
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn line_endings_and_multiline_data() {
        let mut p = SseParser::new();
        p.push(b"data: a\r\ndata:b\rdata\r\n\r\ndata:  two spaces\n\n");
        let evs = all(&mut p);
        assert_eq!(evs[0].data.as_deref(), Some("a\nb\n"));
        assert_eq!(evs[0].raw, b"data: a\r\ndata:b\rdata\r\n\r\n".to_vec());
        assert_eq!(evs[1].data.as_deref(), Some(" two spaces"));
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let stream: &[u8] =
            b"\xEF\xBB\xBFid: 1\r\ndata: x\r\n\r\n:c\r\rdata: y\r\n\r\nevent: e\ndata: {}\n\ndata: tail";
        let mut whole = SseParser::new();
        whole.push(stream);
        let a = all(&mut whole);
        let mut bytewise = SseParser::new();
        let mut b = Vec::new();
        for byte in stream {
            bytewise.push(&[*byte]);
            b.extend(all(&mut bytewise));
        }
        assert_eq!(a, b);
        assert_eq!(a.len(), 4);
        assert_eq!(
            a[0].id.as_deref(),
            Some("1"),
            "the byte-order mark is skipped"
        );
        assert_eq!(a[1].comments, vec!["c".to_string()]);
        assert_eq!(
            a[1].data, None,
            "a lone CR ends the comment line and the event"
        );
        assert_eq!(a[2].data.as_deref(), Some("y"));
        // Raw bytes concatenate back to the stream, with the unfinished tail left over.
        let mut joined: Vec<u8> = a.iter().flat_map(|e| e.raw.clone()).collect();
        assert_eq!(bytewise.finish(), b"data: tail".to_vec());
        joined.extend_from_slice(b"data: tail");
        assert_eq!(joined, stream);
    }

    #[test]
    fn split_crlf_does_not_make_a_blank_line() {
        let mut p = SseParser::new();
        p.push(b"data: a\r");
        assert!(p.next_event().is_none());
        p.push(b"\ndata: b\r\n");
        assert!(
            p.next_event().is_none(),
            "CR LF split across chunks is one line end"
        );
        p.push(b"\r\n");
        assert_eq!(p.next_event().unwrap().data.as_deref(), Some("a\nb"));
    }

    #[test]
    fn odd_fields() {
        let mut p = SseParser::new();
        p.push(b"retry: 12x\nid: a\0b\nfoo: bar\ndata\n\n");
        let e = p.next_event().unwrap();
        assert_eq!(e.retry, None);
        assert_eq!(e.id, None);
        assert_eq!(e.data.as_deref(), Some(""));
    }

    #[test]
    fn write_round_trips() {
        let ev = SseEvent {
            raw: Vec::new(),
            event: Some("message".into()),
            data: Some("line1\nline2\r\nline3".into()),
            id: Some("9\n".into()),
            retry: Some(5),
            comments: vec!["hi".into()],
        };
        let mut out = Vec::new();
        write_event(&mut out, &ev);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            ":hi\nevent: message\nid: 9\nretry: 5\ndata: line1\ndata: line2\ndata: line3\n\n"
        );
        let mut p = SseParser::new();
        p.push(&out);
        let back = p.next_event().unwrap();
        assert_eq!(back.data.as_deref(), Some("line1\nline2\nline3"));
        assert_eq!(back.id.as_deref(), Some("9"));
        assert_eq!(back.raw, out);
    }
}
