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

/// The largest SSE event the gateway parses on a priced path (the event that settles a paid
/// call, the `tools/list` answer it annotates): 64 MiB, the same bound as a JSON body it reads
/// whole. A larger event is refused with a JSON-RPC error (-31413) and a paid call refunded.
pub const MAX_PRICED_EVENT: usize = 64 * 1024 * 1024;

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
///
/// Parsing is linear in the bytes pushed, however they are chunked: the scan for the end of a
/// line resumes where the previous one stopped, and the bytes of finished events are dropped
/// from the front of the buffer only when they are at least half of it (so each byte is moved
/// at most a bounded number of times).
#[derive(Debug)]
pub struct SseParser {
    /// Received bytes not yet dropped: the current (unfinished) event from `event_start` on.
    buf: Vec<u8>,
    /// Where the current event starts in `buf` (the bytes before it belong to finished events).
    event_start: usize,
    /// Where the next unparsed line starts in `buf`.
    line_start: usize,
    /// How far the current line has been searched for its end (`line_start..scanned` holds no
    /// line break).
    scanned: usize,
    /// Fields parsed so far for the current event.
    cur: SseEvent,
    /// Whether the next line is the first of the stream (for the byte-order mark).
    at_stream_start: bool,
    /// The largest event accepted by [`SseParser::try_next_event`], in bytes.
    max_event: usize,
    /// Set once an event went over `max_event`: the parser refuses everything after it.
    too_large: bool,
}

/// An event larger than the parser's limit ([`SseParser::with_max_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event is larger than {limit} bytes")]
pub struct EventTooLarge {
    /// The limit that was exceeded, in bytes.
    pub limit: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser at the start of a stream, with no limit on the size of an event.
    pub fn new() -> Self {
        SseParser {
            buf: Vec::new(),
            event_start: 0,
            line_start: 0,
            scanned: 0,
            cur: SseEvent::default(),
            at_stream_start: true,
            max_event: usize::MAX,
            too_large: false,
        }
    }

