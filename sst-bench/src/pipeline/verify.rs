//! Measurement (a): how many event signatures this machine strictly verifies per second
//! (`verify_strict` through [`PublicKey::verify_digest`], the check the node applies to every
//! incoming signed event), on every core and on one.

use std::thread;

use anyhow::Context;
use sst_core::{ActorKey, Digest, OriginSeq, PublicKey, SignatureBytes};
use sst_node::EventBuilder;

use super::stats::{Sample, Stopwatch};
use super::workload;

/// Fewest signatures one measurement verifies, so that short runs still time seconds-scale
/// work (the same signatures are verified again in further passes).
pub(crate) const MIN_VERIFIES: usize = 50_000;

/// A signed event reduced to what its strict signature check needs.
pub(crate) struct Signed {
    key: PublicKey,
    digest: Digest,
    signature: SignatureBytes,
}

/// `n` events signed like the node's own: the benchmark's change intents, built and signed
/// by the seller's actor with the node library's [`EventBuilder`] (as creates, which need no
/// current state; the signature covers the event id either way).
pub(crate) fn signed_events(n: usize) -> anyhow::Result<Vec<Signed>> {
    let key = ActorKey::from_seed(workload::SELLER_SEED);
    let builder = EventBuilder::new(workload::HOME, workload::SELLER, &key);
    (0..n)
        .map(|i| {
            let built = builder.build(OriginSeq(i as u64 + 1), &workload::create(i), None)?;
            let signature = built
                .signed
                .signatures
                .first()
                .context("a built event carries its actor's signature")?
                .signature;
            Ok(Signed {
                key: key.public_key(),
                digest: built.signed.id.0,
                signature,
            })
        })
        .collect()
}

/// Strictly verifies `events` (in passes until at least `min_verifies` signatures, see
/// [`MIN_VERIFIES`]) on `threads` threads, each taking an equal share; returns the sample of
/// all of them.
///
/// # Errors
/// When a signature does not verify (it always should: they were just made).
pub(crate) fn rate(
    events: &[Signed],
    threads: usize,
    min_verifies: usize,
) -> anyhow::Result<Sample> {
    let threads = threads.max(1);
    let passes = min_verifies.max(1).div_ceil(events.len().max(1));
    let chunk = events.len().div_ceil(threads).max(1);
    let watch = Stopwatch::start();
    thread::scope(|s| {
        let workers: Vec<_> = events
            .chunks(chunk)
            .map(|share| {
                s.spawn(move || -> anyhow::Result<()> {
                    for _ in 0..passes {
                        for e in share {
                            e.key
                                .verify_digest(&e.digest, &e.signature)
                                .context("a freshly signed event does not verify")?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow::anyhow!("a verification thread panicked"))?
        })
    })?;
    Ok(watch.stop(events.len() * passes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signed_event_is_verified_in_every_pass_on_any_thread_count() -> anyhow::Result<()> {
        let events = signed_events(7)?;
        for threads in [1, 2, 3, 16] {
            let s = rate(&events, threads, 20)?;
            assert_eq!(s.events, 21, "3 passes over 7 events");
            assert!(s.rate() > 0.0);
        }
        Ok(())
    }

    #[test]
    fn a_tampered_signature_fails_the_measurement() -> anyhow::Result<()> {
        let mut events = signed_events(3)?;
        events[1].signature.0[5] ^= 1;
        assert!(rate(&events, 2, 1).is_err());
        Ok(())
    }
}
