//! TLS: one certificate for every TLS listener (HTTPS, HTTP/3, RTMPS, the social API over
//! TLS), reloaded without dropping a connection.
//!
//! rustls only, with the `ring` provider; TLS 1.3 and 1.2 on TCP, TLS 1.3 on QUIC. Every
//! listener's `rustls::ServerConfig` asks the one [`CertStore`] for the certificate at each
//! handshake, so a reload (SIGHUP, or the files changing on disk) is seen by the next handshake
//! while established connections keep the keys they negotiated. A new pair that does not load,
//! or whose key does not match its certificate, is refused with one log line and the old pair
//! keeps serving.
//!
//! [`self_signed`] makes a certificate for local testing (`zerocast cert --self-signed`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;

/// ALPN of the HTTPS media port: HTTP/2 first, then HTTP/1.1.
pub const ALPN_HTTPS: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN of HTTP/3.
pub const ALPN_H3: &[&[u8]] = &[b"h3"];
/// ALPN of the social API over TLS (axum serves HTTP/1.1; WebSocket upgrades need it).
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the expected kind.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// rustls refused the pair (unsupported key type, key not matching the certificate, ...).
    #[error("certificate {cert} with key {key}: {source}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// Generating a self-signed certificate failed.
    #[error("generating a certificate: {0}")]
    Generate(String),
}

/// The certificate every TLS listener serves, swapped in place on reload.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification stamps of the two files when they were last loaded (or found bad).
    stamp: Mutex<Option<(Stamp, Stamp)>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// What identifies a version of a file: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl CertStore {
    /// Loads the pair; an error here stops the server from starting.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = (stamp(cert), stamp(key));
        let pair = load_pair(cert, key, &provider)?;
        Ok(Arc::new(Self {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(pair)),
            stamp: Mutex::new(Some(stamps)),
        }))
    }

    /// Loads the files again and serves the new pair from the next handshake on. On error the
    /// current pair stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = (stamp(&self.cert_path), stamp(&self.key_path));
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = Some(stamps);
        let pair = load_pair(&self.cert_path, &self.key_path, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
        Ok(())
    }

    /// Reloads when either file changed since the last load (or the last failed attempt, so a
    /// bad pair is reported once, not at every poll). `None` when nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let now = (stamp(&self.cert_path), stamp(&self.key_path));
        let last = *self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if last == Some(now) {
            return None;
        }
        Some(self.reload())
    }

    /// The DER of the leaf certificate being served now.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current_key().cert.first().cloned()
    }

    fn current_key(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A TCP server configuration (TLS 1.3 and 1.2) offering `alpn`.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let mut c = self.builder(&[&rustls::version::TLS13, &rustls::version::TLS12]);
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }

    /// The QUIC server configuration (TLS 1.3 only, ALPN `h3`, no 0-RTT).
    pub fn quic_config(
        self: &Arc<Self>,
    ) -> Result<quinn::crypto::rustls::QuicServerConfig, String> {
        let mut c = self.builder(&[&rustls::version::TLS13]);
        c.alpn_protocols = ALPN_H3.iter().map(|p| p.to_vec()).collect();
        c.max_early_data_size = 0;
        quinn::crypto::rustls::QuicServerConfig::try_from(c).map_err(|e| e.to_string())
    }

    fn builder(
        self: &Arc<Self>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> ServerConfig {
        // The ring provider supports both versions, so `with_protocol_versions` cannot fail;
        // fall back to the safe defaults rather than panic if a future rustls disagrees.
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)
            .unwrap_or_else(|_| {
                ServerConfig::builder_with_provider(self.provider.clone())
                    .with_safe_default_protocol_versions()
                    .unwrap_or_else(|_| ServerConfig::builder())
            });
        builder
            .with_no_client_auth()
            .with_cert_resolver(self.clone())
    }

    /// Watches the files from a thread of its own: every `every`, a changed pair is reloaded
    /// and the outcome logged once.
    pub fn watch(self: &Arc<Self>, every: Duration) -> std::io::Result<()> {
        let store = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("zerocast-tls-watch".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(store) = store.upgrade() else { return };
                if let Some(r) = store.reload_if_changed() {
                    store.log_reload("file change", r);
                }
            })
            .map(drop)
    }

    /// Logs the outcome of a reload: one line either way.
    pub fn log_reload(&self, why: &str, r: Result<(), TlsError>) {
        match r {
            Ok(()) => {
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded ({why})")
            }
            Err(e) => {
                tracing::error!("TLS certificate reload ({why}) refused, the previous certificate keeps serving: {e}")
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current_key())
    }
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let file_err = |path: &Path, message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no CERTIFICATE in the file".into()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
    let pair_err = |source| TlsError::Pair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(pair_err)?;
    let pair = CertifiedKey::new(chain, signing);
    // A key that does not belong to the certificate would fail every handshake: refuse it here.
    pair.keys_match().map_err(pair_err)?;
    Ok(pair)
}

/// A self-signed certificate for local testing.
#[derive(Debug)]
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes.
    pub spki_sha256: String,
}

/// A certificate valid for `hosts` (names or IP addresses), plus `localhost` and `127.0.0.1`.
pub fn self_signed(hosts: &[String]) -> Result<SelfSigned, TlsError> {
    let mut names: Vec<String> = hosts.to_vec();
    for extra in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_owned());
        }
    }
    let gen =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&gen.signing_key);
    Ok(SelfSigned {
        cert_pem: gen.cert.pem(),
        key_pem: gen.signing_key.serialize_pem(),
        spki_sha256: base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&spki)),
    })
}

/// Writes a self-signed pair as `DIR/cert.pem` and `DIR/key.pem` (the key readable by its
/// owner only); returns the two paths.
pub fn write_self_signed(dir: &Path, pair: &SelfSigned) -> std::io::Result<(PathBuf, PathBuf)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &pair.cert_pem)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key)?;
    f.write_all(pair.key_pem.as_bytes())?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "zerocast-tls-{tag}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn loads_reloads_and_refuses_a_bad_pair() {
        let dir = temp_dir("reload");
        let first = self_signed(&["a.test".into()]).unwrap();
        let (cert, key) = write_self_signed(&dir, &first).unwrap();
        let store = CertStore::load(&cert, &key).unwrap();
        let leaf1 = store.leaf().unwrap();
        assert!(store.reload_if_changed().is_none(), "nothing changed yet");

        // A key that belongs to another certificate is refused; the old pair keeps serving.
        let second = self_signed(&["b.test".into()]).unwrap();
        std::fs::write(&cert, &second.cert_pem).unwrap();
        let err = store.reload().unwrap_err();
        assert!(matches!(err, TlsError::Pair { .. }), "{err}");
        assert_eq!(store.leaf().unwrap(), leaf1);
        // ... and is not retried until a file changes again.
        assert!(store.reload_if_changed().is_none());

        // Garbage is refused too.
        std::fs::write(&key, "not a key").unwrap();
        assert!(matches!(store.reload(), Err(TlsError::File { .. })));
        assert_eq!(store.leaf().unwrap(), leaf1);

        // The matching key completes the swap.
        write_self_signed(&dir, &second).unwrap();
        store.reload().unwrap();
        assert_ne!(store.leaf().unwrap(), leaf1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_missing_files_at_start() {
        let dir = temp_dir("missing");
        let err = CertStore::load(&dir.join("nope.pem"), &dir.join("nope.key")).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn spki_hash_is_base64_sha256() {
        let s = self_signed(&["x.test".into()]).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&s.spki_sha256)
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert!(s.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(s.key_pem.contains("PRIVATE KEY"));
    }
}
