//! What starts a configuration reload besides the admin API, and the dashboard's periodic
//! sample. Each runs until its task is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::metrics::SAMPLE_EVERY;
use crate::Operated;

/// Appends a sample of the running totals to the history every [`SAMPLE_EVERY`].
pub async fn sample_history(op: Arc<dyn Operated>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        op.metrics().push_sample();
    }
}

/// What a watched file looks like now (modification time and length), or `None` when it
/// cannot be read.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Polls `path` every `every` and reloads when its modification time or length changes
/// (editors that replace the file are covered too).
pub async fn watch_file(op: Arc<dyn Operated>, path: PathBuf, every: Duration) {
    let mut last = stamp(&path);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamp(&path);
        if now != last && now.is_some() {
            last = now;
            let op = op.clone();
            let _ = tokio::task::spawn_blocking(move || op.reload("file")).await;
        }
    }
}

/// Reloads on every SIGHUP.
#[cfg(unix)]
pub async fn on_sighup(op: Arc<dyn Operated>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!(target: "turnpike::reload", "cannot listen for SIGHUP");
        return;
    };
    while hup.recv().await.is_some() {
        let op = op.clone();
        let _ = tokio::task::spawn_blocking(move || op.reload("SIGHUP")).await;
    }
}
