//! Development certificates: a throw-away CA and a server certificate for `localhost`,
//! `127.0.0.1` and `::1`, written as PEM files for tests and `rempart up`.
//!
//! What this writes is for development only and must never be deployed: the server key is
//! written in the clear next to the certificates, and the CA key is thrown away after signing.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// Why the development certificates could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevCertError {
    /// Key or certificate generation failed.
    #[error("cannot generate the development certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {file}: {source}; check that the directory exists and is writable")]
    Write {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The files written by [`write_dev_certs`].
#[derive(Debug, Clone)]
pub struct DevCertFiles {
    /// The CA certificate clients trust (`ca.pem`).
    pub ca: PathBuf,
    /// The server chain (`server.pem`).
    pub cert: PathBuf,
    /// The server key (`server.key`).
    pub key: PathBuf,
}

/// PEM text of a fresh development CA and a server certificate it signed, with the server key:
/// `(ca_pem, server_cert_pem, server_key_pem)`.
pub fn generate(names: &[&str]) -> Result<(String, String, String), DevCertError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "rempart development CA (never trust in production)");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "rempart development server");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

/// Writes `ca.pem`, `server.pem` and `server.key` for localhost into `out`.
pub fn write_dev_certs(out: &Path) -> Result<DevCertFiles, DevCertError> {
    let (ca, cert, key) = generate(&["localhost", "127.0.0.1", "::1"])?;
    let files = DevCertFiles {
        ca: out.join("ca.pem"),
        cert: out.join("server.pem"),
        key: out.join("server.key"),
    };
    for (file, text) in [(&files.ca, ca), (&files.cert, cert), (&files.key, key)] {
        std::fs::write(file, text)
            .map_err(|source| DevCertError::Write { file: file.clone(), source })?;
    }
    Ok(files)
}
