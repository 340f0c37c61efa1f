//! Per-client limits shared by a fleet of gateways through Redis (`[limits.shared]`).
//!
//! Producers run several gateways (behind DNS, anycast or an L4 balancer), and a client that
//! spreads its requests over them would otherwise get each gateway's limit once per gateway.
//! With a shared Redis, every gateway keeps deciding locally, on its own GCRA buckets, without
//! a network round trip on the request path. Every `sync_interval` it sends Redis how many
//! requests it let through per client and class since the last exchange; one Lua script adds
//! them to the client's fleet-wide theoretical arrival time (TAT) on Redis' clock, and returns
//! how far ahead of now that time is. Each gateway then makes its local bucket for the client
//! no emptier than that, so a client over its limit across the fleet is refused everywhere
//! until it is back under it, with a `Retry-After` that says when.
//!
//! - The counts of one exchange are spread over the interval they were gathered in (the TAT
//!   starts no earlier than that interval's start), so a client under its limit is not pushed
//!   over it by the batching.
//! - Times are taken from Redis (`TIME`) and returned as offsets, so the gateways' clocks need
//!   not agree.
//! - The fleet can exceed a client's limit by what each gateway lets through in one interval
//!   before the next exchange: at most its burst and one interval of its rate per gateway.
//! - When Redis does not answer, each gateway goes on with its own limits (a client then gets
//!   at most one limit per gateway), says so once in the log, and counts failed exchanges.
//!   Limits never stop applying; a Redis outage is not a reason to refuse clients.
//!
//! The global limit (all clients together) stays per gateway: it protects this gateway's
//! nodes.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limit::{ClientKey, SharedBatch};
use crate::policy::SharedLimits;
use crate::resp::{self, Connection, Reply, RespError};
use crate::state::Shared;

#[cfg(test)]
mod tests;

/// Clients per script call; larger exchanges are pipelined in calls of this many.
const CHUNK: usize = 1000;

/// The longest a fleet answer may hold a client back; beyond it the answer is not believed.
const MAX_AHEAD: Duration = Duration::from_secs(600);

/// How often the task looks again for a `[limits.shared]` when the policy has none.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Adds each client's count to its fleet-wide TAT and returns how far ahead of now it is.
///
/// KEYS: one per client. ARGV[1]: microseconds one request takes from the rate; ARGV[2]:
/// microseconds the counts were gathered over; ARGV[3…]: the count of each key. The TAT starts
/// no earlier than the gathering's start, is kept in microseconds on Redis' clock, and expires
/// a second after it has passed.
pub const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local step = tonumber(ARGV[1])
local floor = now - tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i])) or floor
  if tat < floor then tat = floor end
  tat = tat + tonumber(ARGV[i + 2]) * step
  local ahead = tat - now
  local keep = 1000
  if ahead > 0 then keep = keep + math.ceil(ahead / 1000) end
  redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', keep)
  if ahead > 0 then out[i] = math.floor(ahead) else out[i] = 0 end
end
return out
"#;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Talking to Redis failed.
    #[error(transparent)]
    Redis(#[from] RespError),
    /// The password file could not be used.
    #[error("limits.shared.password_file {path}: {why}")]
    Password {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

/// A connection ready for exchanges: authenticated, with the script loaded.
#[derive(Debug)]
struct Link {
    config: SharedLimits,
    conn: Connection,
    sha: Vec<u8>,
}

impl Link {
    async fn open(config: &SharedLimits) -> Result<Link, FleetError> {
        let password = match &config.password_file {
            Some(path) => Some(read_password(path)?),
            None => None,
        };
        let auth = password.as_deref().map(|p| (config.username.as_deref(), p));
        let mut conn = Connection::connect(&config.redis, auth, config.timeout).await?;
        let sha = match conn.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]).await? {
            Reply::Bulk(Some(sha)) => sha,
            other => return Err(conn.unexpected("SCRIPT LOAD", &other).into()),
        };
        Ok(Link { config: config.clone(), conn, sha })
    }
}

