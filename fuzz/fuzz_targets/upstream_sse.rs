//! What a (possibly compromised) upstream sends back: the SSE framing the gateway reads to find
//! and annotate `tools/list` results (`turnpike_mcp::sse::SseParser`), in chunks split at
//! fuzzer-chosen places, and `annotate_tools_list` on the JSON it finds.
//!
//! The parser must give back every byte it was given: events' raw bytes plus the unfinished
//! tail equal the stream, whatever the chunking (the gateway relays what it does not rewrite).
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike_mcp::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for chunk in stream.chunks(step) {
        p.push(chunk);
        while let Some(ev) = p.next_event() {
            if let Some(d) = ev.data.as_deref() {
                if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(d) {
                    turnpike_mcp::annotate_tools_list(&mut v, &|name: &str| {
                        serde_json::json!({"free": name.is_empty(), "offers": []})
                    });
                }
            }
            out.extend_from_slice(&ev.raw);
        }
    }
    out.extend_from_slice(&p.finish());
    assert_eq!(out, stream, "the SSE parser lost or invented bytes");
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(stream) {
        turnpike_mcp::annotate_tools_list(&mut v, &|_: &str| serde_json::json!({"free": true}));
    }
});
