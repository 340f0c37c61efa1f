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
//! Bans are shared the same way: a gateway that bans a client records the ban in Redis (for the
//! ban's length), and every exchange answers, for each client it carries, whether the fleet
//! bans it. A client banned by one gateway is thus banned by each other one at the first
//! exchange that carries it, that is within one interval of its first request there.
//!
//! The global limit (all clients together) stays per gateway: it protects this gateway's
//! nodes.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ban::Bans;
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

/// Adds each client's count to its fleet-wide TAT and returns how far ahead of now it is, and
/// how long the fleet still bans the client.
///
/// KEYS: two per client, its bucket and its ban. ARGV[1]: microseconds one request takes from
/// the rate; ARGV[2]: microseconds the counts were gathered over; ARGV[3…]: the count of each
/// client. The TAT starts no earlier than the gathering's start, is kept in microseconds on
/// Redis' clock, and expires a second after it has passed. The answer is flat: for each
/// client, microseconds ahead, then milliseconds of ban left (0 for none).
pub const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local step = tonumber(ARGV[1])
local floor = now - tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS / 2 do
  local bucket = KEYS[2 * i - 1]
  local tat = tonumber(redis.call('GET', bucket)) or floor
  if tat < floor then tat = floor end
  tat = tat + tonumber(ARGV[i + 2]) * step
  local ahead = tat - now
  local keep = 1000
  if ahead > 0 then keep = keep + math.ceil(ahead / 1000) end
  redis.call('SET', bucket, string.format('%.0f', tat), 'PX', keep)
  if ahead > 0 then out[2 * i - 1] = math.floor(ahead) else out[2 * i - 1] = 0 end
  local ban = redis.call('PTTL', KEYS[2 * i])
  if ban > 0 then out[2 * i] = ban else out[2 * i] = 0 end
end
return out
"#;

/// Records bans: KEYS are ban keys, ARGV[i] the milliseconds of ban KEYS[i]; a longer ban
/// already recorded stays.
pub const BAN_SCRIPT: &str = r#"
for i = 1, #KEYS do
  local ms = tonumber(ARGV[i])
  if redis.call('PTTL', KEYS[i]) < ms then
    redis.call('SET', KEYS[i], '1', 'PX', ms)
  end
end
return #KEYS
"#;

/// Most bans waiting for the next exchange; past it, new ones stay local.
const MAX_NEW_BANS: usize = 10_000;

/// Bans this gateway gave since the last exchange, to record in the fleet.
#[derive(Debug, Default)]
pub struct NewBans {
    enabled: AtomicBool,
    bans: Mutex<Vec<(ClientKey, Duration)>>,
}

impl NewBans {
    /// Bans are noted from the start when `enabled`.
    pub fn new(enabled: bool) -> NewBans {
        NewBans { enabled: AtomicBool::new(enabled), bans: Mutex::default() }
    }

