//! The collect payload: `parse_body` on any bytes (the content type chosen by the length),
//! and `parse_query` / `check_origin` on the same bytes as text. An accepted beacon is clean;
//! a refusal is a 4xx; never a panic.
#![no_main]

#[path = "../../tests/checks/mod.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::beacon_body_contract(data, data.len());
    let text = String::from_utf8_lossy(data);
    let (query, referer) = match text.split_once('\n') {
        Some((q, r)) => (q, Some(r)),
        None => (text.as_ref(), None),
    };
    checks::beacon_query_contract(query, referer);
});
