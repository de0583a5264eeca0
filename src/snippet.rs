//! The one monitoring code injected into pages: `_smid`, the `sm(...)` command queue (the same
//! shape as the vendor's loader, so existing `sm('...')` calls keep working) and the loader of
//! the first-party tracker.

/// The rendered snippet for one configuration.
#[derive(Debug, Clone)]
pub struct Snippet {
    body: String,
    plain: String,
}

impl Snippet {
    /// `client_id` and `tracker_src` are validated by the configuration (`[A-Za-z0-9_-]` and
    /// `[A-Za-z0-9/._~-]`), so they need no escaping inside the JavaScript string literals.
    pub fn new(client_id: &str, tracker_src: &str) -> Self {
        // The loader copies this script's nonce to the tracker's <script>, so a nonce-based CSP
        // that allows the snippet also allows the tracker it loads. No `&` or `<` in the code:
        // an XHTML page parsed as XML would reject them.
        let body = format!(
            "var _smid='{client_id}';(function(w,r,a,sm,s){{w['SalesmanagoObject']=r;\
w[r]=w[r]||function(){{(w[r].q=w[r].q||[]).push(arguments)}};\
sm=document.createElement('script');sm.type='text/javascript';sm.async=true;sm.src=a;\
s=document.currentScript;if(s){{if(s.nonce){{sm.nonce=s.nonce}}}}\
s=document.getElementsByTagName('script')[0];s.parentNode.insertBefore(sm,s);\
}})(window,'sm','{tracker_src}');"
        );
        let plain = format!("<script>{body}</script>");
        Snippet { body, plain }
    }

    /// The `<script>` element without a nonce.
    pub fn html(&self) -> &str {
        &self.plain
    }

    /// The `<script>` element carrying the page's CSP nonce. `nonce` must come from
    /// [`crate::inject::csp::script_nonce`], which only returns base64 characters.
    pub fn html_with_nonce(&self, nonce: &str) -> String {
        format!("<script nonce=\"{nonce}\">{}</script>", self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_smid_and_loads_the_first_party_tracker() {
        let s = Snippet::new("abc123", "/_sm/sm.js");
        assert!(s.html().starts_with("<script>var _smid='abc123';"));
        assert!(s.html().contains("'SalesmanagoObject'"));
        assert!(s.html().contains("'/_sm/sm.js'"));
        assert!(s.html().ends_with("</script>"));
        assert_eq!(s.html().matches("<script").count(), 1);
        assert!(s
            .html_with_nonce("n0nce")
            .starts_with("<script nonce=\"n0nce\">var _smid"));
    }
}
