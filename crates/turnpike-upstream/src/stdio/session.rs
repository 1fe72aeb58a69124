//! One MCP session: a child process, the tasks around its pipes, and the routing of what it
//! writes to the HTTP streams of its client.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use turnpike_core::error_codes::UPSTREAM_FAILED;

use super::budget::{Reclaimable, Slot};
use super::lines::read_line;
use super::wire::Final;
use super::StdioConfig;

/// The longest line accepted from a child's stdout; longer lines are skipped.
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;
/// How much of one stderr line is kept for the log.
const STDERR_LINE: usize = 2048;
/// Messages waiting to be written to a child's stdin.
const STDIN_QUEUE: usize = 64;
/// Messages waiting on one POST's SSE stream.
const EVENT_QUEUE: usize = 256;
/// Messages waiting on a session's GET stream.
const GET_QUEUE: usize = 256;
/// Uncorrelated messages kept for the next GET stream when no stream can take them.
const BACKLOG: usize = 64;
/// Requests in flight in one session.
const MAX_PENDING: usize = 1024;
/// How long a child may take to exit once its stdin is closed before its process group gets
/// SIGTERM, and again after SIGTERM before it gets SIGKILL.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long to wait, after a child exited, for the rest of its stdout.
const DRAIN_WAIT: Duration = Duration::from_secs(1);
/// Characters of a session id used as its lookup handle (96 bits of the id's 256).
const HANDLE_LEN: usize = 16;
/// Log target for everything the stdio upstream logs.
const LOG: &str = "turnpike::upstream::stdio";

/// A request waiting for its response.
struct Pending {
    /// The request's id as the client sent it.
    id: Value,
    /// The request's progress token (as [`id_key`]), if it asked for progress.
    progress: Option<String>,
    /// Where the messages that belong to this request go; `None` for a JSON (non-SSE) answer.
    events: Option<mpsc::Sender<Bytes>>,
    /// Where the response goes.
    done: oneshot::Sender<Final>,
    /// Registration order, to pick the most recent stream.
    seq: u64,
}

/// Routing state of a session, behind one lock.
#[derive(Default)]
struct State {
    /// Why the session ended; `Some` once it has.
    closed: Option<String>,
    /// Requests in flight, by [`id_key`] of their id.
    pending: HashMap<String, Pending>,
    /// Counter for [`Pending::seq`].
    seq: u64,
    /// The open GET stream, if any.
    get: Option<mpsc::Sender<Bytes>>,
    /// Uncorrelated messages no stream could take yet.
    backlog: VecDeque<Bytes>,
    /// Whether dropping a message from the backlog has been logged at warn level already.
    backlog_warned: bool,
}

/// What a registered request waits on.
pub(crate) struct Ticket {
    /// Messages that belong to the request (SSE answers only).
    pub(crate) events: Option<mpsc::Receiver<Bytes>>,
    /// The response.
    pub(crate) done: oneshot::Receiver<Final>,
}

/// Why a request could not be registered.
#[derive(Debug)]
pub(crate) enum RegisterError {
    /// The session has ended, for the reason given.
    Ended(String),
    /// A request with the same id is already in flight.
    Duplicate,
    /// Too many requests in flight.
    Busy,
}

/// Why a GET stream could not be opened.
#[derive(Debug)]
pub(crate) enum GetError {
    /// The session has ended.
    Ended,
    /// Another GET stream is open.
    Busy,
}

/// One MCP session and the child process behind it.
pub(crate) struct Session {
    /// The session id the client carries (secret: never logged).
    id: String,
    /// A number for logs.
    pub(crate) serial: u64,
    /// The child's process id.
    pub(crate) pid: Option<u32>,
    /// Lines for the child's stdin.
    to_child: mpsc::Sender<Bytes>,
    state: Mutex<State>,
    /// Cancelled to end the session on purpose (DELETE, idle, shutdown).
    stop: CancellationToken,
    /// Cancelled when writing to the child failed.
    fault: CancellationToken,
    /// Cancelled once the session is over: the pipe tasks stop and stdin is closed.
    ended: CancellationToken,
    /// When the session started; `last_activity` counts milliseconds from here.
    epoch: Instant,
    last_activity: AtomicU64,
}

