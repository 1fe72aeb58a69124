//! Log setup: a tracing filter from `--log` or `$RUST_LOG`, text or JSON lines on stderr.
//! Colour only when stderr is a terminal and `NO_COLOR` is unset: files, pipes and the logs MCP
//! hosts keep of `turnpike connect` get plain text.
//!
//! Lines are written off the request path: the thread that logs formats its line and hands it
//! to a bounded queue ([`QUEUE_LINES`] lines); one writer thread drains the queue into stderr,
//! many lines per write when they pile up. A call never waits on stderr (a slow terminal, a full
//! pipe): when the queue is full the line is dropped and counted, and the writer says how many
//! were dropped as soon as it catches up. [`flush`] waits (at most a second) until every line
//! queued so far is written; `main` calls it before the process ends, and a panic calls it
//! before the panic message.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
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

/// The writer thread: writes every line it receives to `out`, batching what has piled up.
fn drain(rx: &Receiver<Msg>, out: &mut impl Write) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    while let Ok(first) = rx.recv() {
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => buf.extend_from_slice(&line),
                Msg::Flush(done) => waiting.push(done),
            }
            next = if buf.len() < 64 * 1024 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                buf,
                "turnpike: {dropped} log line(s) dropped: stderr could not keep up"
            );
        }
        // A failed write (stderr closed) loses the lines; nothing better can be done with them.
        let _ = out.write_all(&buf);
        let _ = out.flush();
        buf.clear();
        for done in waiting {
            let _ = done.send(());
        }
    }
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
