//! The producer role's slot loop: on real UTC time, every 500 ms slot that the schedule gives
//! this producer becomes a block — started at the beginning of the slot before it, filled with
//! the transactions pushed meanwhile, sealed when its own slot begins and signed by
//! `rempart-signer` through its client, with a deadline.
//!
//! A slot whose block was not signed in time (or was refused) is logged and counted as missed,
//! and the loop moves on to a later slot: a slot is attempted at most once, so it is never
//! produced twice (the signer's guard refuses that too). The abandoned block's transactions go
//! into the next one. Wall time comes only from [`clock`]; this module never touches state
//! except through [`Chain`].

pub mod clock;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rempart_core::protocol::ErrorCode;
use rempart_core::{BlockTimestamp, Checksum256, Name};
use rempart_signer::client::{Client, ClientError, Endpoint};

use crate::chain::{BlockError, BlockSummary, Chain, SignFailure, scheduled_producer};
use crate::metrics::{Metrics, SignerProbe};

/// Why the slot loop stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    /// The signer address does not parse.
    #[error("producer.signer: {0}")]
    Signer(String),
    /// This producer is not in the active schedule at all.
    #[error(
        "producer {0} is not in the active schedule; check producer.name against the genesis or setprods"
    )]
    NotScheduled(Name),
    /// The chain stopped (its apply thread is gone).
    #[error("the chain stopped: {0}")]
    Chain(BlockError),
}

/// What the slot loop needs to know.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// The producer account this node produces for.
    pub name: Name,
    /// Where `rempart-signer` listens (`unix:/path` or `IP:port`).
    pub signer: String,
    /// Signers asked in turn after it (see [`fails_over`]).
    pub standby_signers: Vec<String>,
    /// How long a signature may take before the slot counts as missed.
    pub sign_timeout: Duration,
}

/// The next slot this producer may fill: after the head's and after the one running now.
fn next_slot(head: BlockTimestamp, last_attempt: Option<BlockTimestamp>) -> BlockTimestamp {
    let now = BlockTimestamp::from_time_point(clock::now());
    let mut s = now.next().max(head.next());
    if let Some(last) = last_attempt {
        s = s.max(last.next());
    }
    s
}