impl Session {
    /// Starts the child for a new session and the tasks around it. `slot` is given back once
    /// the child has been reaped (at once if it cannot be started).
    pub(crate) fn spawn(
        config: &StdioConfig,
        id: String,
        serial: u64,
        registry: Weak<Registry>,
        slot: Slot,
    ) -> io::Result<Arc<Session>> {
        let (program, args) = config.command.split_first().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the upstream command is empty")
        })?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(&config.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // The child leads a process group of its own, so that a server started through a
        // wrapper (`npx`, `sh -c`) is ended with the wrapper, and so that signals meant for the
        // gateway (Ctrl-C in a terminal) reach the gateway alone, which then ends its children.
        #[cfg(unix)]
        cmd.process_group(0);
        if let Some(cwd) = &config.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(io::Error::other("the child's pipes are missing"));
        };
        let pid = child.id();
        let (to_child, from_sessions) = mpsc::channel(STDIN_QUEUE);
        let session = Arc::new(Session {
            id,
            serial,
            pid,
            to_child,
            state: Mutex::new(State::default()),
            stop: CancellationToken::new(),
            fault: CancellationToken::new(),
            ended: CancellationToken::new(),
            epoch: Instant::now(),
            last_activity: AtomicU64::new(0),
        });
        tracing::debug!(target: LOG, session = serial, pid, "started upstream process");
        tokio::spawn(write_loop(
            stdin,
            from_sessions,
            session.ended.clone(),
            session.fault.clone(),
            serial,
        ));
        tokio::spawn(stderr_loop(stderr, session.ended.clone(), serial, pid));
        let reader = tokio::spawn(read_loop(stdout, Arc::clone(&session)));
        tokio::spawn(supervise(
            Arc::clone(&session),
            child,
            reader,
            registry,
            config.idle_timeout,
            slot,
        ));
        Ok(session)
    }

    /// The session id the client carries.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Records client activity, for the idle timeout.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity.store(ms, Ordering::Relaxed);
    }

    /// Whether the session has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    /// Queues one line (with its `\n`) for the child's stdin. Fails once the session is over.
    pub(crate) async fn send(&self, line: Bytes) -> Result<(), ()> {
        self.to_child.send(line).await.map_err(|_| ())
    }

    /// Registers a request before it is written to the child, so that nothing the child says
    /// about it can be missed.
    pub(crate) fn register(
        &self,
        id: &Value,
        progress: Option<&Value>,
        streaming: bool,
    ) -> Result<Ticket, RegisterError> {
        let mut st = self.state.lock();
        if let Some(reason) = &st.closed {
            return Err(RegisterError::Ended(reason.clone()));
        }
        let key = id_key(id);
        if st.pending.get(&key).is_some_and(|p| !p.done.is_closed()) {
            return Err(RegisterError::Duplicate);
        }
        if st.pending.len() >= MAX_PENDING {
            st.pending.retain(|_, p| !p.done.is_closed());
            if st.pending.len() >= MAX_PENDING {
                return Err(RegisterError::Busy);
            }
        }
        st.seq += 1;
        let seq = st.seq;
        let (done_tx, done_rx) = oneshot::channel();
        let (events_tx, events_rx) = if streaming {
            let (tx, rx) = mpsc::channel(EVENT_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        st.pending.insert(
            key,
            Pending {
                id: id.clone(),
                progress: progress.map(id_key),
                events: events_tx,
                done: done_tx,
                seq,
            },
        );
        Ok(Ticket {
            events: events_rx,
            done: done_rx,
        })
    }

    /// The client cancelled request `id` (`notifications/cancelled`): its stream ends without
    /// an answer, as the child will not send one.
    pub(crate) fn forget(&self, id: &Value) {
        self.state.lock().pending.remove(&id_key(id));
    }

    /// Opens the session's GET stream, handing it the messages kept so far.
    pub(crate) fn open_get(&self) -> Result<mpsc::Receiver<Bytes>, GetError> {
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return Err(GetError::Ended);
        }
        if st.get.as_ref().is_some_and(|g| !g.is_closed()) {
            return Err(GetError::Busy);
        }
        let (tx, rx) = mpsc::channel(GET_QUEUE);
        while let Some(msg) = st.backlog.pop_front() {
            if tx.try_send(msg).is_err() {
                break;
            }
        }
        st.get = Some(tx);
        Ok(rx)
    }

    /// Ends the session's routing: every pending request gets a JSON-RPC error with `message`,
    /// streams end, later requests are refused. Returns false if it had already ended.
    pub(crate) fn close(&self, message: &str) -> bool {
        let pending = {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return false;
            }
            st.closed = Some(message.to_owned());
            st.get = None;
            st.backlog.clear();
            std::mem::take(&mut st.pending)
        };
        for p in pending.into_values() {
            let body = serde_json::to_vec(&turnpike_mcp::error_response(
                Some(&p.id),
                UPSTREAM_FAILED,
                message,
            ))
            .unwrap_or_default();
            let _ = p.done.send(Final {
                body: Bytes::from(body),
                synthetic: true,
            });
        }
        true
    }

    /// Ends the session on purpose: closes it with `message` and has its child stopped.
    pub(crate) fn terminate(&self, message: &str) {
        self.close(message);
        self.stop.cancel();
    }

    /// When the session became idle, or `None` while a request is in flight. Requests whose
    /// client has gone away do not count (and are forgotten).
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let mut st = self.state.lock();
        st.pending.retain(|_, p| !p.done.is_closed());
        if !st.pending.is_empty() {
            return None;
        }
        let ms = self.last_activity.load(Ordering::Relaxed);
        Some(self.epoch + Duration::from_millis(ms))
    }

    /// Routes one message the child wrote.
    fn dispatch(&self, line: Bytes, msg: &Value) {
        let method = msg.get("method").and_then(Value::as_str);
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return;
        }
        match method {
            None => {
                let Some(id) = msg.get("id") else {
                    tracing::debug!(target: LOG, session = self.serial, "skipping a message with neither method nor id");
                    return;
                };
                match st.pending.remove(&id_key(id)) {
                    Some(p) => {
                        drop(st);
                        let _ = p.done.send(Final {
                            body: line,
                            synthetic: false,
                        });
                        self.touch();
                    }
                    None => {
                        tracing::debug!(target: LOG, session = self.serial, "skipping a response to no request in flight");
                    }
                }
            }
            Some("notifications/progress") => {
                let token = msg.pointer("/params/progressToken").map(id_key);
                let target = token.and_then(|t| {
                    st.pending
                        .values()
                        .find(|p| p.progress.as_deref() == Some(t.as_str()))
                });
                match target {
                    Some(p) => {
                        if let Some(events) = &p.events {
                            if let Err(TrySendError::Full(_)) = events.try_send(line) {
                                tracing::warn!(target: LOG, session = self.serial, "dropping a progress notification: the client is not reading its stream");
                            }
                        }
                    }
                    None => {
                        tracing::debug!(target: LOG, session = self.serial, "skipping a progress notification for no request in flight");
                    }
                }
            }
            Some(method) => st.route(line, is_session_level(method), self.serial),
        }
    }
}

