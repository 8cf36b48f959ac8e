//! TLS for the HTTPS viewers: which certificates to trust, and the rustls client
//! configurations (TCP with ALPN `http/1.1` or `h2`, QUIC with `h3`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

/// ALPN of HTTP/1.1 over TLS.
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN of HTTP/2.
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// ALPN of HTTP/3.
pub(crate) const ALPN_H3: &[u8] = b"h3";

/// Where the trust in the server's certificate comes from.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    /// The system's CA bundle (`SSL_CERT_FILE`, or the usual paths).
    System,
    /// The certificates in this PEM file (e.g. the server's self-signed certificate).
    CaFile(PathBuf),
    /// Any certificate (`--insecure`).
    Insecure,
}

/// Bundles tried, in order, for [`Trust::System`] when `SSL_CERT_FILE` is not set.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A rustls client configuration offering `alpn`; TLS 1.3 only when `quic`.
pub(crate) fn client_config(
    trust: &Trust,
    alpn: &[u8],
    quic: bool,
) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if quic {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .context("TLS protocol versions")?;
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
        Trust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading {}", path.display()))?;
            for cert in certs {
                let cert = cert.with_context(|| format!("parsing {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("a certificate in {}", path.display()))?;
            }
            if roots.is_empty() {
                bail!("{} holds no PEM certificate", path.display());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::System => builder
            .with_root_certificates(system_roots())
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// The system's CA certificates; an empty store when there is no bundle (every certificate
/// is then refused, with the hint of [`hint`]).
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let path = env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from));
    for p in path {
        if let Ok(certs) = CertificateDer::pem_file_iter(&p) {
            // A bundle may hold a certificate rustls cannot use; skip it, keep the rest.
            let (_added, _ignored) = roots.add_parsable_certificates(certs.flatten());
            if !roots.is_empty() {
                break;
            }
        }
    }
    roots
}

/// The server name to verify against: the URL's host (an IP address or a DNS name).
pub(crate) fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).with_context(|| format!("{host:?} is no server name"))
}

/// `detail` with advice when it is a certificate the client does not trust.
pub(crate) fn hint(detail: String) -> String {
    if detail.contains("certificate") {
        format!(
            "{detail} (the server's certificate is not trusted: pass --cafile FILE with it, \
             or --insecure to accept any certificate)"
        )
    } else {
        detail
    }
}

/// Accepts any certificate and any handshake signature (`--insecure`).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn names_and_hints() {
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("example.com").is_ok());
        assert!(hint("invalid peer certificate: UnknownIssuer".into()).contains("--insecure"));
        assert_eq!(hint("reset".into()), "reset");
    }

    /// A TLS server on 127.0.0.1 with a fresh self-signed certificate, offering `alpn`, that
    /// answers every HTTP/1.1 request head with `hello`. Returns its address and the PEM file
    /// of its certificate (in a directory the caller removes).
    pub(crate) fn tls_server(alpn: &'static [u8]) -> (SocketAddr, PathBuf) {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let dir = std::env::temp_dir().join(format!("zerocast-load-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("cert.pem");
        std::fs::write(&pem, key.cert.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![key.cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der())),
            )
            .unwrap();
        config.alpn_protocols = vec![alpn.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let mut req = Vec::new();
                        loop {
                            let mut b = [0u8; 1024];
                            match tls.read(&mut b).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => req.extend_from_slice(&b[..n]),
                            }
                            while let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                                req.drain(..end + 4);
                                let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
                                if tls.write_all(resp).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            });
        });
        (addr, pem)
    }

    #[test]
    fn builds_configs() {
        let c = client_config(&Trust::Insecure, ALPN_H2, false).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(client_config(&Trust::System, ALPN_H3, true).is_ok());
        let missing = Trust::CaFile("/nonexistent/ca.pem".into());
        assert!(client_config(&missing, ALPN_HTTP1, false).is_err());
    }
}
