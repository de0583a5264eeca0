//! TLS helpers for tests: a test CA issuing certificates (rcgen), written to PEM files, and
//! clients over rustls with a chosen SNI and ALPN (HTTP/1.1 raw, HTTP/2 with the h2 crate).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

use super::{parse_response, Resp};

/// A certificate authority for one test.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A certificate issued by the test CA, written to `<dir>/<tag>.crt` and `<tag>.key`.
pub struct IssuedCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "smproxy test CA");
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A leaf certificate for `names`, written to `dir`.
    pub fn issue(&self, dir: &Path, tag: &str, names: &[&str]) -> IssuedCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_path = dir.join(format!("{tag}.crt"));
        let key_path = dir.join(format!("{tag}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        IssuedCert {
            cert_path,
            key_path,
            der: cert.der().clone(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// A TLS connection to `addr` asking for `sni`, trusting only `ca`, offering `alpn`.
pub async fn connect(
    addr: &str,
    sni: &str,
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
}

/// The certificate the server presented, and the protocol ALPN chose.
pub fn negotiated(
    s: &TlsStream<tokio::net::TcpStream>,
) -> (Option<CertificateDer<'static>>, Option<Vec<u8>>) {
    let (_, conn) = s.get_ref();
    (
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned()),
        conn.alpn_protocol().map(<[u8]>::to_vec),
    )
}

/// `GET path` over HTTP/1.1 on a TLS connection (`Connection: close`).
pub async fn get_h1(mut s: TlsStream<tokio::net::TcpStream>, host: &str, path: &str) -> Resp {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A peer that closes without close_notify is still a complete response here.
    let _ = s.read_to_end(&mut raw).await;
    parse_response(&raw, false)
}

/// `GET https://host/path` over HTTP/2; returns status, headers and body.
pub async fn get_h2(
    s: TlsStream<tokio::net::TcpStream>,
    host: &str,
    path: &str,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let (mut client, conn) = h2::client::handshake(s).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::builder()
        .uri(format!("https://{host}{path}"))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).expect("send h2 request");
    let resp = resp.await.expect("h2 response");
    let (parts, mut body) = resp.into_parts();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("h2 body");
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (parts.status.as_u16(), parts.headers, out)
}