impl State {
    /// Delivers a server-to-client request or notification that is not a progress report:
    /// to the one request in flight if there is exactly one and it streams (unless the message
    /// is about the whole session), else to the GET stream, else to the most recent streaming
    /// request, else to the backlog for the next GET stream.
    fn route(&mut self, mut line: Bytes, session_level: bool, serial: u64) {
        if !session_level {
            let mut live = self.pending.values().filter(|p| !p.done.is_closed());
            if let (Some(only), None) = (live.next(), live.next()) {
                if let Some(events) = &only.events {
                    match events.try_send(line) {
                        Ok(()) => return,
                        Err(TrySendError::Full(l) | TrySendError::Closed(l)) => line = l,
                    }
                }
            }
        }
        if let Some(get) = &self.get {
            match get.try_send(line) {
                Ok(()) => return,
                Err(TrySendError::Closed(l)) => {
                    self.get = None;
                    line = l;
                }
                Err(TrySendError::Full(l)) => line = l,
            }
        }
        let mut streams: Vec<(u64, &mpsc::Sender<Bytes>)> = self
            .pending
            .values()
            .filter_map(|p| {
                p.events
                    .as_ref()
                    .filter(|e| !e.is_closed())
                    .map(|e| (p.seq, e))
            })
            .collect();
        streams.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        for (_, events) in streams {
            match events.try_send(line) {
                Ok(()) => return,
                Err(TrySendError::Full(l) | TrySendError::Closed(l)) => line = l,
            }
        }
        if self.backlog.len() >= BACKLOG {
            self.backlog.pop_front();
            if self.backlog_warned {
                tracing::debug!(target: LOG, session = serial, "dropping the oldest undelivered server message");
            } else {
                self.backlog_warned = true;
                tracing::warn!(target: LOG, session = serial, "dropping the oldest undelivered server message: no stream is open to take it (the client has no GET stream open)");
            }
        }
        self.backlog.push_back(line);
    }
}

