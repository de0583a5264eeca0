//! Cookie and link-token verification: any text as an `smclient`/`smids`/`_smx`/`smlink` token
//! is refused or is exactly the issuer's own token; any bytes as a `Cookie` header give an
//! identity only from verified tokens and clean `Set-Cookie` values; a genuine token with one
//! change is refused. Never a panic.
#![no_main]

#[path = "../../tests/checks/mod.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = 1_760_000_000;
    let text = String::from_utf8_lossy(data);
    checks::token_contract(&text, now);
    let (host, cookie) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => ("www.shop.example.com".to_string(), data),
    };
    checks::cookie_header_contract(cookie, &host);
    checks::set_cookie_contract(&text, &host);
    if data.len() >= 21 {
        let mut contact = [0u8; 16];
        contact.copy_from_slice(&data[5..21]);
        checks::altered_token_is_refused(&data[..5], contact, now);
    }
});
