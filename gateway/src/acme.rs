//! Certificates from an ACME CA (RFC 8555: Let's Encrypt, ZeroSSL, a private CA): obtained when
//! missing and renewed before they expire. The CA checks each name with an HTTP-01 challenge,
//! answered on the redirect listener (port 80).
//!
//! The files of the `[[tls.certificates]]` entry are written like any other certificate
//! update: the key first (mode 0600), then the chain, each through a temporary file and a
//! rename. The certificate watcher then loads them, or refuses a broken pair and keeps the
//! previous one. Until a first certificate is issued, a self-signed placeholder lets the
//! gateway start and answer the challenges. A failed attempt is logged and retried, from one
//! minute doubling to six hours, while the current certificate keeps serving.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::policy::{Acme, Certificate, Tls};
use crate::state::Shared;

#[cfg(test)]
mod tests;

/// The path prefix of HTTP-01 challenges.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";
/// How often certificates are checked when nothing is due sooner.
const CHECK_EVERY: Duration = Duration::from_secs(6 * 3600);
/// First wait after a failed attempt, doubled up to [`CHECK_EVERY`].
const RETRY_FIRST: Duration = Duration::from_secs(60);
/// How long the CA may take to validate, and to issue.
const CA_PATIENCE: Duration = Duration::from_secs(180);
/// Longest a whole order may take, account and both waits included.
const ORDER_DEADLINE: Duration = Duration::from_secs(600);
/// Validity of the placeholder: past at once for any `renew_days_before`.
const PLACEHOLDER_DAYS: u64 = 1;

/// Why an ACME step failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AcmeError(String);

fn fail(what: impl std::fmt::Display) -> AcmeError {
    AcmeError(what.to_string())
}

/// Key authorizations of the HTTP-01 challenges in progress, by token.
#[derive(Debug, Default)]
pub struct Challenges(Mutex<HashMap<String, String>>);

impl Challenges {
    /// The answer for `token`, if a challenge with it is in progress.
    pub fn answer(&self, token: &str) -> Option<String> {
        self.0.lock().ok()?.get(token).cloned()
    }

    fn put(&self, token: &str, key_authorization: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(token.to_owned(), key_authorization.to_owned());
        }
    }

    fn remove(&self, tokens: &[String]) {
        if let Ok(mut m) = self.0.lock() {
            for t in tokens {
                m.remove(t);
            }
        }
    }
}

/// Writes a self-signed placeholder for each ACME certificate of `tls` whose files do not
/// exist yet, so that the gateway starts, or a reload applies, before the CA has answered.
/// Returns how many were written.
pub fn placeholders(tls: &Tls) -> Result<usize, AcmeError> {
    let mut written = 0;
    for c in tls.certificates.iter().filter(|c| c.acme.is_some()) {
        if c.cert.exists() && c.key.exists() {
            continue;
        }
        let mut params = rcgen::CertificateParams::new(c.server_names.clone())
            .map_err(|e| fail(format!("placeholder for {:?}: {e}", c.server_names)))?;
        let now = rcgen::date_time_ymd(1970, 1, 1)
            + Duration::from_secs(unix_now().as_secs().saturating_sub(3600));
        params.not_before = now;
        params.not_after = now + Duration::from_secs(PLACEHOLDER_DAYS * 86_400);
        let key = rcgen::KeyPair::generate().map_err(fail)?;
        let cert = params.self_signed(&key).map_err(fail)?;
        write_file(&c.key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&c.cert, cert.pem().as_bytes(), 0o644)?;
        tracing::warn!(
            names = ?c.server_names,
            cert = %c.cert.display(),
            "no certificate yet for these names: serving a self-signed placeholder until the \
             ACME CA issues one"
        );
        written += 1;
    }
    Ok(written)
}

/// Keeps the ACME certificates of the policy in force, for as long as the gateway runs.
pub async fn maintain(shared: Arc<Shared>) {
    // Per certificate (by its names): failed orders in a row, and the earliest next attempt
    // (after a failure, or for a certificate that lives less than renew_days_before).
    let mut failures: HashMap<Vec<String>, u32> = HashMap::new();
    let mut not_before: HashMap<Vec<String>, Instant> = HashMap::new();
    loop {
        let rt = shared.runtime.load_full();
        let mut next = CHECK_EVERY;
        for c in &rt.policy.tls().certificates {
            let Some(acme) = &c.acme else { continue };
            let now = Instant::now();
            if let Some(at) = not_before.get(&c.server_names).filter(|at| **at > now) {
                next = next.min(*at - now);
                continue;
            }
            let left = match expires_in(&c.cert) {
                Ok(left) if left > acme.renew_before => {
                    next = next.min(left - acme.renew_before);
                    continue;
                }
                // The whole order has a deadline: a CA that stops answering mid-order (a
                // black-holed connection has no timeout of its own) must not stall renewals.
                Ok(_) | Err(_) => {
                    tokio::time::timeout(ORDER_DEADLINE, obtain(c, acme, &shared.challenges))
                        .await
                        .unwrap_or_else(|_| {
                            Err(fail(format!("no answer within {} s", ORDER_DEADLINE.as_secs())))
                        })
                }
            };
            // How long until the next attempt, and whether to hold it off until then even if
            // the files say otherwise (the files alone decide after a normal issuance, so that
            // an operator who removes them gets a new certificate at the next check).
            let (wait, hold) = match left {
                Ok(left) => {
                    failures.remove(&c.server_names);
                    shared.metrics.acme("issued");
                    tracing::info!(
                        names = ?c.server_names,
                        days_left = left.as_secs() / 86_400,
                        "ACME certificate issued; the certificate watcher loads it"
                    );
                    if left > acme.renew_before {
                        (left - acme.renew_before, false)
                    } else {
                        // Shorter-lived than renew_days_before (a CA's short-lived profile):
                        // renewed at two thirds of its life, not ordered again at once.
                        tracing::warn!(
                            names = ?c.server_names,
                            "the certificate lives less than renew_days_before: renewing it at \
                             two thirds of its life"
                        );
                        ((left / 3).max(Duration::from_secs(3600)), true)
                    }
                }
                Err(e) => {
                    let n = failures.entry(c.server_names.clone()).or_default();
                    *n = n.saturating_add(1);
                    let wait = RETRY_FIRST.saturating_mul(1 << (*n - 1).min(10)).min(CHECK_EVERY);
                    shared.metrics.acme("failed");
                    tracing::error!(
                        names = ?c.server_names,
                        error = %e,
                        retry_in_s = wait.as_secs(),
                        "ACME certificate not obtained; the current one keeps serving"
                    );
                    (wait, true)
                }
            };
            if hold {
                not_before.insert(c.server_names.clone(), Instant::now() + wait);
            }
            next = next.min(wait);
        }
        // A reload that changes the certificates wakes this task at once.
        tokio::select! {
            () = tokio::time::sleep(next.max(Duration::from_secs(1))) => {}
            () = shared.acme_wake.notified() => {}
        }
    }
}

