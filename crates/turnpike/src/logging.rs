//! Log setup: a tracing filter from `--log` or `$RUST_LOG`, text or JSON lines on stderr.
//! Colour only when stderr is a terminal and `NO_COLOR` is unset: files, pipes and the logs MCP
//! hosts keep of `turnpike connect` get plain text.
//!
//! Lines are written off the request path: the thread that logs formats its line and hands it
//! to a bounded queue ([`QUEUE_LINES`] lines); one writer thread drains the queue into stderr,
//! many lines per write when they pile up. After each write the writer lingers [`LINGER`] and
//! takes whatever came meanwhile in one more write, so under load a logging call costs neither
//! a wake-up of the writer nor a write of its own: lines reach stderr in batches, at most
//! [`LINGER`] after they were logged. A quiet gateway's line is written at once. A call never
//! waits on stderr (a slow terminal, a full pipe): when the queue is full the line is dropped
//! and counted, and the writer says how many were dropped as soon as it catches up. [`flush`]
//! waits (at most a second) until every line queued so far is written; `main` calls it before
//! the process ends, and a panic calls it before the panic message.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::LogFormat;

/// Installs the global subscriber. `flag` wins over `$RUST_LOG`, which wins over `default`.
pub(crate) fn init(flag: Option<&str>, default: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = match flag {
        Some(f) => EnvFilter::try_new(f).with_context(|| format!("bad --log filter {f:?}"))?,
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.trim().is_empty() => {
                EnvFilter::try_new(&v).with_context(|| format!("bad RUST_LOG filter {v:?}"))?
            }
            _ => EnvFilter::new(default),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_writer(Queue::start());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// Lines the queue holds before new ones are dropped (a few MB at most).
pub(crate) const QUEUE_LINES: usize = 16 * 1024;

/// How long the writer waits after a write for more lines before it sleeps on the queue.
pub(crate) const LINGER: Duration = Duration::from_millis(5);

/// The most bytes the writer gathers for one write.
const BATCH_BYTES: usize = 64 * 1024;

/// What goes to the writer thread.
enum Msg {
    /// One formatted line (or several, as the formatter wrote them).
    Line(Vec<u8>),
    /// Answer once everything sent before has been written.
    Flush(SyncSender<()>),
}

/// The sending side, shared by every thread that logs.
struct Queue {
    tx: SyncSender<Msg>,
}

/// Lines dropped because the queue was full, not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The installed queue, for [`flush`].
static QUEUE: OnceLock<SyncSender<Msg>> = OnceLock::new();

impl Queue {
    /// Starts the writer thread; without one (the system refused a thread) lines go straight
    /// to stderr.
    fn start() -> Queue {
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("turnpike-log".into())
            .spawn(move || drain(&rx, &mut std::io::stderr()));
        if spawned.is_ok() {
            let _ = QUEUE.set(tx.clone());
        }
        Queue { tx }
    }
}

/// The writer thread: writes every line it receives to `out`, batching what has piled up, and
/// lingering [`LINGER`] after each write while lines keep coming.
fn drain(rx: &Receiver<Msg>, out: &mut impl Write) {
    drain_with(rx, out, LINGER);
}

fn drain_with(rx: &Receiver<Msg>, out: &mut impl Write, linger: Duration) {
    let mut buf: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    let mut waiting = Vec::new();
    // Blocks for the first message after a quiet spell; then batches until a linger finds
    // nothing new.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        loop {
            while let Some(msg) = next {
                match msg {
                    Msg::Line(line) => buf.extend_from_slice(&line),
                    Msg::Flush(done) => waiting.push(done),
                }
                next = if buf.len() < BATCH_BYTES {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            // A full batch goes on at once; otherwise more lines are given time to gather.
            let full = buf.len() >= BATCH_BYTES;
            write_batch(&mut buf, out);
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
            if !full {
                std::thread::sleep(linger);
            }
            match rx.try_recv() {
                Ok(msg) => next = Some(msg),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

/// Writes what `buf` gathered, with a note of lines dropped since the last write, and empties it.
fn write_batch(buf: &mut Vec<u8>, out: &mut impl Write) {
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        let _ = writeln!(
            buf,
            "turnpike: {dropped} log line(s) dropped: stderr could not keep up"
        );
    }
    if buf.is_empty() {
        return;
    }
    // A failed write (stderr closed) loses the lines; nothing better can be done with them.
    let _ = out.write_all(buf);
    let _ = out.flush();
    buf.clear();
}

/// Waits until every line logged so far is written (at most a second).
pub(crate) fn flush() {
    let Some(tx) = QUEUE.get() else {
        return;
    };
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    if tx.send(Msg::Flush(done_tx)).is_ok() {
        let _ = done_rx.recv_timeout(Duration::from_secs(1));
    }
}

/// One line being formatted: collected here, queued when the formatter is done with it.
pub(crate) struct Line<'a> {
    queue: &'a Queue,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self
            .queue
            .tx
            .try_send(Msg::Line(std::mem::take(&mut self.buf)))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            // No writer thread: write it ourselves.
            Err(TrySendError::Disconnected(Msg::Line(line))) => {
                let _ = std::io::stderr().write_all(&line);
            }
            Err(TrySendError::Disconnected(Msg::Flush(_))) => {}
        }
    }
}

impl<'a> MakeWriter<'a> for Queue {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            queue: self,
            buf: Vec::new(),
        }
    }
}

