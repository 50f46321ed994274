//! Strict signature verification ahead of the sequencer: a pool of threads sized to the
//! machine ([`crate::NodeConfig::verify_workers`]) checks the id and the actor's signature of
//! every signed event that reaches a node from outside (a client-signed submit, a forwarded
//! intent, a replicated change) while the sequencer works on earlier jobs. What it checked
//! is carried in a type, [`Verified`], that only this module makes: the pipeline skips a
//! signature check only for a [`Verified`] event whose key is still the actor's key in the
//! directory, and checks everything else itself, exactly as strictly.

use std::num::NonZeroUsize;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use sst_core::{
    ActorKey, Digest, Event, NodeRegistry, Outcome, PublicKey, SequencingReceipt, SignedEvent,
};

use crate::message::AppliedChange;
use tokio::sync::oneshot;
use tracing::debug;

/// A signed event whose id is the hash of its body and which carries a strict Ed25519
/// signature by its actor under [`Verified::key`]. Made only here: by the [`VerifyPool`]
/// (checked), or by [`Verified::sign`] (signed on this node with the key whose public half
/// it records: an Ed25519 signature made with a key verifies strictly under that key).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verified {
    signed: SignedEvent,
    key: PublicKey,
}

impl Verified {
    /// Computes the id of `event` (once) and signs it as its actor with `key`.
    pub(crate) fn sign(event: Event, key: &ActorKey) -> Self {
        Verified {
            signed: SignedEvent::sign(event, key),
            key: key.public_key(),
        }
    }

    /// Checks `signed` strictly ([`strictly_signed`]): verified, or left unchecked for the
    /// pipeline to find and name what is wrong.
    fn check(signed: SignedEvent, key: PublicKey) -> Vetted {
        if strictly_signed(&signed, &key) {
            Vetted::Verified(Verified { signed, key })
        } else {
            Vetted::Unchecked(signed)
        }
    }

    /// The event.
    pub(crate) fn signed(&self) -> &SignedEvent {
        &self.signed
    }

    /// The event, forgetting that it was verified.
    pub(crate) fn into_signed(self) -> SignedEvent {
        self.signed
    }
}

/// Whether the id of `signed` is the hash of its body, it carries a signature by its
/// actor, and that signature strictly verifies under `key` (the id computed once).
fn strictly_signed(signed: &SignedEvent, key: &PublicKey) -> bool {
    signed.verify_id().is_ok()
        && signed
            .signatures
            .iter()
            .find(|s| s.signer == signed.event.actor)
            .is_some_and(|s| key.verify_digest(&signed.id.0, &s.signature).is_ok())
}

/// A signed event as it reaches the sequencer: verified ahead, or to be checked in full by
/// the pipeline (the actor was unknown when it arrived, or a check failed: the pipeline
/// then finds and names what is wrong).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Vetted {
    /// Id and signature checked under the key recorded.
    Verified(Verified),
    /// Not checked (yet).
    Unchecked(SignedEvent),
}

impl Vetted {
    /// The event.
    pub(crate) fn signed(&self) -> &SignedEvent {
        match self {
            Vetted::Verified(v) => &v.signed,
            Vetted::Unchecked(s) => s,
        }
    }

    /// Checks that the id is the hash of the body (done already for a verified event).
    ///
    /// # Errors
    /// As [`SignedEvent::verify_id`].
    pub(crate) fn verify_id(&self) -> Result<(), sst_core::IntegrityError> {
        match self {
            Vetted::Verified(_) => Ok(()),
            Vetted::Unchecked(s) => s.verify_id(),
        }
    }
}

/// What the pipeline reads of a signed event: the event, and the key its actor's signature
/// verified under when that was checked ahead. Made only here, from a [`Verified`] or
/// [`Vetted`] event, a [`VettedChange`], or [`SignedRef::unchecked`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedRef<'a> {
    signed: &'a SignedEvent,
    key: Option<&'a PublicKey>,
}

impl<'a> SignedRef<'a> {
    /// An event nothing was checked of: the pipeline checks it in full.
    pub(crate) fn unchecked(signed: &'a SignedEvent) -> Self {
        SignedRef { signed, key: None }
    }

    /// The event.
    pub(crate) fn signed(&self) -> &'a SignedEvent {
        self.signed
    }

    /// The key the id and the actor's signature verified under, if checked ahead.
    pub(crate) fn verified_key(&self) -> Option<&'a PublicKey> {
        self.key
    }
}