/// The first line of `path`, which must not be readable by group or others.
fn read_password(path: &std::path::Path) -> Result<String, FleetError> {
    let fail = |why: String| FleetError::Password { path: path.display().to_string(), why };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(fail(format!(
            "mode {:o} lets others read it; chmod 600",
            meta.permissions().mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(fail("the first line is empty".into()));
    }
    Ok(line.to_owned())
}

/// The Redis key of one client's bucket.
pub fn key_name(prefix: &str, class: &str, trusted: bool, key: &ClientKey) -> String {
    let table = if trusted { "t" } else { "c" };
    match key {
        ClientKey::V4(a) => format!("{prefix}{class}:{table}:4:{a:08x}"),
        ClientKey::V6(a) => format!("{prefix}{class}:{table}:6:{a:016x}"),
    }
}

/// Sends `batches` (gathered over `window`) and absorbs the answers. Returns the number of
/// clients exchanged.
async fn exchange(
    link: &mut Link,
    batches: &[SharedBatch],
    window: Duration,
) -> Result<usize, FleetError> {
    let window_us = window.as_micros().to_string();
    let mut wire = Vec::new();
    let mut plan = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let step = format!("{:.3}", batch.step_micros());
        for (c, chunk) in batch.counts.chunks(CHUNK).enumerate() {
            let keys: Vec<String> = chunk
                .iter()
                .map(|(k, _)| key_name(&link.config.key_prefix, &batch.class, batch.trusted, k))
                .collect();
            let counts: Vec<String> = chunk.iter().map(|(_, n)| n.to_string()).collect();
            let numkeys = keys.len().to_string();
            let mut args: Vec<&[u8]> = vec![b"EVALSHA", &link.sha, numkeys.as_bytes()];
            args.extend(keys.iter().map(|k| k.as_bytes()));
            args.push(step.as_bytes());
            args.push(window_us.as_bytes());
            args.extend(counts.iter().map(|n| n.as_bytes()));
            resp::encode(&args, &mut wire);
            plan.push((b, c * CHUNK, chunk.len()));
        }
    }
    let replies = link.conn.pipeline(&wire, plan.len()).await?;
    let mut clients = 0;
    for ((b, start, len), reply) in plan.into_iter().zip(replies) {
        let batch = &batches[b];
        let aheads = match reply {
            Reply::Array(Some(items)) if items.len() == len => items,
            other => return Err(link.conn.unexpected("EVALSHA", &other).into()),
        };
        for ((key, _), ahead) in batch.counts[start..start + len].iter().zip(aheads) {
            let Reply::Int(us) = ahead else {
                return Err(link.conn.unexpected("EVALSHA", &ahead).into());
            };
            let ahead = Duration::from_micros(u64::try_from(us).unwrap_or(0)).min(MAX_AHEAD);
            batch.absorb(*key, ahead);
        }
        clients += len;
    }
    Ok(clients)
}

/// Runs the exchanges for as long as the gateway runs, following the policy in force.
pub async fn share(shared: Arc<Shared>) {
    let mut link: Option<Link> = None;
    let mut failing = false;
    let mut gathered_since = Instant::now();
    loop {
        let config = shared.runtime.load().policy.limits().shared.clone();
        let Some(config) = config else {
            link = None;
            failing = false;
            tokio::time::sleep(IDLE_CHECK).await;
            gathered_since = Instant::now();
            continue;
        };
        tokio::time::sleep(config.sync_interval).await;
        let batches = shared.runtime.load().limiters.drain_shared();
        let window = gathered_since.elapsed();
        gathered_since = Instant::now();
        if batches.is_empty() {
            continue;
        }
        let result = async {
            if link.as_ref().is_none_or(|l| l.config != config) {
                link = None;
                link = Some(Link::open(&config).await?);
            }
            let l = link.as_mut().expect("link just opened");
            exchange(l, &batches, window).await
        }
        .await;
        match result {
            Ok(clients) => {
                shared.metrics.fleet_exchange(true, clients as u64);
                if failing {
                    tracing::info!(redis = %config.redis, "shared limits: exchanging with Redis again");
                    failing = false;
                }
            }
            Err(e) => {
                link = None;
                shared.metrics.fleet_exchange(false, 0);
                if !failing {
                    tracing::warn!(
                        error = %e,
                        "shared limits: exchange failed; this gateway applies its own limits \
                         alone until Redis answers"
                    );
                    failing = true;
                }
            }
        }
    }
}
