//! The script nonce of a page's `Content-Security-Policy`, so that the injected script is
//! allowed where the page's own scripts are.

/// The nonce of the first `'nonce-...'` source in `script-src-elem`, `script-src` or
/// `default-src` (the directive a browser would apply to an inline script). Only base64 and
/// base64url characters are accepted, so the value can be put in an attribute as is.
pub fn script_nonce<'a>(policies: impl IntoIterator<Item = &'a str>) -> Option<String> {
    for policy in policies {
        let mut fallback = None;
        for name in ["script-src-elem", "script-src", "default-src"] {
            if let Some(sources) = directive(policy, name) {
                fallback = Some(sources);
                break;
            }
        }
        let Some(sources) = fallback else { continue };
        for src in sources.split_ascii_whitespace() {
            let Some(inner) = src
                .strip_prefix("'nonce-")
                .and_then(|s| s.strip_suffix('\''))
            else {
                continue;
            };
            let valid = !inner.is_empty()
                && inner.len() <= 256
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b));
            if valid {
                return Some(inner.to_string());
            }
        }
    }
    None
}

fn directive<'a>(policy: &'a str, name: &str) -> Option<&'a str> {
    policy.split(';').find_map(|d| {
        let d = d.trim();
        let (n, rest) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
        n.eq_ignore_ascii_case(name).then_some(rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_script_nonce() {
        assert_eq!(
            script_nonce([
                "default-src 'self'; script-src 'self' 'nonce-abc123=' 'strict-dynamic'"
            ]),
            Some("abc123=".into())
        );
        assert_eq!(
            script_nonce(["default-src 'nonce-xyz'"]),
            Some("xyz".into())
        );
        assert_eq!(script_nonce(["script-src 'self'"]), None);
        assert_eq!(script_nonce(["script-src 'nonce-a\"><x'"]), None);
        // script-src wins over default-src: its absence of a nonce means none applies.
        assert_eq!(
            script_nonce(["default-src 'nonce-x'; script-src 'self'"]),
            None
        );
        assert_eq!(
            script_nonce(["img-src *", "script-src 'nonce-two'"]),
            Some("two".into())
        );
    }
}
