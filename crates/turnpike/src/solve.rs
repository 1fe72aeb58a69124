//! `turnpike solve`: solve a proof-of-work challenge and print the credential.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use turnpike_client::{ParsedChallenge, SolveError, SolveOptions};
use turnpike_pow::ChallengeToken;

/// Solve a proof-of-work challenge; print the credential.
///
/// CHALLENGE may be a `WWW-Authenticate` value (`PoW challenge="…", …`), a bare challenge
/// token, or — read from stdin when CHALLENGE is `-` or absent — a whole 402 response body or
/// in-band tool result. Only the credential goes to stdout: the `Authorization` header value
/// `PoW challenge="…", solution="…"`, or with --meta the `_meta` object to put in the retried
/// call's params.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct SolveArgs {
    /// The challenge: a WWW-Authenticate value, a bare token, or `-` to read stdin.
    #[arg(value_name = "CHALLENGE")]
    pub(crate) challenge: Option<String>,
    /// Print the `_meta` object (`{"turnpike/pow":{"challenge":…,"solution":…}}`) instead of
    /// the Authorization header value.
    #[arg(long)]
    pub(crate) meta: bool,
    /// Solver threads (default: every core).
    #[arg(short = 'j', long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long, conflicts_with = "quiet")]
    pub(crate) progress: bool,
    /// Never show progress.
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Give up after this many seconds (exit status 3).
    #[arg(long, value_name = "SECS")]
    pub(crate) max_seconds: Option<f64>,
}

const EXAMPLES: &str = r#"Examples:
  # call.json holds a tools/call request for a priced tool
  # (Streamable HTTP wants both Accept types: without them the gateway answers 406)
  H='Accept: application/json, text/event-stream'
  AUTH=$(curl -s http://127.0.0.1:8402/mcp -H 'Content-Type: application/json' -H "$H" \
           -d @call.json | turnpike solve)
  curl -s http://127.0.0.1:8402/mcp -H 'Content-Type: application/json' -H "$H" \
       -H "Authorization: $AUTH" -d @call.json

  turnpike solve 'PoW challenge="AQE…", algorithm="sha256", effort="200000"'
  turnpike solve --meta --threads 2 --max-seconds 30 < in-band-result.json

Exit status: 0 solved, 1 no usable challenge or solving failed, 3 --max-seconds ran out."#;

/// Exit status when --max-seconds runs out.
const EXIT_TIMEOUT: u8 = 3;

pub(crate) fn run(args: SolveArgs) -> anyhow::Result<ExitCode> {
    let text = match args.challenge.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the challenge from stdin")?;
            s
        }
        Some(s) => s.to_string(),
    };
    let parsed = pick_challenge(&text)?;
    let token = &parsed.token;
    let now = turnpike_core::unix_now();
    if token.expires_at() <= now {
        bail!(
            "the challenge expired {} s ago; ask for a fresh one",
            now - token.expires_at()
        );
    }
    let threads = args
        .threads
        .unwrap_or_else(turnpike_client::default_threads);
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let show = !args.quiet && (args.progress || std::io::stderr().is_terminal());
    let deadline = match args.max_seconds {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(_) => bail!("--max-seconds must be a positive number"),
        None => None,
    };

    let started = Instant::now();
    let expected = token.effort();
    let solved = solve_with_deadline(token, threads, show, deadline)?;
    let Some(nonces) = solved else {
        if show {
            eprintln!();
        }
        eprintln!(
            "turnpike: gave up after {:.1} s (--max-seconds); expected work {expected} hashes",
            started.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::from(EXIT_TIMEOUT));
    };
    if show {
        eprintln!(
            "\rsolved in {:.2} s with {threads} thread{}{}",
            started.elapsed().as_secs_f64(),
            if threads == 1 { "" } else { "s" },
            " ".repeat(30)
        );
    }
    let out = if args.meta {
        turnpike_client::meta_value(&parsed.challenge, &nonces).to_string()
    } else {
        turnpike_client::authorization_value(&parsed.challenge, &nonces)
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{out}").context("writing the credential")?;
    Ok(ExitCode::SUCCESS)
}

/// The first proof-of-work challenge in `text`.
fn pick_challenge(text: &str) -> anyhow::Result<ParsedChallenge> {
    match turnpike_client::parse_challenges(text).into_iter().next() {
        Some(c) => Ok(c),
        None => bail!(
            "no proof-of-work challenge found; give a WWW-Authenticate value (PoW challenge=\"…\"), \
             a bare token, or pipe a 402 body or in-band result into `turnpike solve -`"
        ),
    }
}

/// Solves on this thread's worker pool; returns `None` when the deadline passes first.
/// Progress (percent of the expected hashes and the rate) is drawn on stderr when `show`.
fn solve_with_deadline(
    token: &ChallengeToken,
    threads: usize,
    show: bool,
    deadline: Option<Duration>,
) -> anyhow::Result<Option<Vec<u64>>> {
    let cancel = AtomicBool::new(false);
    let expected = token.effort();
    let started = Instant::now();
    let progress = |done: u64| {
        let elapsed = started.elapsed();
        if deadline.is_some_and(|d| elapsed >= d) {
            cancel.store(true, Ordering::Relaxed);
        }
        if show {
            let pct = done as f64 * 100.0 / expected.max(1) as f64;
            let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
            eprint!(
                "\rsolving: {pct:5.1}% of {expected} expected hashes, {}H/s   ",
                human(rate)
            );
        }
    };
    let opts = SolveOptions {
        threads,
        progress: Some(&progress),
        progress_interval: Duration::from_millis(if deadline.is_some() { 50 } else { 200 }),
        cancel: Some(&cancel),
        ..SolveOptions::default()
    };
    match turnpike_client::solve_with(token, &opts) {
        Ok(s) => Ok(Some(s.nonces)),
        Err(SolveError::Cancelled { .. }) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("solving failed: {e}")),
    }
}

/// 12.3 M, 850 k, 999.
fn human(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0} k", x / 1e3)
    } else {
        format!("{x:.0} ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_well() {
        assert_eq!(human(12_345_678.0), "12.3 M");
        assert_eq!(human(850_000.0), "850 k");
        assert_eq!(human(999.0), "999 ");
        assert_eq!(human(2.5e9), "2.50 G");
    }

    #[test]
    fn no_challenge_is_a_clear_error() {
        let e = pick_challenge("nothing here").unwrap_err().to_string();
        assert!(e.contains("no proof-of-work challenge"), "{e}");
    }
}