    /// A parser at the start of a stream whose [`SseParser::try_next_event`] refuses an event
    /// (finished or not) of more than `max_event` bytes, so that what it holds stays bounded.
    pub fn with_max_event(max_event: usize) -> Self {
        SseParser {
            max_event,
            ..SseParser::new()
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.event_start > 0 && self.event_start >= self.buf.len() / 2 {
            self.buf.drain(..self.event_start);
            self.line_start -= self.event_start;
            self.scanned -= self.event_start;
            self.event_start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// How many bytes are held for the event not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.event_start
    }

    /// The next complete event, if the bytes pushed so far finish one. Ignores the size limit
    /// (see [`SseParser::try_next_event`]).
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let rest = self.buf.get(self.scanned..)?;
            let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.scanned = self.buf.len();
                return None;
            };
            let line_end = self.scanned + i;
            let term = match self.buf.get(line_end) {
                Some(b'\n') => 1,
                _ => match self.buf.get(line_end + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A `\r` at the end of what arrived: a `\n` may follow in the next chunk.
                    None => {
                        self.scanned = line_end;
                        return None;
                    }
                },
            };
            let next = line_end + term;
            let mut line = self.buf.get(self.line_start..line_end).unwrap_or_default();
            if self.at_stream_start {
                self.at_stream_start = false;
                line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
            }
            if line.is_empty() {
                let mut ev = std::mem::take(&mut self.cur);
                ev.raw = self
                    .buf
                    .get(self.event_start..next)
                    .unwrap_or_default()
                    .to_vec();
                self.event_start = next;
                self.line_start = next;
                self.scanned = next;
                return Some(ev);
            }
            let line = String::from_utf8_lossy(line).into_owned();
            self.field(&line);
            self.line_start = next;
            self.scanned = next;
        }
    }

    /// Like [`SseParser::next_event`], but an event of more than the limit given to
    /// [`SseParser::with_max_event`] is an error, as soon as the bytes held for it pass the
    /// limit (before its end arrives); after that error the parser gives only errors.
    pub fn try_next_event(&mut self) -> Result<Option<SseEvent>, EventTooLarge> {
        let err = EventTooLarge {
            limit: self.max_event,
        };
        if self.too_large {
            return Err(err);
        }
        let ev = self.next_event();
        let over = match &ev {
            Some(e) => e.raw.len() > self.max_event,
            None => self.buffered() > self.max_event,
        };
        if over {
            self.too_large = true;
            return Err(err);
        }
        Ok(ev)
    }

    /// Ends the stream: returns the bytes of an unfinished event (which SSE clients discard),
    /// for a proxy to pass on as they are.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.split_off(self.event_start.min(self.buf.len()))
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
    use proptest::prelude::*;

    /// The parser as it was before the scan remembered where it stopped (quadratic on a long
    /// line arriving in many chunks): the reference the current one must agree with.
    #[derive(Default)]
    struct Reference {
        buf: Vec<u8>,
        line_start: usize,
        cur: SseEvent,
        at_stream_start: bool,
    }

    impl Reference {
        fn new() -> Self {
            Reference {
                at_stream_start: true,
                ..Default::default()
            }
        }

        fn push(&mut self, chunk: &[u8]) {
            self.buf.extend_from_slice(chunk);
        }

        fn next_event(&mut self) -> Option<SseEvent> {
            loop {
                let rest = self.buf.get(self.line_start..)?;
                let i = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
                let term = match rest.get(i) {
                    Some(b'\n') => 1,
                    _ => match rest.get(i + 1) {
                        Some(b'\n') => 2,
                        Some(_) => 1,
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
                let mut p = SseParser::new();
                p.cur = std::mem::take(&mut self.cur);
                p.field(&line);
                self.cur = p.cur;
                self.line_start = next;
            }
        }
    }

    /// Pieces SSE streams are made of, including every kind of line break and the byte-order
    /// mark, so random concatenations hit the edge cases.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"data".to_vec()),
            Just(b"data: ".to_vec()),
            Just(b"event:".to_vec()),
            Just(b"id: ".to_vec()),
            Just(b"retry: ".to_vec()),
            Just(b":".to_vec()),
            Just(b"\xEF\xBB\xBF".to_vec()),
            Just(b"\0".to_vec()),
            Just(b"\xFF".to_vec()),
            "[a-z0-9 {}\":]{0,12}".prop_map(String::into_bytes),
        ]
    }

    fn stream_and_cuts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
        proptest::collection::vec(piece(), 0..60).prop_flat_map(|pieces| {
            let stream: Vec<u8> = pieces.concat();
            let n = stream.len();
            (
                Just(stream),
                proptest::collection::vec(0..=n, 0..20).prop_map(|mut c| {
                    c.sort_unstable();
                    c
                }),
            )
        })
    }

    fn chunks<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
            out.push(&stream[at..c]);
            at = c;
        }
        out
    }

    proptest! {
        #[test]
        fn same_events_as_the_reference_on_any_chunking((stream, cuts) in stream_and_cuts()) {
            let mut new = SseParser::new();
            let mut old = Reference::new();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for chunk in chunks(&stream, &cuts) {
                new.push(chunk);
                old.push(chunk);
                a.extend(std::iter::from_fn(|| new.next_event()));
                b.extend(std::iter::from_fn(|| old.next_event()));
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(new.buffered(), old.buf.len());
            }
            prop_assert_eq!(new.finish(), old.buf);
        }

        #[test]
        fn chunking_does_not_change_the_events((stream, cuts) in stream_and_cuts()) {
            let mut whole = SseParser::new();
            whole.push(&stream);
            let a: Vec<SseEvent> = std::iter::from_fn(|| whole.next_event()).collect();
            let mut cut = SseParser::new();
            let mut b = Vec::new();
            for chunk in chunks(&stream, &cuts) {
                cut.push(chunk);
                b.extend(std::iter::from_fn(|| cut.next_event()));
            }
            prop_assert_eq!(a, b);
            prop_assert_eq!(whole.finish(), cut.finish());
        }
    }

    #[test]
    fn limit_refuses_a_long_event_before_it_ends() {
        let mut p = SseParser::with_max_event(32);
        p.push(b"data: small\n\n");
        assert_eq!(
            p.try_next_event().unwrap().unwrap().data.as_deref(),
            Some("small")
        );
        assert_eq!(p.try_next_event(), Ok(None));
        p.push(&[b'x'; 20]);
        assert_eq!(
            p.try_next_event(),
            Ok(None),
            "20 bytes held: within the limit"
        );
        p.push(&[b'x'; 20]);
        assert_eq!(p.try_next_event(), Err(EventTooLarge { limit: 32 }));
        p.push(b"\n\ndata: after\n\n");
        assert!(
            p.try_next_event().is_err(),
            "nothing after the refused event"
        );
        // A complete event over the limit, arriving in one piece, is refused too.
        let mut p = SseParser::with_max_event(8);
        p.push(b"data: 0123456789\n\n");
        assert!(p.try_next_event().is_err());
        // Without a limit the same stream parses.
        let mut p = SseParser::new();
        p.push(b"data: 0123456789\n\n");
        assert_eq!(
            p.try_next_event().unwrap().unwrap().data.as_deref(),
            Some("0123456789")
        );
    }

    #[test]
    fn long_line_in_small_chunks_scans_each_byte_once() {
        // 4 MiB of one data line in 1 KiB chunks: the old parser rescanned the line on every
        // chunk (about 8 GB of comparisons); this must finish at once even in a debug build.
        let mut p = SseParser::new();
        p.push(b"data: ");
        let chunk = [b'a'; 1024];
        let started = std::time::Instant::now();
        for _ in 0..4096 {
            p.push(&chunk);
            assert!(p.next_event().is_none());
        }
        p.push(b"\n\n");
        let ev = p.next_event().unwrap();
        assert_eq!(ev.data.map(|d| d.len()), Some(4 * 1024 * 1024));
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert_eq!(p.buffered(), 0);
    }

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
