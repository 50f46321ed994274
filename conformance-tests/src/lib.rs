//! # conformance-tests
//!
//! The behaviour suite that defines the [`sst_core::Store`] contract. Every adapter calls it
//! from its own `tests/conformance.rs` in one line:
//!
//! ```ignore
//! async fn factory() -> anyhow::Result<Option<MyFactory>> { /* None = skip (no server URL) */ }
//! conformance_tests::suite!(factory());
//! ```
//!
//! which expands to one `#[tokio::test]` per case, so `cargo test` reports each case by name.
//! Adapters whose suite needs a server declare that test target (and every other
//! server-backed one) with `required-features = ["server-tests"]`, so the plain
//! `cargo test --workspace` neither builds nor counts suites that could only skip;
//! `cargo xtask integration` enables the feature and runs them against real servers.
//! Each case gets a fresh namespace (database, schema, file or collection prefix) from the
//! factory, and raw access to the native column for the tamper and redaction cases.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod cases;
mod endorsement_cases;
pub mod fixtures;
mod log_cases;
mod notify_cases;
mod setups;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sst_core::{ActorId, ContractRef, EventId, NodeId, PublicKey, StateId, StateRoot, Store};

/// Access to a store's raw tables behind its back, the way a DBA or an attacker with SQL
/// access would change them. Implemented per adapter with a raw SQL/driver statement on the
/// native JSON column.
#[async_trait]
pub trait RawAccess: Send + Sync {
    /// The queryable data document (`{section: value}`) of `version` of `id`, as the history
    /// shows it to a user: read from the documented history view (`sst_state_versions`; on a
    /// document store, the documented aggregation over the history and section versions).
    async fn raw_data(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>>;
    /// The stored section hashes/salts document for `version` of `id`.
    async fn raw_seals(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>>;
    /// Overwrites the data document of `version` of `id` where it is stored: each section's
    /// value is written into the section version that `version` holds (so every version
    /// holding that same section version reads the edit too), and into the current-state row
    /// when `version` is the latest.
    async fn set_raw_data(&self, id: &StateId, version: u64, data: Value) -> anyhow::Result<()>;
    /// Swaps the stored data documents of history versions `a` and `b` of `id`: the section
    /// versions in which they differ exchange their values.
    async fn swap_history_data(&self, id: &StateId, a: u64, b: u64) -> anyhow::Result<()>;
    /// Rewrites this namespace's state tables into SST's first layout, holding exactly the
    /// versions stored now: a current-state table and a history table, each with the columns
    /// `id, contract_name, contract_version, version, parties, seals, data, root, prev_root,
    /// last_event, updated_at` (every history row carrying its whole data document; on a
    /// document store, those fields), and no section table or history view. The next
    /// `migrate` must upgrade it in place. `Ok(false)` from a store without a table layout
    /// (the in-memory reference): the case is then NOT RUN.
    async fn downgrade_to_first_layout(&self) -> anyhow::Result<bool>;
    /// Whether the store keeps the latest version in a current-state table of its own, beside
    /// the history (every SQL adapter does; the in-memory reference does not).
    fn has_current_state_table(&self) -> bool {
        false
    }
    /// Overwrites the data document of the current-state row of `id` only, leaving the history
    /// untouched. Only called when [`RawAccess::has_current_state_table`] is true.
    async fn set_current_data_only(&self, id: &StateId, data: Value) -> anyhow::Result<()> {
        let _ = (id, data);
        anyhow::bail!("this store keeps no separate current-state row")
    }
    /// Applies `m` to the raw tables. `Ok(false)` when the store has no such row at all (e.g.
    /// a current-state row on a store without a current-state table): the case then reports
    /// itself NOT RUN.
    async fn mutate(&self, m: &Mutation) -> anyhow::Result<bool>;
    /// The stored value of `column` of the event row `event`, as JSON (a JSON document
    /// column as the document, text as a string, an integer as a number, `NULL` as `null`);
    /// `Ok(None)` when no such row is stored. A store without an event table of its own (the
    /// in-memory reference) returns `Ok(None)` for every event, and the cases reading raw
    /// event columns report themselves NOT RUN there.
    async fn raw_event_column(
        &self,
        event: &EventId,
        column: EventColumn,
    ) -> anyhow::Result<Option<Value>>;
}

/// One row-level change made behind the store's back (the tamper matrix of the suite).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Mutation {
    /// `DELETE` the current-state row of a state (history untouched).
    DeleteCurrentRow(StateId),
    /// Replace the current-state row of a state by its history row of `version`.
    RollBackCurrentRow {
        /// State.
        id: StateId,
        /// The older version it is rolled back to.
        version: u64,
    },
    /// `DELETE` `version` of a state from the history (the current row untouched).
    DeleteHistoryVersion {
        /// State.
        id: StateId,
        /// Version removed.
        version: u64,
    },
    /// `INSERT` a copy of history row `from` as version `to`: a version no event produced.
    CopyHistoryVersion {
        /// State.
        id: StateId,
        /// Row copied.
        from: u64,
        /// Version number the copy claims.
        to: u64,
    },
    /// `DELETE` an event row.
    DeleteEvent(EventId),
    /// `UPDATE` a rejected event's outcome columns to applied with `version` and `root`.
    RelabelApplied {
        /// The rejected event.
        event: EventId,
        /// Version it now claims.
        version: u64,
        /// Root it now claims.
        root: StateRoot,
    },
    /// `UPDATE` one column of an event row to `value` (a JSON string or integer for plain
    /// columns, a JSON document or `null` for `receipt`, `business_events` and
    /// `endorsements`).
    SetEventColumn {
        /// The event.
        event: EventId,
        /// The column.
        column: EventColumn,
        /// Its new value.
        value: Value,
    },
    /// `ALTER TABLE … DROP COLUMN` on the event table (every row loses the column; a document
    /// store unsets the field in every event document): the layout of a release before that
    /// column, which the next `migrate` must upgrade. `Ok(false)` from a store without a
    /// table layout (the in-memory reference).
    DropEventColumn(EventColumn),
    /// `DELETE` the log entry at this position (the record it binds untouched).
    DeleteLogEntry(u64),
    /// `INSERT` a copy of log entry `from` (same kind, subject, hashes) at position `to`.
    CopyLogEntry {
        /// Position copied.
        from: u64,
        /// Position of the copy (past the head).
        to: u64,
    },
    /// Swap the positions of log entries `a` and `b` (a reordered log).
    SwapLogEntries {
        /// First position.
        a: u64,
        /// Second position.
        b: u64,
    },
    /// `DELETE` every log entry at position `from` or later (the records untouched).
    TruncateLog {
        /// First position removed.
        from: u64,
    },
    /// `UPDATE` the public key column of an actor row.
    SetActorKey {
        /// The actor.
        actor: ActorId,
        /// The key written in its place.
        key: PublicKey,
    },
    /// `UPDATE` the stored descriptor (policy, methods, …) of a contract row.
    SetContractDescriptor {
        /// The contract version.
        contract: ContractRef,
        /// The descriptor JSON written in its place.
        descriptor: Value,
    },
    /// `DELETE` the refusal row of an event.
    DeleteRefusal(EventId),
    /// `DELETE` a checkpoint row.
    DeleteCheckpoint {
        /// Whose checkpoint.
        node: NodeId,
        /// At which position.
        pos: u64,
    },
}

/// An event-table column a [`Mutation::SetEventColumn`] rewrites. Every adapter stores these
/// under the column (or document field) named by [`EventColumn::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventColumn {
    /// `state_id` (text).
    StateId,
    /// `actor` (text).
    Actor,
    /// `origin_seq` (integer).
    OriginSeq,
    /// `reason` (text, the reject reason code).
    Reason,
    /// `new_root` (text).
    NewRoot,
    /// `receipt` (JSON document or null).
    Receipt,
    /// `business_events` (JSON array or null).
    BusinessEvents,
    /// `endorsements` (JSON array or null).
    Endorsements,
    /// `disclosures` (JSON document: per disclosed section, `{salt, value}` inline or
    /// `{salt, hash}` naming its section version).
    Disclosures,
}

