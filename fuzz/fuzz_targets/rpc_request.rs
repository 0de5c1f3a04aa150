//! The JSON-RPC endpoint's request parsing, as `swqos control` runs it: the HTTP head
//! (`control/src/rpc/server.rs` `parse_head`, over httparse) and, for a complete request, the
//! body's JSON-RPC call and its transaction parameter (`control/src/rpc/params.rs`: encoding,
//! length cap, decoding) and validation. Never panics; a refusal has a status and a reason; the
//! length cap holds before decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The endpoint's modules, included as they are (`params` refers to `super::answer`).
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../control/src/rpc/answer.rs"]
mod answer;
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../control/src/rpc/params.rs"]
mod params;
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../control/src/rpc/server.rs"]
mod server;

use params::{decode_tx, encoding, MAX_BASE58, MAX_BASE64};
use server::{parse_head, Limits};

const LIMITS: Limits = Limits {
    max_connections: 16,
    max_head: 16 * 1024,
    max_body: 1 << 20,
    body_budget: 1 << 22,
    request_deadline: std::time::Duration::from_secs(10),
    idle_timeout: std::time::Duration::from_secs(60),
    write_deadline: std::time::Duration::from_secs(10),
    work_deadline: std::time::Duration::from_secs(13),
};

fuzz_target!(|data: &[u8]| {
    let head = match parse_head(data, &LIMITS) {
        Ok(Some(head)) => head,
        Ok(None) => return assert!(data.len() <= LIMITS.max_head),
        Err(e) => return assert!((400..=431).contains(&e.0) && !e.1.is_empty()),
    };
    assert!(head.len <= LIMITS.max_head && head.body <= LIMITS.max_body);
    let body = &data[head.len.min(data.len())..];
    let Ok(call) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let params = call.get("params").unwrap_or(&serde_json::Value::Null);
    let (Some(text), Ok(enc)) = (params.get(0).and_then(|v| v.as_str()), encoding(params)) else {
        return;
    };
    match decode_tx(text, enc) {
        Ok(tx) => {
            assert!(text.len() <= MAX_BASE58.max(MAX_BASE64));
            let _ = swqos_wire::solana::Transaction::parse(&tx);
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