/// Whether to colour: on a terminal, unless `NO_COLOR` is set to anything but the empty string
/// (no-color.org).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn lines_are_written_in_order_and_flush_waits_for_them() {
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let queue = Queue { tx: tx.clone() };
        let (out_tx, out_rx) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            let mut out = Vec::new();
            drain(&rx, &mut out);
            let _ = out_tx.send(out);
        });
        for i in 0..1000 {
            let mut line = queue.make_writer();
            write!(line, "line {i}").unwrap();
            line.write_all(b"\n").unwrap();
        }
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        tx.send(Msg::Flush(done_tx)).unwrap();
        done_rx.recv().unwrap();
        drop((queue, tx));
        writer.join().unwrap();
        let out = String::from_utf8(out_rx.recv().unwrap()).unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(out, expected);
    }

    /// Counts the writes it is given.
    struct Counting {
        bytes: Vec<u8>,
        writes: usize,
    }

    impl Write for Counting {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.writes += 1;
            self.bytes.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_that_piled_up_go_out_in_one_write_per_batch() {
        // 1,000 lines of 20 bytes wait in the queue before the writer starts: one write of
        // them all (under the batch size), not 1,000.
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let queue = Queue { tx };
        for i in 0..1000 {
            let mut line = queue.make_writer();
            writeln!(line, "line {i:>14}").unwrap();
        }
        drop(queue);
        let mut out = Counting {
            bytes: Vec::new(),
            writes: 0,
        };
        drain_with(&rx, &mut out, Duration::ZERO);
        assert_eq!(out.writes, 1);
        assert_eq!(out.bytes.len(), 20_000);
        // Over the batch size: one write per 64 KiB gathered.
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let queue = Queue { tx };
        for _ in 0..10_000 {
            let mut line = queue.make_writer();
            line.write_all(&[b'x'; 99]).unwrap();
            line.write_all(b"\n").unwrap();
        }
        drop(queue);
        let mut out = Counting {
            bytes: Vec::new(),
            writes: 0,
        };
        drain_with(&rx, &mut out, Duration::ZERO);
        assert_eq!(out.bytes.len(), 1_000_000);
        // A batch ends with the line that reaches the batch size: 656 lines of 100 bytes.
        let per_write = BATCH_BYTES.div_ceil(100) * 100;
        assert_eq!(out.writes, 1_000_000usize.div_ceil(per_write));
    }

    #[test]
    fn a_full_queue_drops_lines_and_says_so() {
        // A queue of two lines and no writer yet: the third line is dropped, not waited for.
        let (tx, rx) = mpsc::sync_channel(2);
        let queue = Queue { tx };
        DROPPED.store(0, Ordering::Relaxed);
        for i in 0..3 {
            let mut line = queue.make_writer();
            writeln!(line, "line {i}").unwrap();
        }
        assert_eq!(DROPPED.load(Ordering::Relaxed), 1);
        drop(queue);
        let mut out = Vec::new();
        drain(&rx, &mut out);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "line 0\nline 1\nturnpike: 1 log line(s) dropped: stderr could not keep up\n"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