impl Verified {
    /// As the pipeline reads it.
    pub(crate) fn as_ref(&self) -> SignedRef<'_> {
        SignedRef {
            signed: &self.signed,
            key: Some(&self.key),
        }
    }
}

impl Vetted {
    /// As the pipeline reads it.
    pub(crate) fn as_ref(&self) -> SignedRef<'_> {
        match self {
            Vetted::Verified(v) => v.as_ref(),
            Vetted::Unchecked(s) => SignedRef::unchecked(s),
        }
    }
}

/// A change received from another node, with the key its event's signature verified under
/// and the digest its sequencing receipt verified over, as far as the pool checked them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VettedChange {
    change: Box<AppliedChange>,
    key: Option<PublicKey>,
    receipt: Option<Digest>,
}

impl VettedChange {
    /// The digest the change's receipt signature verified over (under the registry key of
    /// the node the receipt names), when the pool checked it: the receipt over the applied
    /// outcome `(version, root)` and the business events the change carries.
    pub(crate) fn receipt_verified(&self) -> Option<&Digest> {
        self.receipt.as_ref()
    }

    /// The change.
    pub(crate) fn change(&self) -> &AppliedChange {
        &self.change
    }

    /// Its event as the pipeline reads it.
    pub(crate) fn signed_ref(&self) -> SignedRef<'_> {
        SignedRef {
            signed: &self.change.signed,
            key: self.key.as_ref(),
        }
    }
}

impl From<Verified> for Vetted {
    fn from(v: Verified) -> Self {
        Vetted::Verified(v)
    }
}

type Task = Box<dyn FnOnce() + Send>;

/// Threads that verify signatures (and run other CPU-bound checks handed to them) off the
/// async runtime. Dropping the pool lets its threads finish their queue and exit.
pub(crate) struct VerifyPool {
    tasks: Mutex<Option<std_mpsc::Sender<Task>>>,
    workers: usize,
    /// The network's node keys (from configuration), for receipts.
    nodes: Arc<NodeRegistry>,
}

impl std::fmt::Debug for VerifyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyPool({} workers)", self.workers)
    }
}

impl VerifyPool {
    /// Starts `workers` threads (`0`: one per core) named after `node`; receipts are
    /// checked against `nodes`.
    pub(crate) fn new(node: &str, workers: usize, nodes: NodeRegistry) -> Self {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
        } else {
            workers
        };
        let (tx, rx) = std_mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sst-verify-{node}-{i}"))
                .spawn(move || loop {
                    let task = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match task {
                        Ok(task) => task(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                debug!(%node, error = %e, "verification thread not started");
            }
        }
        VerifyPool {
            tasks: Mutex::new(Some(tx)),
            workers,
            nodes: Arc::new(nodes),
        }
    }

    /// How many threads the pool runs.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `f` on a pool thread; its result comes back through the receiver (which errs
    /// only when the pool stopped). When no thread can take it, `f` runs here.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let task: Task = Box::new(move || {
            // The receiver may have stopped waiting (its node stopped): nothing to answer.
            let _ = tx.send(f());
        });
        let sender = self.tasks.lock().ok().and_then(|t| t.clone());
        if let Some(sender) = sender {
            if let Err(std_mpsc::SendError(task)) = sender.send(task) {
                task();
            }
        } else {
            task();
        }
        rx
    }

    /// Strictly checks `signed` under `key` (the actor's key in the directory now) on a pool
    /// thread; `None` for `key` (an unknown actor) leaves it to the pipeline.
    pub(crate) fn vet(
        &self,
        signed: SignedEvent,
        key: Option<PublicKey>,
    ) -> oneshot::Receiver<Vetted> {
        match key {
            Some(key) => self.run(move || Verified::check(signed, key)),
            None => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Vetted::Unchecked(signed));
                rx
            }
        }
    }
}

impl VerifyPool {
    /// As [`VerifyPool::vet`], for the event of a received change, and its sequencing
    /// receipt over the applied outcome it announces.
    pub(crate) fn vet_change(
        &self,
        change: Box<AppliedChange>,
        key: Option<PublicKey>,
    ) -> oneshot::Receiver<VettedChange> {
        let nodes = self.nodes.clone();
        self.run(move || {
            let key = key.filter(|k| strictly_signed(&change.signed, k));
            let receipt = change.receipt.as_ref().and_then(|r| {
                let outcome = Outcome::Applied {
                    version: change.version,
                    root: change.root,
                };
                let digest = SequencingReceipt::digest(
                    &change.signed.id,
                    &change.signed.event.state_id,
                    &outcome,
                    &change.business_events,
                );
                r.verify_digest(&nodes, &digest).is_ok().then_some(digest)
            });
            VettedChange {
                change,
                key,
                receipt,
            }
        })
    }
}