/// Runs the slot loop until `shutdown` completes. Each slot's outcome is reported to
/// `on_block`: the block produced, or `None` for a missed slot (metrics, the private
/// listener's head notifier).
pub async fn run(
    chain: Arc<Chain>,
    opts: ProducerOptions,
    metrics: Arc<Metrics>,
    on_block: impl Fn(Option<&BlockSummary>) + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProducerError> {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for s in std::iter::once(&opts.signer).chain(&opts.standby_signers) {
        endpoints.push(s.parse().map_err(|e| ProducerError::Signer(format!("{e}")))?);
    }
    if !chain.info().schedule.producers.iter().any(|p| p.producer_name == opts.name) {
        return Err(ProducerError::NotScheduled(opts.name));
    }
    let names: Arc<Vec<String>> = Arc::new(endpoints.iter().map(ToString::to_string).collect());
    let probes =
        names.iter().map(|e| SignerProbe { endpoint: e.clone(), ready: AtomicU64::new(0) });
    let _ = metrics.signers.set(probes.collect());
    let mut signers: Vec<Option<Client>> =
        endpoints.iter().cloned().map(|e| Some(Client::new(e))).collect();
    let _probing =
        AbortOnDrop(tokio::spawn(probe(chain.clone(), opts.name, endpoints, metrics.clone())));
    let mut active = 0;
    let mut unanswered = Unanswered::default();
    let handle = tokio::runtime::Handle::current();
    let on_block = Arc::new(on_block);
    tokio::pin!(shutdown);
    let mut last_attempt: Option<BlockTimestamp> = None;
    loop {
        let info = chain.info();
        let slot = next_slot(info.head_block_time, last_attempt);
        if let Some(last) = last_attempt {
            // Slots of ours that passed between attempts were missed (node late or busy).
            let skipped = (last.0 + 1..slot.0)
                .filter(|s| {
                    scheduled_producer(&info.schedule, BlockTimestamp(*s)).producer_name
                        == opts.name
                })
                .count() as u64;
            if skipped > 0 {
                metrics.missed_slots.fetch_add(skipped, Ordering::Relaxed);
                tracing::warn!(skipped, "slots passed without a block attempt");
            }
        }
        last_attempt = Some(slot);
        // Our turn? (The schedule may change at the block boundary; start_block has the last word.)
        if scheduled_producer(&info.schedule, slot).producer_name != opts.name {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(clock::until(slot)) => continue,
            }
        }
        // Fill the block during the slot before its timestamp, as nodeos does.
        let c2 = chain.clone();
        let started = tokio::task::spawn_blocking(move || c2.start_block(slot)).await;
        let started = started.unwrap_or(Err(BlockError::Aborted));
        let pending = match started {
            Ok(p) => p,
            Err(e @ BlockError::Aborted) => return Err(ProducerError::Chain(e)),
            Err(e) => {
                tracing::warn!(slot = %slot, error = %e, "cannot start a block");
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(clock::until(slot)) => continue,
                }
            }
        };
        if pending.producer.producer_name != opts.name {
            abort(&chain).await;
            continue;
        }
        tokio::select! {
            () = &mut shutdown => {
                abort(&chain).await;
                return Ok(());
            }
            // The pending block's own slot: a block re-made after a crash keeps its old one.
            () = tokio::time::sleep(clock::until(pending.timestamp)) => {}
        }
        let started = clock::instant();
        let deadline = tokio::time::Instant::from_std(started + opts.sign_timeout);
        let mut c = signers[active].take().ok_or(ProducerError::Chain(BlockError::Aborted))?;
        let chain2 = chain.clone();
        let h = handle.clone();
        let (resent, count, at, all) = (pending.resent, signers.len(), active, names.clone());
        let mut tracker = std::mem::take(&mut unanswered);
        let joined = tokio::task::spawn_blocking(move || {
            let mut move_on = false;
            let r = chain2.finish_block(|req| {
                let digest = req.digest();
                if resent && !tracker.tracks(&digest) {
                    // Sent before this process started: any signer may have signed it.
                    tracker.start(digest, 0..count);
                }
                let answer = h.block_on(c.sign_block(req.clone(), deadline));
                match answer {
                    Ok(resp) => {
                        tracker.record(digest, at, Asked::Signed);
                        Ok(resp.signature)
                    }
                    Err(e @ ClientError::Refused { .. }) => {
                        let elsewhere = tracker.record(digest, at, Asked::Refused);
                        if let Some(other) = elsewhere {
                            // Only the signer that refused is known not to have signed it:
                            // the block goes again, to the next signer, unless paused.
                            move_on = e.code() != Some(ErrorCode::Paused);
                            return Err(SignFailure::NoAnswer(format!(
                                "{e}; the signer at {} may have signed this block (it did not \
                                 answer), so it is sent again",
                                all[other]
                            )));
                        }
                        move_on = fails_over(&e);
                        Err(SignFailure::Refused(e.to_string()))
                    }
                    Err(e) => {
                        tracker.record(digest, at, Asked::NoAnswer);
                        move_on = fails_over(&e);
                        Err(SignFailure::NoAnswer(e.to_string()))
                    }
                }
            });
            (r, c, move_on, tracker)
        })
        .await;
        let (result, c, move_on, tracker) = match joined {
            Ok(x) => x,
            Err(e) => {
                return Err(ProducerError::Chain(BlockError::Signer {
                    block_num: pending.block_num,
                    reason: format!("signing task failed: {e}"),
                }));
            }
        };
        unanswered = tracker;
        signers[active] = Some(c);
        if move_on && result.is_err() && signers.len() > 1 {
            // The next block (the same one again when this one may have been signed: the
            // chain re-sends it identical) goes to the next signer in the list.
            let at_failure = active;
            active = (active + 1) % signers.len();
            metrics.signer_failovers.fetch_add(1, Ordering::Relaxed);
            metrics.signer_in_use.store(active as u64, Ordering::Relaxed);
            tracing::warn!(
                signer = %names[at_failure],
                next = %names[active],
                "the signer did not answer or could not sign: the next block goes to the next signer"
            );
        }
        match result {
            Ok(summary) => {
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                metrics.block(summary.block_num, summary.block_num, summary.transactions, us);
                tracing::info!(
                    block_num = summary.block_num,
                    id = %summary.id,
                    timestamp = %summary.timestamp,
                    transactions = summary.transactions,
                    us,
                    "block produced"
                );
                on_block(Some(&summary));
            }
            Err(BlockError::Aborted) => return Err(ProducerError::Chain(BlockError::Aborted)),
            Err(e) => {
                metrics.missed_slots.fetch_add(1, Ordering::Relaxed);
                tracing::error!(slot = %slot, error = %e, "slot missed: the block was not signed");
                on_block(None);
            }
        }
    }
}