/// Messages about the whole session rather than the request in flight.
fn is_session_level(method: &str) -> bool {
    method.ends_with("/list_changed") || method == "notifications/resources/updated"
}

/// A JSON-RPC id (or progress token) as a map key: its compact JSON text, so that the string
/// `"1"` and the number `1` stay apart.
pub(crate) fn id_key(id: &Value) -> String {
    id.to_string()
}

/// The sessions of one upstream.
pub(crate) struct Registry {
    /// Sessions by handle (the first [`HANDLE_LEN`] characters of their id).
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Counter for [`Session::serial`].
    serial: AtomicU64,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            sessions: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(0),
        }
    }

    /// A number for the next session's logs.
    pub(crate) fn next_serial(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds a started session. False if its handle is taken,
    /// which 96 random bits make practically impossible.
    pub(crate) fn insert(&self, session: Arc<Session>) -> bool {
        let Some(handle) = session.id.get(..HANDLE_LEN) else {
            return false;
        };
        let mut map = self.sessions.lock();
        if map.contains_key(handle) {
            return false;
        }
        map.insert(handle.to_owned(), session);
        true
    }

    /// The session with this id. The full id is compared in constant time.
    pub(crate) fn lookup(&self, id: &str) -> Option<Arc<Session>> {
        let handle = id.get(..HANDLE_LEN)?;
        let session = self.sessions.lock().get(handle).cloned()?;
        turnpike_core::ct_eq(session.id.as_bytes(), id.as_bytes()).then_some(session)
    }

    /// Removes `session` (its id gets 404 from now on; its slot is freed when its child has
    /// been reaped); false if it was not there.
    pub(crate) fn remove(&self, session: &Arc<Session>) -> bool {
        let Some(handle) = session.id.get(..HANDLE_LEN) else {
            return false;
        };
        let mut map = self.sessions.lock();
        if map.get(handle).is_some_and(|s| Arc::ptr_eq(s, session)) {
            map.remove(handle);
            true
        } else {
            false
        }
    }

    /// Ends `session` on purpose with `message`: removed at once, child stopped.
    pub(crate) fn end(&self, session: &Arc<Session>, message: &str) {
        self.remove(session);
        session.terminate(message);
    }

    /// Ends every session.
    pub(crate) fn end_all(&self, message: &str) {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        for s in &sessions {
            self.end(s, message);
        }
    }

    /// How many sessions are open.
    pub(crate) fn len(&self) -> usize {
        self.sessions.lock().len()
    }
}

/// Why a session's supervisor stopped waiting.
enum End {
    /// The child exited by itself.
    Exited(io::Result<ExitStatus>),
    /// The session was ended on purpose (DELETE, idle timeout, shutdown).
    Stopped,
    /// The child's stdout closed or its stdin could not be written.
    Broken,
}

