//! Robots: crawlers and headless browsers are not visitors.

pub struct BotDetector {}

impl BotDetector {
    pub fn new() -> Self {
        todo!()
    }

    /// True for a known crawler or headless user agent, and for a missing or empty one.
    pub fn is_bot(&self, user_agent: Option<&str>) -> bool {
        let _ = user_agent;
        todo!()
    }
}