/// How often every signer is asked whether it could sign.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A task aborted when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Asks every signer, on a connection of its own every [`PROBE_EVERY`], whether it could sign
/// this producer's next block: it answers, is not paused, and holds the key the active schedule
/// names. The answer goes to `rempart_node_signer_ready`; a change is logged. So a standby that
/// went down, was paused or lacks the key is known before it is needed.
async fn probe(chain: Arc<Chain>, producer: Name, endpoints: Vec<Endpoint>, metrics: Arc<Metrics>) {
    let mut clients: Vec<Client> = endpoints.into_iter().map(Client::new).collect();
    let mut last: Vec<Option<bool>> = vec![None; clients.len()];
    loop {
        let key = chain
            .info()
            .schedule
            .producers
            .iter()
            .find(|p| p.producer_name == producer)
            .map(|p| p.block_signing_key);
        for (i, client) in clients.iter_mut().enumerate() {
            let deadline = tokio::time::Instant::from_std(clock::instant() + PROBE_TIMEOUT);
            let verdict = match client.status(deadline).await {
                Err(e) => Err(e.to_string()),
                Ok(s) if s.paused => Err("signing is paused by its administrators".to_string()),
                Ok(_) => match (client.public_keys(deadline).await, key) {
                    (Err(e), _) => Err(e.to_string()),
                    (Ok(_), None) => Err(format!("{producer} is not in the active schedule")),
                    (Ok(keys), Some(key)) => {
                        if keys
                            .iter()
                            .any(|k| k.producer_name == producer && k.block_signing_key == key)
                        {
                            Ok(())
                        } else {
                            Err(format!("it does not hold {producer}'s signing key {key}"))
                        }
                    }
                },
            };
            let ready = verdict.is_ok();
            if let Some(p) = metrics.signers.get().and_then(|s| s.get(i)) {
                p.ready.store(u64::from(ready), Ordering::Relaxed);
            }
            if last[i] != Some(ready) {
                let endpoint = client.endpoint().to_string();
                match verdict {
                    Ok(()) => tracing::info!(signer = %endpoint, index = i, "signer ready"),
                    Err(why) => tracing::warn!(
                        signer = %endpoint,
                        index = i,
                        "signer not ready: {why}"
                    ),
                }
                last[i] = Some(ready);
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// What came of asking one signer for a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// It signed.
    Signed,
    /// It refused: it has not given a signature for this block (a signer gives back one it
    /// gave before any other check).
    Refused,
    /// No answer: it may have signed.
    NoAnswer,
}

/// The signers that may hold a signature of the block being sent: asked and silent. The chain
/// sends a block again, identical, until a signer signs it or refuses it; with several signers
/// a refusal proves only that the signer refusing has not signed it, so the block is given up
/// only once every signer that may have signed it has refused it. Giving it up earlier would
/// make the next block at that height one that a signer holding the first one, and every
/// signer sharing its guard, refuses for ever.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unanswered {
    digest: Option<Checksum256>,
    signers: Vec<usize>,
}

impl Unanswered {
    /// Whether it is about the block of `digest`.
    pub fn tracks(&self, digest: &Checksum256) -> bool {
        self.digest.as_ref() == Some(digest)
    }

    /// Starts over for the block of `digest`, with `signers` possibly holding its signature.
    pub fn start(&mut self, digest: Checksum256, signers: impl IntoIterator<Item = usize>) {
        self.digest = Some(digest);
        self.signers = signers.into_iter().collect();
    }

    /// Records what signer `at` did with the block of `digest`. For a refusal, returns a signer
    /// that may still have signed it, if any.
    pub fn record(&mut self, digest: Checksum256, at: usize, asked: Asked) -> Option<usize> {
        if !self.tracks(&digest) {
            self.start(digest, []);
        }
        match asked {
            Asked::Signed => self.signers.clear(),
            Asked::NoAnswer if !self.signers.contains(&at) => self.signers.push(at),
            Asked::NoAnswer => {}
            Asked::Refused => self.signers.retain(|s| *s != at),
        }
        match asked {
            Asked::Refused => self.signers.first().copied(),
            _ => None,
        }
    }
}

/// Whether a signing failure moves the producer on to its next signer: no answer, or a signer
/// that cannot sign (its key backend, its shared guard, its capacity, its configuration). Never
/// a refusal about the block (a double sign: every signer sharing the guard says the same, and
/// the chain sends the same block again when it may have been signed) nor an administrators'
/// pause, which asking another signer must not get around.
pub fn fails_over(e: &ClientError) -> bool {
    !matches!(
        e,
        ClientError::Refused { code: ErrorCode::DoubleSign | ErrorCode::Paused, .. }
            | ClientError::Protocol(_)
    )
}

/// Drops the pending block off the async workers.
async fn abort(chain: &Arc<Chain>) {
    let c = chain.clone();
    let _ = tokio::task::spawn_blocking(move || c.abort_block()).await;
}

#[cfg(test)]
mod tests;
