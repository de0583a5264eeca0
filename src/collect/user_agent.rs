//! What a `User-Agent` says about the client (robot or not; browser, OS and device for the
//! reports), worked out once per distinct string and remembered in a small bounded cache.
//!
//! Why a cache: the robot check runs the `isbot` crate's large regular expression and the
//! details come from `woothee`'s parser, together about a tenth of a beacon's CPU time, while
//! real traffic repeats a few hundred distinct agents (every visitor of a browser version
//! sends the same string). The answer depends on the string alone, so a cached verdict is
//! exactly what parsing again would give.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::bots::BotDetector;

/// Distinct agents remembered at once. When full the cache starts over: simpler than an LRU
/// and as good for this traffic (a few hundred live strings, so a reset is rare and refills
/// at once), and it bounds the memory of a client sending random agents to about
/// `CAPACITY × MAX_CACHED_LEN`, 2 MiB.
const CAPACITY: usize = 4096;

/// Longer agents (real browsers send 100–300 bytes) are parsed every time and not kept.
const MAX_CACHED_LEN: usize = 512;

/// The verdict on one user agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentInfo {
    /// A known crawler, HTTP library or headless browser, or no agent at all.
    pub bot: bool,
    /// Browser name, OS and device category, when `woothee` recognises the string.
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device: Option<String>,
}

impl AgentInfo {
    fn parse(bots: &BotDetector, user_agent: &str) -> AgentInfo {
        let mut info = AgentInfo {
            bot: bots.is_bot(Some(user_agent)),
            ..AgentInfo::default()
        };
        if let Some(ua) = woothee::parser::Parser::new().parse(user_agent) {
            info.browser = Some(ua.name.to_string());
            info.os = Some(ua.os.to_string());
            info.device = Some(ua.category.to_string());
        }
        info
    }
}

/// Answers [`AgentInfo`] for user agents, shared by all proxy threads.
pub struct UserAgents {
    bots: BotDetector,
    cache: Mutex<HashMap<Box<str>, Arc<AgentInfo>>>,
    /// The answer for a request without a `User-Agent` (a robot, per [`BotDetector::is_bot`]).
    missing: Arc<AgentInfo>,
}

impl UserAgents {
    pub fn new() -> Self {
        UserAgents {
            bots: BotDetector::new(),
            cache: Mutex::new(HashMap::new()),
            missing: Arc::new(AgentInfo {
                bot: true,
                ..AgentInfo::default()
            }),
        }
    }

    /// The verdict on `user_agent`: from the cache, or parsed (and kept, if short enough).
    pub fn lookup(&self, user_agent: Option<&str>) -> Arc<AgentInfo> {
        let Some(ua) = user_agent else {
            return self.missing.clone();
        };
        if ua.len() > MAX_CACHED_LEN {
            return Arc::new(AgentInfo::parse(&self.bots, ua));
        }
        if let Some(hit) = self.lock().get(ua) {
            return hit.clone();
        }
        // Parsed outside the lock: other threads keep answering meanwhile. Two threads may
        // parse the same new agent at once; both get the same answer.
        let info = Arc::new(AgentInfo::parse(&self.bots, ua));
        let mut cache = self.lock();
        if cache.len() >= CAPACITY {
            cache.clear();
        }
        cache.insert(ua.into(), info.clone());
        info
    }

    /// True for a robot (see [`AgentInfo::bot`]).
    pub fn is_bot(&self, user_agent: Option<&str>) -> bool {
        self.lookup(user_agent).bot
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<AgentInfo>>> {
        // The map is valid whatever a panicking holder was doing: entries are only inserted
        // whole, and a lost entry is parsed again.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.lock().len()
    }
}

impl Default for UserAgents {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for UserAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgents").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) \
                          AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 \
                          Safari/604.1";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[test]
    fn verdicts_are_those_of_the_parsers() {
        let agents = UserAgents::new();
        let bots = BotDetector::new();
        for ua in [CHROME, IPHONE, GOOGLEBOT, "curl/8.5.0", "x"] {
            let want = AgentInfo::parse(&bots, ua);
            // Twice: the parsed answer, then the cached one.
            assert_eq!(*agents.lookup(Some(ua)), want, "{ua}");
            assert_eq!(*agents.lookup(Some(ua)), want, "{ua} (cached)");
        }
        let chrome = agents.lookup(Some(CHROME));
        assert!(!chrome.bot);
        assert_eq!(chrome.browser.as_deref(), Some("Chrome"));
        assert_eq!(chrome.device.as_deref(), Some("pc"));
        assert_eq!(
            agents.lookup(Some(IPHONE)).device.as_deref(),
            Some("smartphone")
        );
        assert!(agents.is_bot(Some(GOOGLEBOT)));
    }

    #[test]
    fn a_missing_or_blank_agent_is_a_robot() {
        let agents = UserAgents::new();
        let none = agents.lookup(None);
        assert!(none.bot);
        assert_eq!(none.browser, None);
        assert_eq!(agents.cached(), 0);
        let bots = BotDetector::new();
        for ua in ["", " \t "] {
            let info = agents.lookup(Some(ua));
            assert!(info.bot, "{ua:?}");
            // woothee's answer for an empty agent ("UNKNOWN"), as before the cache.
            assert_eq!(*info, AgentInfo::parse(&bots, ua), "{ua:?}");
        }
    }

    #[test]
    fn the_cache_stays_bounded() {
        let agents = UserAgents::new();
        for i in 0..CAPACITY + 10 {
            agents.lookup(Some(&format!("{CHROME} build/{i}")));
        }
        assert!((1..=CAPACITY).contains(&agents.cached()));
        // An agent too long to keep is still answered, and not kept.
        let before = agents.cached();
        let long = format!("{CHROME} {}", "x".repeat(MAX_CACHED_LEN));
        assert_eq!(
            agents.lookup(Some(&long)).browser.as_deref(),
            Some("Chrome")
        );
        assert_eq!(agents.cached(), before);
    }
}
