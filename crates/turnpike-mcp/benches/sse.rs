//! SSE parsing cost per megabyte: one `tools/call` result event of 1 to 64 MiB, delivered in
//! 16 KiB chunks (as a proxy receives it), parsed with `SseParser::next_event` after every
//! chunk. Linear parsing shows the same time per MiB at every size.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use turnpike_mcp::sse::SseParser;

const CHUNK: usize = 16 * 1024;
const MIB: usize = 1024 * 1024;

/// One SSE event of exactly `size` bytes: a JSON-RPC result with one long text.
fn event(size: usize) -> Vec<u8> {
    let head = br#"event: message
data: {"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":""#;
    let tail = b"\"}]}}\n\n";
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(head);
    out.resize(size - tail.len(), b'x');
    out.extend_from_slice(tail);
    out
}

fn parse(stream: &[u8]) -> usize {
    let mut p = SseParser::new();
    let mut n = 0;
    for chunk in stream.chunks(CHUNK) {
        p.push(chunk);
        while let Some(ev) = p.next_event() {
            n += ev.data.map_or(0, |d| d.len());
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sse_one_event_16KiB_chunks");
    g.sample_size(10);
    for mib in [1usize, 4, 16, 64] {
        let stream = event(mib * MIB);
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{mib}MiB")),
            &stream,
            |b, s| b.iter(|| black_box(parse(black_box(s)))),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
