//! The HTTPS listeners: rustls with the SNI resolver, HTTP/2 and HTTP/1.1 offered by ALPN.

use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;

use super::SniResolver;

/// TLS settings for one HTTPS listener.
pub fn settings(resolver: Arc<SniResolver>) -> anyhow::Result<TlsSettings> {
    // Paths stay empty: certificates come from the resolver, chosen per handshake.
    let mut tls = TlsSettings::intermediate("", "")?;
    tls.set_cert_resolver(resolver);
    tls.enable_h2();
    Ok(tls)
}
