//! `landfall audit …`: checking the audit log's hash chain and applying retention, directly on
//! the configured store (the server may be running).

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Subcommand;
use landfall_storage::{AuditLog, verify_audit};

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Check that no audit record was altered, deleted or torn: every record's hash against its
    /// contents and the one before it, sequence numbers without gaps, and the last record
    /// against the chain head. Exits 0 when the log is intact, 1 otherwise.
    #[command(
        after_help = "Examples:\n  landfall audit verify\n  landfall audit verify --config landfall.toml --json\n\n\
                      Records removed by retention are not missing: verification starts after them."
    )]
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete records older than the given number of days now (the server also does it hourly,
    /// by `audit.retention_days`). The chain stays verifiable.
    #[command(after_help = "Example:\n  landfall audit prune --older-than-days 90")]
    Prune {
        #[arg(long)]
        older_than_days: u32,
    },
}

pub(crate) fn run(config_path: Option<&Path>, command: AuditCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let config = crate::load_config(config_path)?;
        let store = landfall_governance::open_store(&config)
            .await
            .context("cannot open the store")?;
        match command {
            AuditCommand::Verify { json } => verify(store.as_ref(), json).await,
            AuditCommand::Prune { older_than_days } => prune(store.as_ref(), older_than_days).await,
        }
    })
}

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI reports to its user"
)]
async fn verify(log: &dyn AuditLog, json: bool) -> anyhow::Result<()> {
    let interactive = std::io::stderr().is_terminal();
    let mut next_report = 100_000;
    let report = verify_audit(log, |checked| {
        if interactive && checked >= next_report {
            eprint!("\rverified {checked} records…");
            next_report = checked + 100_000;
        }
    })
    .await
    .context("cannot read the audit log")?;
    if interactive && next_report > 100_000 {
        eprintln!();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.is_intact() {
        let range = match (report.first_seq, report.last_seq) {
            (Some(first), Some(last)) => format!(" (records {first} to {last})"),
            _ => String::new(),
        };
        println!(
            "audit log intact: {} records{range}; head hash {}",
            report.records,
            hex::encode(report.head_hash)
        );
        if report.anchor_seq > 0 {
            println!(
                "records up to {} were removed by retention",
                report.anchor_seq
            );
        }
    } else {
        println!("audit log NOT intact: {} records checked", report.records);
        for problem in &report.problems {
            println!("  - {problem}");
        }
        if report.problems_omitted > 0 {
            println!("  … and {} more problems", report.problems_omitted);
        }
    }
    if report.is_intact() {
        Ok(())
    } else {
        anyhow::bail!("the audit log failed verification")
    }
}

#[expect(clippy::print_stdout, reason = "the CLI reports to its user")]
async fn prune(log: &dyn AuditLog, older_than_days: u32) -> anyhow::Result<()> {
    let keep = Duration::from_secs(u64::from(older_than_days) * 86_400);
    let before = SystemTime::now()
        .checked_sub(keep)
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
    let deleted = log
        .prune_audit(before)
        .await
        .context("cannot prune the audit log")?;
    println!("deleted {deleted} audit records older than {older_than_days} days");
    Ok(())
}
