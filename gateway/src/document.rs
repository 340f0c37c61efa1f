//! The documents the gateway serves itself: `/bp.json` and `/chains.json`, read from the files
//! the policy names.
//!
//! Each must be one JSON object of at most 64 KiB; a document that fails to load stops the
//! gateway from starting or a reload from applying, so a typo never replaces a served file
//! with an error. Served bytes are exactly the file's bytes.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::policy::Documents;

#[cfg(test)]
mod tests;

/// Largest document served.
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024;

/// Why a document could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The file could not be read.
    #[error("document {file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is too large.
    #[error("document {file} is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge {
        /// The file.
        file: PathBuf,
    },
    /// The file is not one JSON object.
    #[error("document {file} must hold one JSON object: {reason}")]
    Json {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The loaded documents.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// `/bp.json`.
    pub bp_json: Option<Bytes>,
    /// `/chains.json`.
    pub chains_json: Option<Bytes>,
}

impl Loaded {
    /// Loads every configured document.
    pub fn load(docs: &Documents) -> Result<Loaded, DocumentError> {
        Ok(Loaded {
            bp_json: docs.bp_json.as_deref().map(load_one).transpose()?,
            chains_json: docs.chains_json.as_deref().map(load_one).transpose()?,
        })
    }

    /// The document served at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Bytes> {
        match path {
            "/bp.json" => self.bp_json.as_ref(),
            "/chains.json" => self.chains_json.as_ref(),
            _ => None,
        }
    }
}

fn load_one(file: &Path) -> Result<Bytes, DocumentError> {
    let read_err = |source| DocumentError::Read { file: file.to_path_buf(), source };
    let len = std::fs::metadata(file).map_err(read_err)?.len();
    if len > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge { file: file.to_path_buf() });
    }
    let bytes = std::fs::read(file).map_err(read_err)?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge { file: file.to_path_buf() });
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(_)) => Ok(Bytes::from(bytes)),
        Ok(_) => Err(DocumentError::Json {
            file: file.to_path_buf(),
            reason: "the top level is not an object".into(),
        }),
        Err(e) => Err(DocumentError::Json { file: file.to_path_buf(), reason: e.to_string() }),
    }
}
