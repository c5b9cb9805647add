//! TLS for `mp signal` and its clients, with rustls.
//!
//! The server serves `wss://` and `https://` itself when given a certificate chain and its
//! key in PEM files (`--tls-cert`, `--tls-key`). Clients check a server's certificate against
//! the public web CAs (webpki roots) and, when given `--signal-ca` / `MP_SIGNAL_CA`, the
//! certificates of that PEM file too (a private CA, or a self-signed server certificate).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::{fail, Kind};

/// The first byte of a TLS record that starts a handshake (RFC 8446 §5.1, `handshake(22)`).
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain-HTTP request on a TLS port hears, in a plain-HTTP answer.
pub const TLS_ONLY: &str = "this server speaks TLS only: use wss:// (or https:// for the page)";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        fail(
            Kind::LocalIo,
            format!("cannot read the {what} {}: {e}", path.display()),
        )
    })
}

/// The certificates in the PEM file at `path` (at least one), for `what` (in messages).
fn certificates(what: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            fail(
                Kind::Usage,
                format!("the {what} {} is not valid PEM: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(fail(
            Kind::Usage,
            format!(
                "the {what} {} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// The server's TLS settings from a PEM certificate chain (the server's first) and its PEM
/// private key (PKCS #8, PKCS #1 or SEC1). HTTP/1.1 only: WebSockets upgrade from it.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = certificates("TLS certificate", cert)?;
    let pem = read("TLS key", key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        fail(
            Kind::Usage,
            format!(
                "the TLS key {} holds no private key in PEM ({e})",
                key.display()
            ),
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(Kind::Internal, format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            fail(
                Kind::Usage,
                format!(
                    "the TLS key {} does not fit the certificate {}: {e}",
                    key.display(),
                    cert.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client settings every `wss://` connection uses, once [`trust`] was called.
static CLIENT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Makes clients trust the certificates in the PEM file at `ca` as roots, besides the public
/// web CAs, and a server that presents one of them itself as it is (a self-signed certificate,
/// even one marked as a CA, as `openssl req -x509` makes them). Called once, before connecting
/// (`--signal-ca`).
pub fn trust(ca: &Path) -> anyhow::Result<()> {
    let pinned = certificates("CA file", ca)?;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // A certificate that cannot be a root may still be pinned.
    roots.add_parsable_certificates(pinned.iter().cloned());
    let roots =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| fail(Kind::Internal, format!("TLS: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(Kind::Internal, format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { roots, pinned }))
        .with_no_client_auth();
    let _ = CLIENT.set(Arc::new(config));
    Ok(())
}

/// The public web CAs and the roots of `--signal-ca`; and any certificate of that file, when
/// the server presents it itself, whatever its name, dates or constraints: it was given as
/// the very certificate to trust (a pin), and the TLS handshake still proves the server holds
/// its key.
#[derive(Debug)]
struct Pinned {
    roots: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        self.roots
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.roots.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.roots.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.roots.supported_verify_schemes()
    }
}

/// The client settings [`trust`] made, if it was called.
pub fn client_config() -> Option<Arc<rustls::ClientConfig>> {
    CLIENT.get().cloned()
}

/// A server connection: plain TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