/// Watches a session's child: ends the session when the child exits, when its pipes break,
/// when the session is stopped, or when it has been idle too long; then makes sure the child
/// is gone and reaped.
async fn supervise(
    session: Arc<Session>,
    mut child: Child,
    mut reader: JoinHandle<()>,
    registry: Weak<Registry>,
    idle: Duration,
    slot: Slot,
) {
    let serial = session.serial;
    // If this task is dropped before the child is reaped (the runtime is shutting down), the
    // guard kills the child's process group; `kill_on_drop` kills the child itself.
    let group = GroupGuard(session.pid);
    let idle = (!idle.is_zero()).then_some(idle);
    let mut next_check = idle.map(|d| far(session.epoch, d));
    let end = loop {
        let idle_sleep = async {
            match next_check {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => break End::Exited(status),
            () = session.stop.cancelled() => break End::Stopped,
            () = session.fault.cancelled() => break End::Broken,
            _ = &mut reader => break End::Broken,
            () = idle_sleep => {
                let Some(idle) = idle else { continue };
                let now = Instant::now();
                match session.idle_since() {
                    Some(since) if now.saturating_duration_since(since) >= idle => {
                        session.close(&format!(
                            "the session was idle for {} s and was ended; initialize a new one",
                            idle.as_secs()
                        ));
                        break End::Stopped;
                    }
                    Some(since) => next_check = Some(far(since, idle)),
                    None => next_check = Some(far(now, idle)),
                }
            }
        }
    };
    let status = match end {
        End::Exited(status) => {
            // Deliver what the child wrote before it exited.
            let _ = tokio::time::timeout(DRAIN_WAIT, &mut reader).await;
            status
        }
        End::Stopped | End::Broken => {
            // Closing stdin asks a well-behaved server to exit; then SIGTERM, then SIGKILL,
            // as the MCP stdio transport describes.
            session.ended.cancel();
            match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    signal_group(session.pid, Signal::Term);
                    match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                        Ok(status) => status,
                        Err(_) => {
                            signal_group(session.pid, Signal::Kill);
                            let _ = child.start_kill();
                            child.wait().await
                        }
                    }
                }
            }
        }
    };
    // Whatever the child left behind in its group (a wrapper's server that outlived it).
    drop(group);
    let message = match &status {
        Ok(s) => format!("the upstream process exited ({s})"),
        Err(e) => format!("the upstream process exited (status unknown: {e})"),
    };
    session.close(&message);
    session.ended.cancel();
    reader.abort();
    if let Some(registry) = registry.upgrade() {
        registry.remove(&session);
    }
    tracing::debug!(target: LOG, session = serial, pid = session.pid, "{message}");
    // The child is reaped and its group killed: its slot is free.
    drop(slot);
}

/// Kills a child's process group when dropped.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, Signal::Kill);
    }
}

/// A signal for a child's process group.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