    /// Notes a ban of `key` for `length`, if limits are shared.
    pub fn push(&self, key: ClientKey, length: Duration) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let mut bans = self.bans.lock().unwrap_or_else(|e| e.into_inner());
        if bans.len() < MAX_NEW_BANS {
            bans.push((key, length));
        }
    }

    fn enable(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
        if !on {
            self.take();
        }
    }

    fn take(&self) -> Vec<(ClientKey, Duration)> {
        std::mem::take(&mut *self.bans.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

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
    ban_sha: Vec<u8>,
}

impl Link {
    async fn open(config: &SharedLimits) -> Result<Link, FleetError> {
        let password = match &config.password_file {
            Some(path) => Some(read_password(path)?),
            None => None,
        };
        let auth = password.as_deref().map(|p| (config.username.as_deref(), p));
        let mut conn = Connection::connect(&config.redis, auth, config.timeout).await?;
        let mut load =
            async |script: &str| match conn.call(&[b"SCRIPT", b"LOAD", script.as_bytes()]).await? {
                Reply::Bulk(Some(sha)) => Ok::<_, FleetError>(sha),
                other => Err(conn.unexpected("SCRIPT LOAD", &other).into()),
            };
        let sha = load(SCRIPT).await?;
        let ban_sha = load(BAN_SCRIPT).await?;
        Ok(Link { config: config.clone(), conn, sha, ban_sha })
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

/// The Redis key of one client's fleet-wide ban.
pub fn ban_key_name(prefix: &str, key: &ClientKey) -> String {
    match key {
        ClientKey::V4(a) => format!("{prefix}ban:4:{a:08x}"),
        ClientKey::V6(a) => format!("{prefix}ban:6:{a:016x}"),
    }
}

/// What one exchange did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Exchanged {
    /// Client buckets sent and updated.
    clients: usize,
    /// Bans of this gateway recorded in the fleet.
    bans_sent: usize,
    /// Clients banned here because the fleet bans them.
    bans_received: usize,
}

/// Records `new_bans`, sends `batches` (gathered over `window`) and absorbs the answers: the
/// buckets, and the fleet's bans into `bans`.
async fn exchange(
    link: &mut Link,
    new_bans: &[(ClientKey, Duration)],
    batches: &[SharedBatch],
    window: Duration,
    bans: &Bans,
) -> Result<Exchanged, FleetError> {
    let prefix = link.config.key_prefix.clone();
    let window_us = window.as_micros().to_string();
    let mut wire = Vec::new();
    let mut ban_calls = 0;
    for chunk in new_bans.chunks(CHUNK) {
        let keys: Vec<String> = chunk.iter().map(|(k, _)| ban_key_name(&prefix, k)).collect();
        let ms: Vec<String> = chunk.iter().map(|(_, d)| d.as_millis().max(1).to_string()).collect();
        let numkeys = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVALSHA", &link.ban_sha, numkeys.as_bytes()];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        args.extend(ms.iter().map(|m| m.as_bytes()));
        resp::encode(&args, &mut wire);
        ban_calls += 1;
    }
    let mut plan = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let step = format!("{:.6}", batch.step_micros());
        for (c, chunk) in batch.counts.chunks(CHUNK).enumerate() {
            let keys: Vec<String> = chunk
                .iter()
                .flat_map(|(k, _)| {
                    [key_name(&prefix, &batch.class, batch.trusted, k), ban_key_name(&prefix, k)]
                })
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
    let mut replies = link.conn.pipeline(&wire, ban_calls + plan.len()).await?.into_iter();
    let mut done = Exchanged { bans_sent: new_bans.len(), ..Exchanged::default() };
    for reply in replies.by_ref().take(ban_calls) {
        if !matches!(reply, Reply::Int(_)) {
            return Err(link.conn.unexpected("EVALSHA (bans)", &reply).into());
        }
    }
    let number = |reply: &Reply| match reply {
        Reply::Int(n) => Ok(u64::try_from(*n).unwrap_or(0)),
        other => Err(link.conn.unexpected("EVALSHA", other)),
    };
    for ((b, start, len), reply) in plan.into_iter().zip(replies) {
        let batch = &batches[b];
        let answers = match reply {
            Reply::Array(Some(items)) if items.len() == 2 * len => items,
            other => return Err(link.conn.unexpected("EVALSHA", &other).into()),
        };
        for ((key, _), answer) in batch.counts[start..start + len].iter().zip(answers.chunks(2)) {
            let ahead = Duration::from_micros(number(&answer[0])?).min(MAX_AHEAD);
            batch.absorb(*key, ahead);
            let ban = Duration::from_millis(number(&answer[1])?);
            if !ban.is_zero() && !bans.is_banned(*key) {
                done.bans_received += bans.restore([(*key, ban)]);
            }
        }
        done.clients += len;
    }
    Ok(done)
}

/// Runs the exchanges for as long as the gateway runs, following the policy in force.
pub async fn share(shared: Arc<Shared>) {
    let mut link: Option<Link> = None;
    let mut failing = false;
    let mut gathered_since = Instant::now();
    loop {
        let config = shared.runtime.load().policy.limits().shared.clone();
        shared.new_bans.enable(config.is_some());
        let Some(config) = config else {
            link = None;
            failing = false;
            tokio::time::sleep(IDLE_CHECK).await;
            gathered_since = Instant::now();
            continue;
        };
        tokio::time::sleep(config.sync_interval).await;
        let batches = shared.runtime.load().limiters.drain_shared();
        // Each ban with the time it has left here (one given long ago, offered again after a
        // failed exchange, must not be recorded for its whole length).
        let new_bans: Vec<(ClientKey, Duration)> = shared
            .new_bans
            .take()
            .into_iter()
            .filter_map(|(key, _)| shared.bans.left(key).map(|left| (key, left)))
            .collect();
        let window = gathered_since.elapsed();
        gathered_since = Instant::now();
        if batches.is_empty() && new_bans.is_empty() {
            continue;
        }
        let result = async {
            let reused = link.as_ref().is_some_and(|l| l.config == config);
            if !reused {
                link = None;
                link = Some(Link::open(&config).await?);
            }
            let l = link.as_mut().expect("link open");
            match exchange(l, &new_bans, &batches, window, &shared.bans).await {
                // A connection left idle may have been closed by Redis (its `timeout`
                // setting): once more on a fresh one before calling Redis unreachable.
                Err(FleetError::Redis(RespError::Closed(_) | RespError::Io { .. })) if reused => {
                    link = None;
                    let l = link.insert(Link::open(&config).await?);
                    exchange(l, &new_bans, &batches, window, &shared.bans).await
                }
                other => other,
            }
        }
        .await;
        match result {
            Ok(done) => {
                shared.metrics.fleet_exchange(true, done.clients as u64);
                shared.metrics.fleet_bans(done.bans_sent as u64, done.bans_received as u64);
                if done.bans_received > 0 {
                    tracing::warn!(
                        clients = done.bans_received,
                        "clients banned by another gateway of the fleet are banned here too"
                    );
                }
                if failing {
                    tracing::info!(redis = %config.redis, "shared limits: exchanging with Redis again");
                    failing = false;
                }
            }
            Err(e) => {
                // The bans are not lost: they stay in force here, and are offered again.
                for (key, length) in new_bans {
                    shared.new_bans.push(key, length);
                }
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
