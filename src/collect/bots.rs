//! Robots: crawlers and headless browsers are not visitors.
//!
//! The patterns are those of the `isbot` crate (crawlers, HTTP libraries, monitoring services,
//! headless browsers). They are compiled into one regular expression, so a detector is built
//! once at start-up and shared.

pub struct BotDetector {
    bots: isbot::Bots,
}

impl BotDetector {
    pub fn new() -> Self {
        BotDetector {
            bots: isbot::Bots::default(),
        }
    }

    /// True for a known crawler or headless user agent, and for a missing or empty one.
    ///
    /// Every real browser sends a `User-Agent`; its absence marks a script.
    pub fn is_bot(&self, user_agent: Option<&str>) -> bool {
        match user_agent.map(str::trim) {
            None | Some("") => true,
            Some(ua) => self.bots.is_bot(ua),
        }
    }
}

impl Default for BotDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for BotDetector {
    /// The compiled pattern is thousands of characters; it says nothing useful in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotDetector").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTS: &[&str] = &[
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; \
         +http://www.google.com/bot.html) Chrome/124.0.6367.201 Safari/537.36",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "curl/8.5.0",
        "python-requests/2.31.0",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
         HeadlessChrome/124.0.0.0 Safari/537.36",
    ];

    const BROWSERS: &[&str] = &[
        // Chrome, Windows
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/131.0.0.0 Safari/537.36",
        // Firefox, Linux
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        // Firefox, Windows
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        // Safari, macOS
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) \
         Version/18.1 Safari/605.1.15",
        // Safari, iPhone
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
         (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        // Chrome, Android
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/131.0.0.0 Mobile Safari/537.36",
    ];

    #[test]
    fn crawlers_and_tools_are_bots() {
        let d = BotDetector::new();
        for ua in BOTS {
            assert!(d.is_bot(Some(ua)), "{ua}");
        }
    }

    #[test]
    fn browsers_are_not_bots() {
        let d = BotDetector::default();
        for ua in BROWSERS {
            assert!(!d.is_bot(Some(ua)), "{ua}");
        }
    }

    #[test]
    fn missing_or_blank_user_agent_is_a_bot() {
        let d = BotDetector::new();
        assert!(d.is_bot(None));
        assert!(d.is_bot(Some("")));
        assert!(d.is_bot(Some(" \t ")));
    }

    #[test]
    fn shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<BotDetector>();
    }
}