/// Sends `signal` to the process group led by the child `pid` (each child leads its own).
/// Errors (the group is already gone) are ignored.
#[cfg(unix)]
fn signal_group(pid: Option<u32>, signal: Signal) {
    let Some(pgid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    let sig = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: killpg only asks the kernel to deliver a signal; it reads or writes no memory of
    // this process. The group id is that of a child this session spawned with a group of its
    // own.
    #[allow(unsafe_code)]
    unsafe {
        libc::killpg(pgid, sig);
    }
}

/// Without process groups only the child itself is signalled (through `Child::start_kill`).
#[cfg(not(unix))]
fn signal_group(_pid: Option<u32>, _signal: Signal) {}

/// `from + d`, or a time far in the future if that overflows.
fn far(from: Instant, d: Duration) -> Instant {
    from.checked_add(d)
        .unwrap_or_else(|| from + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Writes queued lines to the child's stdin until the session ends; then drops stdin, which
/// closes it.
async fn write_loop(
    mut stdin: ChildStdin,
    mut queue: mpsc::Receiver<Bytes>,
    ended: CancellationToken,
    fault: CancellationToken,
    serial: u64,
) {
    loop {
        let line = tokio::select! {
            biased;
            () = ended.cancelled() => break,
            line = queue.recv() => line,
        };
        let Some(line) = line else { break };
        let written = tokio::select! {
            biased;
            () = ended.cancelled() => break,
            r = async {
                stdin.write_all(&line).await?;
                stdin.flush().await
            } => r,
        };
        if let Err(e) = written {
            tracing::debug!(target: LOG, session = serial, error = %e, "cannot write to the upstream process");
            fault.cancel();
            break;
        }
    }
}

/// Forwards the child's stderr to the log, line by line, cut to [`STDERR_LINE`] bytes.
async fn stderr_loop(stderr: ChildStderr, ended: CancellationToken, serial: u64, pid: Option<u32>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        let line = tokio::select! {
            () = ended.cancelled() => break,
            line = read_line(&mut reader, &mut buf, STDERR_LINE) => line,
        };
        match line {
            Ok(Some(info)) => {
                let text = String::from_utf8_lossy(&buf);
                tracing::debug!(target: LOG, session = serial, pid, truncated = info.truncated, "upstream stderr: {text}");
            }
            Ok(None) | Err(_) => break,
        }
    }
}

/// Reads the child's stdout: one JSON-RPC message a line, each handed to the session's
/// routing. Lines that are not JSON objects, or longer than [`MAX_LINE`], are logged and
/// skipped. Returns at end of file.
async fn read_loop(stdout: ChildStdout, session: Arc<Session>) {
    let serial = session.serial;
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut buf = Vec::new();
    let mut warned = false;
    loop {
        let line = tokio::select! {
            biased;
            () = session.ended.cancelled() => return,
            line = read_line(&mut reader, &mut buf, MAX_LINE) => line,
        };
        let info = match line {
            Ok(Some(info)) => info,
            Ok(None) => {
                tracing::debug!(target: LOG, session = serial, "the upstream process closed its stdout");
                return;
            }
            Err(e) => {
                tracing::debug!(target: LOG, session = serial, error = %e, "cannot read the upstream process's stdout");
                return;
            }
        };
        if info.truncated {
            tracing::warn!(target: LOG, session = serial, len = info.len, "skipping a line over {MAX_LINE} bytes from the upstream process");
            continue;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let msg = match serde_json::from_slice::<Value>(&buf) {
            Ok(msg @ Value::Object(_)) => msg,
            _ => {
                let preview: String = String::from_utf8_lossy(&buf).chars().take(200).collect();
                if warned {
                    tracing::debug!(target: LOG, session = serial, "skipping a line that is not a JSON-RPC message: {preview}");
                } else {
                    warned = true;
                    tracing::warn!(target: LOG, session = serial, "skipping a line that is not a JSON-RPC message (stdout must carry only MCP messages): {preview}");
                }
                continue;
            }
        };
        // A stray CR inside the line would end an SSE data line early: write such lines anew.
        let line = if buf.contains(&b'\r') {
            Bytes::from(serde_json::to_vec(&msg).unwrap_or_default())
        } else {
            Bytes::from(std::mem::take(&mut buf))
        };
        session.dispatch(line, &msg);
    }
}

/// A session as the budget sees it ([`Reclaimable`]): ended through its registry.
pub(crate) struct Reclaim {
    session: Weak<Session>,
    registry: Weak<Registry>,
}

impl Reclaim {
    /// The budget's handle on `session`, registered in `registry`.
    pub(crate) fn new(session: &Arc<Session>, registry: &Arc<Registry>) -> Reclaim {
        Reclaim {
            session: Arc::downgrade(session),
            registry: Arc::downgrade(registry),
        }
    }
}

impl Reclaimable for Reclaim {
    fn serial(&self) -> u64 {
        self.session.upgrade().map_or(0, |s| s.serial)
    }

    fn is_closed(&self) -> bool {
        self.session.upgrade().is_none_or(|s| s.is_closed())
    }

    fn idle_since(&self) -> Option<Instant> {
        self.session.upgrade()?.idle_since()
    }

    fn end(&self, message: &str) {
        let Some(session) = self.session.upgrade() else {
            return;
        };
        match self.registry.upgrade() {
            Some(r) => r.end(&session, message),
            None => session.terminate(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare_session() -> Session {
        let (to_child, _rx) = mpsc::channel(1);
        Session {
            id: "x".repeat(43),
            serial: 1,
            pid: None,
            to_child,
            state: Mutex::new(State::default()),
            stop: CancellationToken::new(),
            fault: CancellationToken::new(),
            ended: CancellationToken::new(),
            epoch: Instant::now(),
            last_activity: AtomicU64::new(0),
        }
    }

    fn msg(v: &Value) -> Bytes {
        Bytes::from(serde_json::to_vec(v).unwrap())
    }

    #[tokio::test]
    async fn responses_and_progress_find_their_request() {
        let s = bare_session();
        let mut t = s
            .register(&Value::from(7), Some(&Value::from("tok")), true)
            .unwrap();
        let progress = serde_json::json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":1}});
        s.dispatch(msg(&progress), &progress);
        let other = serde_json::json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"nope","progress":1}});
        s.dispatch(msg(&other), &other);
        let resp = serde_json::json!({"jsonrpc":"2.0","id":7,"result":{}});
        s.dispatch(msg(&resp), &resp);
        let events = t.events.as_mut().unwrap();
        assert_eq!(events.recv().await.unwrap(), msg(&progress));
        assert!(
            events.recv().await.is_none(),
            "the stream closes after the response"
        );
        let fin = t.done.await.unwrap();
        assert!(!fin.synthetic);
        assert_eq!(fin.body, msg(&resp));
    }

    #[tokio::test]
    async fn string_and_number_ids_stay_apart() {
        let s = bare_session();
        let t_num = s.register(&Value::from(1), None, false).unwrap();
        let t_str = s.register(&Value::from("1"), None, false).unwrap();
        assert!(matches!(
            s.register(&Value::from(1), None, false),
            Err(RegisterError::Duplicate)
        ));
        let resp = serde_json::json!({"jsonrpc":"2.0","id":"1","result":{}});
        s.dispatch(msg(&resp), &resp);
        assert_eq!(t_str.done.await.unwrap().body, msg(&resp));
        s.close("gone");
        let fin = t_num.done.await.unwrap();
        assert!(fin.synthetic);
        let v: Value = serde_json::from_slice(&fin.body).unwrap();
        assert_eq!(v["id"], 1);
        assert_eq!(v["error"]["code"], UPSTREAM_FAILED);
        assert_eq!(v["error"]["message"], "gone");
    }

    #[tokio::test]
    async fn uncorrelated_messages_go_to_get_then_streams_then_backlog() {
        let s = bare_session();
        let note =
            serde_json::json!({"jsonrpc":"2.0","method":"notifications/message","params":{}});
        // Nobody listening: kept for the next GET.
        s.dispatch(msg(&note), &note);
        let mut get = s.open_get().unwrap();
        assert!(matches!(s.open_get(), Err(GetError::Busy)));
        assert_eq!(get.recv().await.unwrap(), msg(&note));
        // One streaming request in flight: its messages go to it.
        let mut a = s.register(&Value::from(1), None, true).unwrap();
        s.dispatch(msg(&note), &note);
        assert!(a.events.as_mut().unwrap().try_recv().is_ok());
        assert!(get.try_recv().is_err());
        // Session-level notifications go to the GET stream even then.
        let changed =
            serde_json::json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"});
        s.dispatch(msg(&changed), &changed);
        assert_eq!(get.try_recv().unwrap(), msg(&changed));
        // Two in flight: uncorrelated, to the GET stream.
        let mut b = s.register(&Value::from(2), None, true).unwrap();
        s.dispatch(msg(&note), &note);
        assert!(get.try_recv().is_ok());
        // GET gone: the most recent stream.
        drop(get);
        s.dispatch(msg(&note), &note);
        assert!(b.events.as_mut().unwrap().try_recv().is_ok());
        assert!(a.events.as_mut().unwrap().try_recv().is_err());
        // A new GET may open once the old one is gone.
        assert!(s.open_get().is_ok());
    }

    #[tokio::test]
    async fn backlog_is_bounded() {
        let s = bare_session();
        for i in 0..(BACKLOG + 10) {
            let n = serde_json::json!({"jsonrpc":"2.0","method":"notifications/message","params":{"i":i}});
            s.dispatch(msg(&n), &n);
        }
        let mut get = s.open_get().unwrap();
        let mut got = Vec::new();
        while let Ok(m) = get.try_recv() {
            got.push(serde_json::from_slice::<Value>(&m).unwrap()["params"]["i"].clone());
        }
        assert_eq!(got.len(), BACKLOG);
        assert_eq!(got[0], 10, "the oldest are dropped first");
    }

    #[tokio::test]
    async fn closed_sessions_refuse_work() {
        let s = bare_session();
        assert!(s.close("bye"));
        assert!(!s.close("again"));
        assert!(matches!(
            s.register(&Value::from(1), None, false),
            Err(RegisterError::Ended(m)) if m == "bye"
        ));
        assert!(matches!(s.open_get(), Err(GetError::Ended)));
    }

    #[test]
    fn registry_lookup_needs_the_whole_id() {
        let reg = Registry::new();
        let s = Arc::new(bare_session());
        assert!(reg.insert(Arc::clone(&s)));
        assert!(reg.lookup(&"x".repeat(43)).is_some());
        assert!(reg.lookup(&"x".repeat(42)).is_none());
        assert!(reg.lookup(&format!("{}y", "x".repeat(42))).is_none());
        assert!(reg.lookup("short").is_none());
        assert_eq!(reg.len(), 1);
        assert!(reg.remove(&s));
        assert!(!reg.remove(&s));
        assert_eq!(reg.len(), 0);
    }
}
