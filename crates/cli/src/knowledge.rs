//! `landfall ingest`, `landfall search` and `landfall eval retrieval`: knowledge bases from the
//! command line, directly on the configured store and indexes (the index directory belongs to
//! one process: stop `landfall serve`, or point `knowledge.index_dir` elsewhere).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use landfall_knowledge::{
    Attachment, Caller, FusionMethod, Knowledge, NewStore, SearchMode, SearchRequest,
};
use landfall_storage::IngestStatus;

/// The tenant anonymous requests belong to, so `landfall serve` with
/// `auth.allow_anonymous` sees what the CLI ingested.
pub(crate) const DEFAULT_TENANT: &str = "anonymous";

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn open(config_path: Option<&Path>) -> anyhow::Result<Arc<Knowledge>> {
    let config = crate::load_config(config_path)?;
    let store = landfall_governance::open_store(&config)
        .await
        .context("cannot open the store")?;
    landfall_server::open_knowledge(&config, store, None)
        .await
        .context(
            "cannot open the knowledge bases (is `landfall serve` running on the same index_dir?)",
        )
}

/// Every file under `paths`, folders walked recursively, in name order.
fn files_under(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(path) = pending.pop() {
        let metadata =
            std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if metadata.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|entry| {
                    !entry
                        .file_name()
                        .is_some_and(|name| name.to_string_lossy().starts_with('.'))
                })
                .collect();
            entries.sort();
            pending.extend(entries.into_iter().rev());
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI reports to its user"
)]
pub(crate) fn ingest(
    config_path: Option<&Path>,
    paths: &[PathBuf],
    kb: &str,
    tenant: &str,
) -> anyhow::Result<()> {
    let files = files_under(paths)?;
    if files.is_empty() {
        anyhow::bail!("no files found under the given paths");
    }
    runtime()?.block_on(async {
        let knowledge = open(config_path).await?;
        let store_id = match knowledge.find_store(tenant, kb).await? {
            Some(store) => store.id,
            None => {
                let new = NewStore {
                    name: kb.to_owned(),
                    ..NewStore::default()
                };
                knowledge.create_store(tenant, new).await?.record.id
            }
        };
        let interactive = std::io::stderr().is_terminal();
        let mut queued = Vec::new();
        let mut unchanged = 0_usize;
        let mut refused: Vec<(PathBuf, String)> = Vec::new();
        for path in &files {
            let name = path.display().to_string();
            let content = match std::fs::read(path) {
                Ok(content) => content,
                Err(error) => {
                    refused.push((path.clone(), error.to_string()));
                    continue;
                }
            };
            if let Some(existing) = knowledge.find_same_file(tenant, &name, &content).await?
                && let Ok(attached) = knowledge.get_store_file(tenant, &store_id, &existing.id).await
                && attached.status == IngestStatus::Completed
            {
                unchanged += 1;
                continue;
            }
            let file = match knowledge.upload_file(tenant, &name, "assistants", &content, None).await {
                Ok(file) => file,
                Err(error) => {
                    refused.push((path.clone(), error.to_string()));
                    continue;
                }
            };
            replace_older_versions(&knowledge, tenant, &store_id, &name, &file.id).await?;
            let attachment = Attachment {
                file_id: file.id.clone(),
                ..Attachment::default()
            };
            knowledge.attach(tenant, &store_id, attachment, None).await?;
            queued.push((path.clone(), file.id));
        }
        let total = queued.len();
        let mut done = BTreeMap::new();
        let started = std::time::Instant::now();
        while done.len() < total {
            for (path, file_id) in &queued {
                if done.contains_key(file_id) {
                    continue;
                }
                let record = knowledge.get_store_file(tenant, &store_id, file_id).await?;
                if record.status != IngestStatus::InProgress {
                    done.insert(file_id.clone(), (path.clone(), record));
                }
            }
            if interactive {
                eprint!("\ringesting into `{kb}`: {}/{total} files", done.len());
            }
            if done.len() < total {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        if interactive && total > 0 {
            eprintln!();
        }
        let mut completed = 0;
        let mut chunks = 0;
        let mut failed = Vec::new();
        for (path, record) in done.into_values() {
            match record.status {
                IngestStatus::Completed => {
                    completed += 1;
                    chunks += record.chunk_count;
                }
                _ => failed.push((
                    path,
                    record
                        .last_error
                        .map_or_else(|| record.status.as_str().to_owned(), |error| error.message),
                )),
            }
        }
        failed.extend(refused);
        knowledge.shutdown().await;
        println!(
            "{kb} ({store_id}): {completed} ingested ({chunks} chunks), {unchanged} unchanged, {} failed in {:.1}s",
            failed.len(),
            started.elapsed().as_secs_f64()
        );
        for (path, reason) in &failed {
            println!("  failed: {}: {reason}", path.display());
        }
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{} of {} files failed", failed.len(), files.len())
        }
    })
}

/// Detaches (and deletes) earlier uploads of the same path, so a changed file replaces its
/// old chunks instead of adding to them.
async fn replace_older_versions(
    knowledge: &Knowledge,
    tenant: &str,
    store_id: &str,
    name: &str,
    keep: &str,
) -> anyhow::Result<()> {
    let mut page = landfall_storage::PageRequest {
        after: None,
        limit: 1000,
    };
    loop {
        let files = knowledge.list_files(tenant, None, &page, false).await?;
        let Some(last) = files.last().map(|file| file.id.clone()) else {
            return Ok(());
        };
        for file in files {
            if file.filename == name
                && file.id != keep
                && knowledge
                    .get_store_file(tenant, store_id, &file.id)
                    .await
                    .is_ok()
            {
                knowledge.delete_file(tenant, &file.id).await?;
            }
        }
        page.after = Some(last);
    }
}

#[expect(clippy::print_stdout, reason = "the CLI reports to its user")]
pub(crate) fn search(
    config_path: Option<&Path>,
    kb: &str,
    tenant: &str,
    query: &str,
    limit: usize,
    mode: SearchMode,
    json: bool,
) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let knowledge = open(config_path).await?;
        let store = knowledge
            .find_store(tenant, kb)
            .await?
            .with_context(|| format!("there is no knowledge base `{kb}` (tenant `{tenant}`)"))?;
        let request = SearchRequest {
            query: query.to_owned(),
            filter: None,
            max_results: limit,
            score_threshold: 0.0,
            mode,
            fusion: FusionMethod::Rrf,
            rewrite_query: false,
            hyde: false,
            fusion_queries: 0,
            rerank: true,
        };
        let results = knowledge
            .search(
                &Caller::background(tenant),
                std::slice::from_ref(&store.id),
                &request,
            )
            .await?;
        knowledge.shutdown().await;
        if json {
            println!("{}", serde_json::to_string_pretty(&results.hits)?);
            return Ok(());
        }
        if results.hits.is_empty() {
            println!("no results");
        }
        for (rank, hit) in results.hits.iter().enumerate() {
            let page = hit
                .page
                .map(|page| format!(", page {page}"))
                .unwrap_or_default();
            let heading = if hit.heading_path.is_empty() {
                String::new()
            } else {
                format!(" — {}", hit.heading_path.join(" › "))
            };
            println!(
                "[{}] {:.3} {}{page}{heading}",
                rank + 1,
                hit.score,
                hit.filename
            );
            let snippet: String = hit.text.chars().take(240).collect();
            println!("    {}", snippet.replace('\n', " "));
        }
        Ok(())
    })
}

