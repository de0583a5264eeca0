//! The configuration loader on any text: loaded, or refused with every problem naming a field
//! path and a reason; never a panic.
#![no_main]

#[path = "../../tests/checks/mod.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        checks::config_contract(text);
    }
});