impl EventColumn {
    /// The column (or document field) name.
    pub fn name(self) -> &'static str {
        match self {
            EventColumn::StateId => "state_id",
            EventColumn::Actor => "actor",
            EventColumn::OriginSeq => "origin_seq",
            EventColumn::Reason => "reason",
            EventColumn::NewRoot => "new_root",
            EventColumn::Receipt => "receipt",
            EventColumn::BusinessEvents => "business_events",
            EventColumn::Endorsements => "endorsements",
            EventColumn::Disclosures => "disclosures",
        }
    }

    /// Whether the column holds a JSON document (its value is the document, `null` for SQL
    /// `NULL`), rather than text or an integer.
    pub fn is_document(self) -> bool {
        matches!(
            self,
            EventColumn::Receipt
                | EventColumn::BusinessEvents
                | EventColumn::Endorsements
                | EventColumn::Disclosures
        )
    }
}

/// An opened store under test with raw access to the same database.
#[derive(Clone)]
pub struct Backend {
    /// The store (already migrated).
    pub store: Arc<dyn Store>,
    /// Raw access to its tables.
    pub raw: Arc<dyn RawAccess>,
}

/// Opens stores for one test case. One factory = one fresh namespace.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// Opens (and migrates) the store on this factory's namespace.
    async fn open(&self) -> anyhow::Result<Backend>;
    /// Opens a new, independent handle on the same namespace (durability / reopen cases).
    /// Stores without durability return the same data they would after a process restart:
    /// i.e. nothing; they declare `durable: false` in their capabilities.
    async fn reopen(&self) -> anyhow::Result<Backend>;
}