#[expect(clippy::print_stdout, reason = "the CLI reports to its user")]
pub(crate) fn eval_retrieval(
    datasets: &[PathBuf],
    embedder: Option<&Path>,
    max_queries: Option<usize>,
    json: bool,
) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let embedder: Option<Arc<dyn landfall_knowledge::Embedder>> = match embedder {
            Some(dir) => {
                let dir = dir.to_owned();
                let loaded = tokio::task::spawn_blocking(move || {
                    landfall_knowledge::LocalEmbedder::load(&dir, 32)
                })
                .await??;
                Some(Arc::new(loaded))
            }
            None => None,
        };
        let mut reports = Vec::new();
        for dataset in datasets {
            let work = tempfile::tempdir().context("cannot create a working directory")?;
            let report = landfall_knowledge::eval::evaluate_dataset(
                dataset,
                work.path(),
                embedder.clone(),
                max_queries,
            )
            .await
            .with_context(|| format!("evaluating {}", dataset.display()))?;
            if !json {
                print_report(&report);
            }
            reports.push(report);
        }
        if json {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        }
        Ok(())
    })
}

#[expect(clippy::print_stdout, reason = "the CLI reports to its user")]
fn print_report(report: &landfall_knowledge::eval::EvalReport) {
    println!(
        "{}: {} documents, {} chunks, {} queries; indexing {:.1}s, embedding {:.1}s ({})",
        report.dataset,
        report.documents,
        report.chunks,
        report.queries,
        report.index_seconds,
        report.embed_seconds,
        report.embedding_model.as_deref().unwrap_or("no embedder"),
    );
    println!("  mode          nDCG@10  Recall@10  Recall@100  MRR@10  p50 ms  p99 ms");
    for mode in &report.modes {
        println!(
            "  {:<12}  {:>7.3}  {:>9.3}  {:>10.3}  {:>6.3}  {:>6.1}  {:>6.1}",
            mode.mode,
            mode.ndcg_at_10,
            mode.recall_at_10,
            mode.recall_at_100,
            mode.mrr_at_10,
            mode.query_ms_p50,
            mode.query_ms_p99
        );
    }
}
