//! Integration tests of `landfall-storage`: one conformance suite run on every backend, plus
//! what only one backend can show (SQLite files surviving a reopen, PostgreSQL being down).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod audit;
mod conformance;
mod guardrails;
mod knowledge;
mod memory;
mod postgres;
mod responses;
mod sqlite;

/// Generates one `#[tokio::test]` per conformance case for a backend. `$fixture` has
/// `start(test_name) -> Option<Self>` (`None`: skipped, after saying why), `store()`,
/// `backdoor()` (raw database access, for the audit cases that tamper) and `finish()`.
///
/// The case runs in its own task so that when it fails the fixture still cleans up (drops its
/// PostgreSQL schema) before the failure is passed on.
macro_rules! conformance_suite {
    ($fixture:ty) => {
        $crate::conformance_suite!(
            @in conformance $fixture;
            tenant_round_trip,
            tenant_conflict,
            tenants_list_in_id_order_and_pages,
            key_round_trip,
            key_conflict,
            key_for_missing_tenant,
            keys_list_by_tenant_and_page,
            usage_accumulates_and_totals,
            usage_totals_respect_since_and_scope,
            concurrent_usage_sums_exactly,
            ping_answers,
        );
        $crate::conformance_suite!(
            @audit_cases $fixture;
            audit_append_numbers_and_chains,
            audit_append_refuses_non_objects_whole,
            audit_large_batches_span_statements,
            audit_pages_filter_by_every_column,
            audit_cursor_pages_walk_everything_once,
            audit_verify_reports_an_intact_chain,
            audit_prune_removes_only_the_time_ordered_prefix,
            audit_rows_are_append_only,
            audit_altered_records_are_found,
            audit_deleted_middle_records_are_missing,
            audit_deleted_last_records_are_truncated,
            audit_torn_last_record_is_reported,
            audit_concurrent_appenders_form_one_chain,
        );
        $crate::conformance_suite!(
            @in guardrails $fixture;
            reviews_round_trip_page_and_decide_once,
            rule_set_versions_are_saved_once,
        );
        $crate::conformance_suite!(
            @in responses $fixture;
            responses_round_trip_and_stay_in_their_tenant,
            approvals_round_trip_page_and_decide_once,
            prompt_versions_are_immutable_and_list_latest,
        );
        $crate::conformance_suite!(
            @in memory $fixture;
            conversations_append_page_and_stay_in_their_tenant,
            memories_list_per_user_and_delete_in_their_tenant,
        );
        $crate::conformance_suite!(
            @in knowledge $fixture;
            knowledge_files_are_tenant_scoped_and_page,
            knowledge_vector_stores_round_trip,
            knowledge_ingest_lifecycle_and_change_log,
            knowledge_cancel_batch_stops_pending_files,
            knowledge_change_log_is_gapless_under_concurrency,
        );
    };
    (@in $module:ident $fixture:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let Some(fixture) = <$fixture>::start(stringify!($case)).await else {
                    return;
                };
                let outcome = tokio::spawn(crate::$module::$case(fixture.store())).await;
                fixture.finish().await;
                if let Err(err) = outcome {
                    std::panic::resume_unwind(err.into_panic());
                }
            }
        )*
    };
    (@audit_cases $fixture:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let Some(fixture) = <$fixture>::start(stringify!($case)).await else {
                    return;
                };
                let outcome = tokio::spawn(crate::audit::$case(
                    fixture.store(),
                    fixture.backdoor(),
                ))
                .await;
                fixture.finish().await;
                if let Err(err) = outcome {
                    std::panic::resume_unwind(err.into_panic());
                }
            }
        )*
    };
}
pub(crate) use conformance_suite;