/// For server-backed suites: `Ok(None)` (skip, with a loud message) when `var` is unset,
/// unless `SST_REQUIRE_BACKEND=1`, in which case a missing URL fails the test. Only reached
/// in targets built with their adapter's `server-tests` feature, which someone enabled on
/// purpose; a skipped case there still counts as passed in libtest's summary.
///
/// # Errors
/// When the variable is unset and `SST_REQUIRE_BACKEND=1`.
pub fn url_or_skip(var: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Some(v)),
        _ if std::env::var("SST_REQUIRE_BACKEND").as_deref() == Ok("1") => {
            anyhow::bail!("{var} is not set and SST_REQUIRE_BACKEND=1")
        }
        _ => {
            eprintln!("skipping: set {var}");
            Ok(None)
        }
    }
}

/// Marker printed (on stdout and stderr) by a case that cannot run on a backend. libtest can
/// only count such a case as passed, so `cargo xtask integration` runs the suite with
/// `--nocapture`, collects these lines and reports the case as NOT RUN, never as passed.
pub const NOT_RUN_MARKER: &str = "SST-NOT-RUN";

/// Reports that `case` could not run on `backend` and why (see [`NOT_RUN_MARKER`]).
pub fn not_run(case: &str, backend: &str, reason: &str) {
    let line = format!("{NOT_RUN_MARKER} case={case} backend={backend} reason={reason}");
    println!("{line}");
    eprintln!("{line}");
}

/// Expands to one `#[tokio::test]` per conformance case. `$factory` is an expression of type
/// `impl Future<Output = anyhow::Result<Option<impl BackendFactory>>>`, evaluated once per case
/// (`None` skips the case). The calling crate needs `tokio` (macros, rt-multi-thread) and
/// `anyhow` as dev-dependencies.
#[macro_export]
macro_rules! suite {
    ($factory:expr) => {
        $crate::suite!(@cases $factory;
            migrate_is_idempotent,
            failed_batch_leaves_nothing_behind,
            non_portable_json_is_rejected_with_its_path,
            malformed_batch_is_refused_before_storage,
            version_must_follow_the_stored_version,
            concurrent_commits_on_one_base_have_exactly_one_winner,
            batch_may_hold_several_versions_of_one_state,
            prepared_batch_commits_as_the_batch_itself,
            replayed_event_is_skipped_and_reported_as_duplicate,
            reused_origin_seq_is_a_conflict,
            last_origin_seq_is_the_highest_recorded_per_node,
            origin_seq_survives_reopen,
            every_version_stays_readable,
            portable_json_round_trips_with_identical_hashes,
            five_megabyte_state_round_trips,
            rejected_events_are_recorded_with_their_reason,
            events_are_queryable_by_state_actor_origin_and_outcome,
            non_state_events_are_applied_without_a_state,
            redacted_sections_store_no_plaintext_or_salt,
            data_column_holds_exactly_the_disclosed_sections,
            tampered_number_is_reported_with_state_and_version,
            tampered_string_is_reported_with_state_and_version,
            added_key_is_reported_with_state_and_version,
            edited_shared_section_version_is_reported_in_every_version_holding_it,
            unchanged_sections_are_stored_once_and_every_version_reads_back,
            event_rows_name_the_section_versions_they_disclose,
            first_layout_is_upgraded_in_place_without_losing_a_version,
            removed_key_is_reported_with_state_and_version,
            swapped_history_rows_are_reported_with_state_and_versions,
            tampered_current_row_only_is_reported,
            actors_are_upserted_and_listed_sorted,
            contracts_are_recorded_once_per_identity,
            unknown_things_read_as_nothing_and_ids_are_sorted,
            refusals_are_recorded_listed_and_cleared,
            deleted_current_row_is_reported,
            rolled_back_current_row_is_reported,
            latest_version_removed_everywhere_is_reported,
            deleted_state_is_reported,
            history_version_nobody_committed_is_reported,
            deleted_event_is_reported,
            rejected_event_relabelled_applied_is_reported,
            every_write_appends_one_chained_log_entry,
            checkpoints_are_kept_per_node_and_position,
            concurrent_writers_never_fork_the_log,
            rewritten_event_state_is_reported,
            rewritten_event_actor_is_reported,
            rewritten_event_origin_seq_is_reported,
            rewritten_event_reason_is_reported,
            rewritten_event_root_is_reported,
            removed_event_receipt_is_reported,
            deleted_log_entry_is_reported,
            duplicated_log_entry_is_reported,
            reordered_log_entries_are_reported,
            log_cut_below_a_checkpoint_is_reported,
            replaced_actor_key_is_reported,
            edited_contract_policy_is_reported,
            deleted_refusal_is_reported,
            deleted_event_row_leaves_its_entry_unbound,
            added_business_event_is_reported,
            business_events_round_trip_and_verify,
            edited_business_event_payload_is_reported,
            sink_cursors_move_forward_per_sink,
            pruning_keeps_the_latest_checkpoints,
            endorsements_round_trip_exactly,
            edited_endorsement_signature_is_reported,
            removed_endorsement_is_reported,
            added_endorsement_is_reported,
            malformed_endorsements_column_is_an_integrity_error,
            event_table_without_endorsements_gains_them_on_migrate,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> anyhow::Result<()> {
                match $factory.await? {
                    Some(factory) => $crate::cases::$case(&factory).await,
                    None => Ok(()),
                }
            }
        )*
    };
}
