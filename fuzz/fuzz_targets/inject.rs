//! The injector on any bytes: the output is the input plus exactly one snippet, or the input
//! unchanged; the same at other chunk sizes; never a panic. The input is the page itself (so
//! real pages work as seeds); its length picks the options and the chunk sizes.
#![no_main]

#[path = "../../tests/checks/mod.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let n = data.len();
    let sizes = [1 + n % 7, 1 + n % 97, 1 + n % 1021, 4096];
    checks::injector_contract(data, &sizes, n / 7);
});