/// How long the first certificate of the PEM file `path` has left (zero once expired).
pub fn expires_in(path: &Path) -> Result<Duration, AcmeError> {
    let leaf = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(format!("{}: {e}", path.display())))?
        .next()
        .ok_or_else(|| fail(format!("{}: no certificate", path.display())))?
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let end = not_after(&leaf)
        .ok_or_else(|| fail(format!("{}: no validity period found", path.display())))?;
    Ok(end.duration_since(SystemTime::now()).unwrap_or_default())
}

/// One order: the account, a challenge per name answered on the redirect listener, the key
/// made here, the chain from the CA; both files written. Returns the new certificate's time
/// left.
async fn obtain(
    c: &Certificate,
    acme: &Acme,
    challenges: &Challenges,
) -> Result<Duration, AcmeError> {
    let account = account(acme).await?;
    let ids: Vec<Identifier> = c.server_names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(fail)?;
    let mut tokens = Vec::new();
    let validated = async {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(fail)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                s => return Err(fail(format!("authorization is {s:?}"))),
            }
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| fail("the CA offers no http-01 challenge"))?;
            challenges.put(&challenge.token, challenge.key_authorization().as_str());
            tokens.push(challenge.token.clone());
            challenge.set_ready().await.map_err(fail)?;
        }
        Ok::<_, AcmeError>(())
    }
    .await;
    let status = match validated {
        Ok(()) => order.poll_ready(&patience()).await.map_err(fail),
        Err(e) => Err(e),
    };
    challenges.remove(&tokens);
    let status = status?;
    if status != OrderStatus::Ready {
        let why = order.state().error.as_ref().map(|p| format!(": {p:?}")).unwrap_or_default();
        return Err(fail(format!("the order is {status:?}{why}")));
    }
    let key_pem = order.finalize().await.map_err(fail)?;
    let chain_pem = order.poll_certificate(&patience()).await.map_err(fail)?;
    write_file(&c.key, key_pem.as_bytes(), 0o600)?;
    write_file(&c.cert, chain_pem.as_bytes(), 0o644)?;
    expires_in(&c.cert)
}

fn patience() -> RetryPolicy {
    RetryPolicy::new().initial_delay(Duration::from_millis(250)).timeout(CA_PATIENCE)
}

/// What the account file holds: the directory the account belongs to, and its credentials.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// The account of `acme.account`, created with the CA (and stored, mode 0600) when the file
/// is missing or belongs to another directory.
async fn account(acme: &Acme) -> Result<Account, AcmeError> {
    let builder = || match &acme.directory_ca {
        Some(ca) => Account::builder_with_root(ca).map_err(fail),
        None => Account::builder().map_err(fail),
    };
    match std::fs::read(&acme.account) {
        Ok(bytes) => {
            let stored: StoredAccount = serde_json::from_slice(&bytes)
                .map_err(|e| fail(format!("{}: {e}", acme.account.display())))?;
            if stored.directory == acme.directory {
                return builder()?.from_credentials(stored.credentials).await.map_err(fail);
            }
            tracing::warn!(
                file = %acme.account.display(),
                "the ACME account belongs to another directory: creating one for this directory"
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(format!("{}: {e}", acme.account.display()))),
    }
    let contact: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) =
        builder()?.create(&new, acme.directory.clone(), None).await.map_err(fail)?;
    let stored = StoredAccount { directory: acme.directory.clone(), credentials };
    let json = serde_json::to_vec_pretty(&stored).map_err(fail)?;
    write_file(&acme.account, &json, 0o600)?;
    tracing::info!(file = %acme.account.display(), "ACME account created");
    Ok(account)
}

/// Writes `bytes` to `path` with `mode` through a temporary file, fsync and rename.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AcmeError> {
    let err = |e: std::io::Error| fail(format!("{}: {e}", path.display()));
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(err)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

/// The end of the validity of the DER certificate `der`: Certificate → TBSCertificate →
/// (version) serial, signature, issuer → Validity → notAfter.
pub(crate) fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (cert, _) = expect(der, 0x30)?;
    let (tbs, _) = expect(cert, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (validity, _) = expect(rest, 0x30)?;
    let after = tlv(validity)?.2;
    let (tag, time, _) = tlv(after)?;
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if text.len() == 12 => {
            let yy: i64 = text[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        0x18 if text.len() == 14 => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// One DER element: its tag, its content, and what follows it.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n].iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

fn expect(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = tlv(b)?;
    (t == tag).then_some((content, rest))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
