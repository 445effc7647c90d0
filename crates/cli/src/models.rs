//! `landfall models`: fetching models from the Hugging Face Hub ahead of `serve`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use landfall_models::ModelSource;
use landfall_providers::hub::{FileProgress, HubRepo, ProgressFn};

#[derive(Subcommand)]
pub(crate) enum ModelCommand {
    /// Fetch a BERT-family embedder or cross-encoder, or one GGUF chat model file (`--file`),
    /// from the Hugging Face Hub into its cache (resuming an interrupted download); print the
    /// folder (or file) it is in.
    #[command(
        after_help = "Examples:\n  landfall models fetch sentence-transformers/all-MiniLM-L6-v2\n  \
                            landfall models fetch BAAI/bge-small-zh-v1.5@main --cache-dir /var/cache/landfall/models\n  \
                            landfall models fetch bartowski/SmolLM2-135M-Instruct-GGUF --file SmolLM2-135M-Instruct-Q8_0.gguf\n  \
                            HF_ENDPOINT=https://hf-mirror.com landfall models fetch BAAI/bge-base-zh-v1.5\n\n\
                            The cache is the Hub's own layout (shared with Python's huggingface_hub): \
                            --cache-dir, else HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub. \
                            A private repository needs HF_TOKEN."
    )]
    Fetch {
        /// `org/name`, optionally `@revision` (a branch, tag or commit).
        repo: String,
        /// The cache folder (the same as `cache_dir` of `[knowledge.embedder]`).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// The Hub or a mirror of it (default: HF_ENDPOINT, else https://huggingface.co).
        #[arg(long)]
        endpoint: Option<String>,
        /// One file of the repository (a GGUF chat model for a `type = "local"` provider's
        /// `hub_repo` and `file`) instead of an embedder's files.
        #[arg(long)]
        file: Option<String>,
    },
}

#[expect(clippy::print_stdout, reason = "the CLI reports to its user")]
pub(crate) fn run(command: ModelCommand) -> anyhow::Result<()> {
    let ModelCommand::Fetch {
        repo,
        cache_dir,
        endpoint,
        file,
    } = command;
    let cache_dir = cache_dir.unwrap_or_else(landfall_models::default_cache_dir);
    if let Some(file) = file {
        let (repo_id, revision) = repo.split_once('@').unwrap_or((&repo, "main"));
        let path = match landfall_models::cached_file(&cache_dir, repo_id, revision, &file) {
            Some(path) => path,
            None => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the async runtime")?;
                let repo = HubRepo {
                    repo_id,
                    revision,
                    cache_dir: &cache_dir,
                };
                runtime.block_on(fetch_file(&repo, &file, endpoint.as_deref()))?
            }
        };
        println!("{}", path.display());
        return Ok(());
    }
    let dir = match landfall_models::locate(&repo, &cache_dir)? {
        ModelSource::Folder(dir) => dir,
        ModelSource::Hub { repo_id, revision } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(fetch(&repo_id, &revision, &cache_dir, endpoint.as_deref()))?
        }
    };
    println!("{}", dir.display());
    Ok(())
}

async fn fetch(
    repo_id: &str,
    revision: &str,
    cache_dir: &Path,
    endpoint: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let repo = HubRepo {
        repo_id,
        revision,
        cache_dir,
    };
    let bars = Bars::default();
    let progress: ProgressFn = {
        let bars = bars.clone();
        Arc::new(move |progress: &FileProgress| bars.update(progress))
    };
    let dir = landfall_server::fetch_model(&repo, endpoint, &progress).await;
    bars.finish();
    Ok(dir?)
}

/// One file of `repo`, with a progress bar; returns its path in the snapshot.
async fn fetch_file(
    repo: &HubRepo<'_>,
    file: &str,
    endpoint: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let hub = landfall_providers::hub::HubClient::from_env(endpoint)?;
    let bars = Bars::default();
    let progress: ProgressFn = {
        let bars = bars.clone();
        Arc::new(move |progress: &FileProgress| bars.update(progress))
    };
    let fetched = hub.fetch_file(repo, file, Some(&progress)).await;
    bars.finish();
    let failed = || {
        format!(
            "could not fetch {file} from `{}` on the Hugging Face Hub at {}",
            repo.repo_id,
            hub.endpoint()
        )
    };
    match fetched.with_context(failed)? {
        Some(snapshot) => Ok(snapshot.join(file)),
        None => anyhow::bail!("`{}` has no file {file}", repo.repo_id),
    }
}

/// One progress bar per file, on stderr.
#[derive(Clone, Default)]
struct Bars {
    all: MultiProgress,
    files: Arc<Mutex<HashMap<String, ProgressBar>>>,
}

impl Bars {
    fn update(&self, progress: &FileProgress) {
        let Ok(mut files) = self.files.lock() else {
            return;
        };
        let bar = files.entry(progress.file.clone()).or_insert_with(|| {
            let bar = self
                .all
                .add(ProgressBar::new(progress.bytes_total.unwrap_or(0)));
            let template =
                "{msg:32} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta}";
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_message(progress.file.clone());
            bar
        });
        bar.set_position(progress.bytes_done);
    }

    fn finish(&self) {
        if let Ok(files) = self.files.lock() {
            for bar in files.values() {
                bar.finish();
            }
        }
    }
}
