//! TLS termination: the rustls server configuration, certificates chosen by SNI, and their
//! reload from PEM files.
//!
//! Only TLS 1.2 and 1.3 with forward-secret AEAD suites (ECDHE with AES-GCM or
//! ChaCha20-Poly1305) are offered, with ALPN `h2` and `http/1.1` and session resumption by
//! tickets and by a stateful cache. A certificate set that fails to load never replaces the one
//! in service: the gateway keeps its old certificates and says why. This module never logs or
//! copies private key bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, cipher_suite};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

use crate::policy::Tls;

#[cfg(test)]
mod tests;

/// Why certificates or the TLS configuration could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate file could not be read or holds no certificate.
    #[error("certificate file {file}: {reason}; it must hold a PEM chain, leaf first")]
    Certificate {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A key file could not be read or holds no usable key.
    #[error("key file {file}: {reason}; it must hold one PEM private key (PKCS#8, SEC1 or PKCS#1)")]
    Key {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error(
        "key file {key} does not match certificate {cert}: install the key issued with that certificate"
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
    /// The placeholder of an ACME certificate could not be written.
    #[error("ACME certificate placeholder: {0}")]
    Acme(String),
}

/// The crypto provider: aws-lc-rs restricted to forward-secret AEAD suites.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = aws_lc_rs::default_provider();
    // AES-128-GCM first, as Mozilla's intermediate profile and HAProxy's usual suite list
    // order them: as safe as AES-256 at a lower cost per record. The server's order wins
    // (`ignore_client_order`).
    p.cipher_suites = vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// Loads one chain and its key, and checks that they belong together.
pub fn load_certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_err = |reason: String| TlsError::Certificate { file: cert.to_path_buf(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key { file: key.to_path_buf(), reason: e.to_string() })?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsError::Key { file: key.to_path_buf(), reason: e.to_string() })?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::Mismatch { cert: cert.to_path_buf(), key: key.to_path_buf() });
        }
        Err(e) => return Err(cert_err(e.to_string())),
    }
    Ok(Arc::new(ck))
}

/// The certificates in service, by server name.
#[derive(Debug)]
pub struct CertStore {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Each certificate's first server name and the end of its leaf's validity (`None`: not
    /// found in the certificate).
    expiries: Vec<(String, Option<SystemTime>)>,
}

impl CertStore {
    /// Loads every certificate of the TLS section; fails if any one fails.
    pub fn load(provider: &CryptoProvider, tls: &Tls) -> Result<CertStore, TlsError> {
        let mut default = None;
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut expiries = Vec::new();
        for c in &tls.certificates {
            let ck = load_certified_key(provider, &c.cert, &c.key)?;
            let name = c.server_names.first().cloned().unwrap_or_default();
            expiries.push((name, ck.cert.first().and_then(|leaf| crate::acme::not_after(leaf))));
            default.get_or_insert_with(|| ck.clone());
            for name in &c.server_names {
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.insert(suffix.to_owned(), ck.clone()),
                    None => exact.insert(name.clone(), ck.clone()),
                };
            }
        }
        let default = default.ok_or_else(|| TlsError::Certificate {
            file: PathBuf::new(),
            reason: "no certificate configured".into(),
        })?;
        Ok(CertStore { default, exact, wildcard, expiries })
    }

    /// Each certificate's first server name and the end of its validity.
    pub fn expiries(&self) -> &[(String, Option<SystemTime>)] {
        &self.expiries
    }

    /// The certificate for a server name (SNI), or the default one.
    pub fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        if let Some(ck) = self.exact.get(&name) {
            return ck.clone();
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(ck) = self.wildcard.get(parent)
        {
            return ck.clone();
        }
        self.default.clone()
    }
}

/// A [`ResolvesServerCert`] whose certificates can be swapped while connections are served.
#[derive(Debug)]
pub struct CertResolver {
    store: ArcSwap<CertStore>,
}

impl CertResolver {
    /// A resolver serving `store`.
    pub fn new(store: CertStore) -> Self {
        CertResolver { store: ArcSwap::from_pointee(store) }
    }

    /// Puts a new certificate set in service; handshakes already started keep the old one.
    pub fn replace(&self, store: CertStore) {
        self.store.store(Arc::new(store));
    }

    /// The certificate that a client naming `server_name` would get.
    pub fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        self.store.load().pick(server_name)
    }

    /// The certificates in service: each one's first server name and the end of its validity.
    pub fn expiries(&self) -> Vec<(String, Option<SystemTime>)> {
        self.store.load().expiries().to_vec()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()))
    }
}

/// The server configuration: TLS 1.3 and 1.2, ALPN h2 then http/1.1, tickets and a session
/// cache, certificates from `resolver`.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    tls: &Tls,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(tls.session_cache_entries);
    config.ticketer = aws_lc_rs::Ticketer::new()?;
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Modification times of the certificate and key files, to notice when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamps(Vec<(PathBuf, Option<SystemTime>, Option<u64>)>);

impl FileStamps {
    /// Current modification time and length of every file of the TLS section.
    pub fn of(tls: &Tls) -> Self {
        let stamp = |p: &Path| {
            let m = std::fs::metadata(p).ok();
            (p.to_path_buf(), m.as_ref().and_then(|m| m.modified().ok()), m.map(|m| m.len()))
        };
        FileStamps(tls.certificates.iter().flat_map(|c| [stamp(&c.cert), stamp(&c.key)]).collect())
    }
}
