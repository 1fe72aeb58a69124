//! Memory of the in-memory backend with one million active identities.
//!
//! `cargo run --release -p turnpike-limits --example memory_footprint [identities]`
//!
//! Counts heap bytes with a counting allocator and reads resident memory from /proc, first with
//! one rate cell per identity, then with what a default tool call leaves behind (tool cell,
//! loop-brake cell, daily counter; the in-flight slot is given back when the call ends). The
//! quotas refill slowly so every identity stays active while it is measured.

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike_limits::{
    Check, Class, ConcurrencyCheck, LimitBackend, LoopBrake, LoopCheck, MemoryBackend, Quota,
    RateCheck,
};

struct Counting;
static HEAP: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on unchanged to the system allocator, which upholds
// GlobalAlloc's contract; the counter is a side effect that touches no allocation.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HEAP.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn scope(i: u32) -> String {
    format!("anon:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)
}

fn report(label: &str, n: u32, heap0: isize, rss0: usize, m: &MemoryBackend, took: Duration) {
    let heap = HEAP.load(Ordering::Relaxed) - heap0;
    let rss = rss_bytes().saturating_sub(rss0);
    println!("{label}:");
    println!("  identities           {n}");
    println!("  cells held           {}", m.len());
    println!(
        "  heap                 {:.1} MiB = {:.1} bytes per identity",
        heap as f64 / 1048576.0,
        heap as f64 / f64::from(n)
    );
    println!(
        "  resident (RSS) delta {:.1} MiB = {:.1} bytes per identity",
        rss as f64 / 1048576.0,
        rss as f64 / f64::from(n)
    );
    println!(
        "  tables (estimate)    {:.1} MiB",
        m.table_bytes() as f64 / 1048576.0
    );
    println!(
        "  time                 {:.2} s ({:.0} ns per call)",
        took.as_secs_f64(),
        took.as_nanos() as f64 / f64::from(n)
    );
    println!(
        "  process RSS          {:.1} MiB",
        rss_bytes() as f64 / 1048576.0
    );
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let slow = Quota::new(50, "60/min".parse().unwrap()).unwrap();
    println!(
        "process RSS at start: {:.1} MiB",
        rss_bytes() as f64 / 1048576.0
    );

    // 1. One rate cell per identity.
    let (heap0, rss0) = (HEAP.load(Ordering::Relaxed), rss_bytes());
    let m = MemoryBackend::new();
    let t0 = Instant::now();
    for i in 0..n {
        let d = m.check_rate(&scope(i), &Class::Tool("search"), &slow);
        assert!(d.allowed);
    }
    report(
        "one rate cell per identity",
        n,
        heap0,
        rss0,
        &m,
        t0.elapsed(),
    );
    drop(m);

    // 2. A default tool call: tool cell, loop-brake cell, daily counter, in-flight slot.
    let (heap0, rss0) = (HEAP.load(Ordering::Relaxed), rss_bytes());
    let m = Arc::new(MemoryBackend::new());
    let brake = LoopBrake {
        max_repeats: 10,
        window: Duration::from_secs(60),
        strike_decay: Duration::from_secs(60),
        max_multiplier: 16,
    };
    let rates = [RateCheck {
        class: Class::Tool("search"),
        quota: slow,
    }];
    let t0 = Instant::now();
    for i in 0..n {
        let s = scope(i);
        let check = Check {
            scope: &s,
            rates: &rates,
            loop_brake: Some(LoopCheck {
                tool: "search",
                args_hash: [1; 32],
                brake,
            }),
            daily_cap: Some(10_000),
            concurrency: Some(ConcurrencyCheck {
                max: 16,
                lease: Duration::from_secs(900),
            }),
        };
        let o = m.check_now(&check).expect("check");
        assert!(o.allowed);
        if let Some(l) = o.lease {
            m.release(l);
        }
    }
    report(
        "a default tool call per identity (rate + loop brake + daily + in-flight)",
        n,
        heap0,
        rss0,
        &m,
        t0.elapsed(),
    );
}