impl Drop for VerifyPool {
    fn drop(&mut self) {
        if let Ok(mut t) = self.tasks.lock() {
            t.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sst_core::{EventKind, HashAlg, NodeId, OriginSeq, Timestamp};

    fn event(actor: &str) -> Event {
        Event {
            kind: EventKind::ChangeSections,
            state_id: "s".into(),
            contract: sst_core::ContractRef::new("c", 1),
            base: None,
            origin_node: NodeId::from("n"),
            origin_seq: OriginSeq(1),
            actor: actor.into(),
            payload: serde_json::json!({"sections": {}}),
            timestamp: Timestamp(1),
            alg: HashAlg::Blake3,
        }
    }

    #[tokio::test]
    async fn the_pool_verifies_a_good_signature_and_leaves_the_rest_unchecked() {
        let pool = VerifyPool::new("n", 2, NodeRegistry::new());
        let key = ActorKey::from_seed([1; 32]);
        let other = ActorKey::from_seed([2; 32]);
        let signed = SignedEvent::sign(event("n/a"), &key);
        let good = pool.vet(signed.clone(), Some(key.public_key())).await;
        assert_eq!(
            good.unwrap(),
            Vetted::Verified(Verified {
                signed: signed.clone(),
                key: key.public_key()
            })
        );
        let wrong_key = pool.vet(signed.clone(), Some(other.public_key())).await;
        assert_eq!(wrong_key.unwrap(), Vetted::Unchecked(signed.clone()));
        let mut bad_id = signed.clone();
        bad_id.event.origin_seq = OriginSeq(2);
        let bad = pool.vet(bad_id.clone(), Some(key.public_key())).await;
        assert_eq!(bad.unwrap(), Vetted::Unchecked(bad_id));
        let unknown = pool.vet(signed.clone(), None).await;
        assert_eq!(unknown.unwrap(), Vetted::Unchecked(signed));
    }

    #[tokio::test]
    async fn zero_workers_means_one_per_core_and_results_come_back() {
        let pool = VerifyPool::new("n", 0, NodeRegistry::new());
        assert!(pool.workers >= 1);
        let rxs: Vec<_> = (0..32u64).map(|i| pool.run(move || i * 2)).collect();
        for (i, rx) in rxs.into_iter().enumerate() {
            assert_eq!(rx.await.unwrap(), i as u64 * 2);
        }
    }

    #[tokio::test]
    async fn a_change_s_receipt_is_verified_over_the_outcome_it_announces_only() {
        let node_key = sst_core::NodeKey::from_seed([5; 32]);
        let registry = NodeRegistry::new().with(NodeId::from("home"), node_key.public_key());
        let pool = VerifyPool::new("n", 1, registry);
        let key = ActorKey::from_seed([1; 32]);
        let signed = SignedEvent::sign(event("n/a"), &key);
        let root = sst_core::StateRoot(signed.id.0);
        let outcome = Outcome::Applied { version: 2, root };
        let receipt = SequencingReceipt::sign(
            NodeId::from("home"),
            &node_key,
            &signed.id,
            &signed.event.state_id,
            &outcome,
            &[],
        );
        let change = AppliedChange {
            signed,
            disclosures: Default::default(),
            effects: Default::default(),
            version: 2,
            root,
            receipt: Some(receipt),
            business_events: Vec::new(),
            endorsements: Vec::new(),
        };
        let good = pool.vet_change(Box::new(change.clone()), Some(key.public_key()));
        let good = good.await.unwrap();
        assert!(good.signed_ref().verified_key().is_some());
        let expected = SequencingReceipt::digest(
            &change.signed.id,
            &change.signed.event.state_id,
            &outcome,
            &[],
        );
        assert_eq!(good.receipt_verified(), Some(&expected));
        // Another version than the receipt signed: nothing is taken as verified.
        let other = AppliedChange {
            version: 3,
            ..change.clone()
        };
        let other = pool.vet_change(Box::new(other), None).await.unwrap();
        assert_eq!(other.receipt_verified(), None);
        assert!(other.signed_ref().verified_key().is_none());
    }

    #[test]
    fn an_event_signed_here_is_verified_under_the_signing_key() {
        let key = ActorKey::from_seed([3; 32]);
        let v = Verified::sign(event("n/a"), &key);
        assert_eq!(v.as_ref().verified_key(), Some(&key.public_key()));
        assert!(v.signed().verify(&key.public_key()).is_ok());
    }
}
