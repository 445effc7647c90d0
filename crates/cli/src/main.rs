//! The `landfall` binary: parses the command line, sets up logging, and runs a command.

mod audit;
mod knowledge;
mod manage;
mod models;
mod serve;
mod telemetry;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

// mimalloc: the request path allocates many short-lived buffers; measured faster than glibc's
// allocator under load (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "landfall",
    version,
    about = "Landfall: an OpenAI-compatible LLM application server",
    long_about = "Landfall puts model providers behind one OpenAI-compatible API with routing, \
                  retries and fallback.",
    after_help = "Examples:\n  landfall serve\n  landfall serve --config landfall.toml --listen 0.0.0.0:8080\n  landfall check-config landfall.toml"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LANDFALL_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    #[command(
        after_help = "Examples:\n  landfall serve\n  landfall serve --model ./SmolLM2-135M-Instruct.Q4_1.gguf\n  \
                            landfall serve --config landfall.toml\n  \
                            landfall serve --config landfall.toml --listen 0.0.0.0:8080\n  \
                            LANDFALL__SERVER__LISTEN=0.0.0.0:9000 landfall serve\n\n\
                            Without --config the embedded defaults are used: 127.0.0.1:8080. With no \
                            provider configured, the model alias `local` runs a GGUF chat model in \
                            process: --model (or LANDFALL_LOCAL_MODEL), else SmolLM2-135M-Instruct \
                            fetched from the Hugging Face Hub on first use.\n\n\
                            SIGHUP (or POST /admin/v1/reload) reads the configuration again and swaps \
                            providers and model aliases without dropping requests. \
                            Log level: LANDFALL_LOG=debug (or RUST_LOG)."
    )]
    Serve {
        /// TOML configuration file (see landfall.example.toml).
        #[arg(long, short, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on; overrides `server.listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// A GGUF chat model for the `local` alias, used when no provider is configured.
        #[arg(long, env = "LANDFALL_LOCAL_MODEL")]
        model: Option<PathBuf>,
    },
    /// Validate a configuration file and list every problem found.
    #[command(after_help = "Examples:\n  landfall check-config landfall.toml\n  \
                            OPENAI_API_KEY=sk-... landfall check-config landfall.example.toml\n\n\
                            Exits 0 when the file is valid, 1 otherwise.")]
    CheckConfig {
        /// TOML configuration file.
        file: PathBuf,
    },
    /// Manage tenants in the configured metadata store.
    Tenants {
        /// TOML configuration file naming the store (default: the embedded SQLite file).
        #[arg(long, short, global = true, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: manage::TenantCommand,
    },
    /// Manage API keys in the configured metadata store.
    Keys {
        /// TOML configuration file naming the store (default: the embedded SQLite file).
        #[arg(long, short, global = true, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: manage::KeyCommand,
    },
    /// Check the audit log for tampering, or apply retention now.
    Audit {
        /// TOML configuration file naming the store (default: the embedded SQLite file).
        #[arg(long, short, global = true, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Ingest files and folders into a knowledge base (created if missing).
    #[command(after_help = "Examples:\n  landfall ingest manuals/ --kb manuals\n  \
                            landfall ingest policy.pdf faq.html --kb hr --config landfall.toml\n\n\
                            Folders are walked recursively. A file already ingested with the same \
                            path and content is skipped; a changed file replaces its old chunks. \
                            Exits 1 when any file failed, after listing why.")]
    Ingest {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Knowledge base (vector store) name or id.
        #[arg(long)]
        kb: String,
        /// Tenant owning the knowledge base.
        #[arg(long, default_value = knowledge::DEFAULT_TENANT)]
        tenant: String,
        #[arg(long, short, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Search a knowledge base.
    #[command(
        after_help = "Examples:\n  landfall search --kb manuals \"how do I reset the pump\"\n  \
                            landfall search --kb hr --mode keyword -n 3 --json \"报销流程\""
    )]
    Search {
        query: String,
        #[arg(long)]
        kb: String,
        #[arg(long, default_value = knowledge::DEFAULT_TENANT)]
        tenant: String,
        /// Results to show (1 to 50).
        #[arg(short = 'n', long, default_value_t = 5)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = SearchModeArg::Hybrid)]
        mode: SearchModeArg,
        /// Print the hits as JSON.
        #[arg(long)]
        json: bool,
        #[arg(long, short, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Fetch models from the Hugging Face Hub ahead of `serve`.
    Models {
        #[command(subcommand)]
        command: models::ModelCommand,
    },
    /// Evaluate retrieval quality on BEIR-format collections.
    Eval {
        #[command(subcommand)]
        command: EvalCommand,
    },
}

#[derive(Subcommand)]
enum EvalCommand {
    /// nDCG@10, Recall@10, Recall@100 and MRR@10 of BM25, vector and hybrid search, with a
    /// character-unigram BM25 baseline, and ingest and query timings.
    #[command(
        after_help = "Examples:\n  landfall eval retrieval --dataset data/ir/cisi\n  \
                            landfall eval retrieval --dataset data/ir/rgb-zh --dataset data/ir/cisi \\\n      \
                            --embedder ~/models/all-MiniLM-L6-v2 --json\n\n\
                            A dataset folder holds corpus.jsonl, queries.jsonl and qrels/test.tsv."
    )]
    Retrieval {
        #[arg(long = "dataset", required = true)]
        datasets: Vec<PathBuf>,
        /// A sentence-embedding model folder; without one, only BM25 is evaluated.
        #[arg(long)]
        embedder: Option<PathBuf>,
        /// Evaluate only the first N queries.
        #[arg(long)]
        max_queries: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SearchModeArg {
    Hybrid,
    Keyword,
    Vector,
}

impl From<SearchModeArg> for landfall_knowledge::SearchMode {
    fn from(mode: SearchModeArg) -> Self {
        match mode {
            SearchModeArg::Hybrid => Self::Hybrid,
            SearchModeArg::Keyword => Self::Keyword,
            SearchModeArg::Vector => Self::Vector,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every TLS client in the process (providers, tools, stores) uses ring; installing it as
    // the default lets a client that does not name a provider find one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // `serve` sets logging up once it has read its configuration, which says where traces go.
    if !matches!(cli.command, Command::Serve { .. })
        && let Err(error) = init_logging(cli.log_format, None, false)
    {
        return report(Err(error));
    }
    match cli.command {
        Command::Serve {
            config,
            listen,
            model,
        } => report(serve::run(config, listen, model, cli.log_format)),
        Command::CheckConfig { file } => check_config(&file),
        Command::Tenants { config, command } => report(manage::tenants(config.as_deref(), command)),
        Command::Keys { config, command } => report(manage::keys(config.as_deref(), command)),
        Command::Audit { config, command } => report(audit::run(config.as_deref(), command)),
        Command::Ingest {
            paths,
            kb,
            tenant,
            config,
        } => report(knowledge::ingest(config.as_deref(), &paths, &kb, &tenant)),
        Command::Search {
            query,
            kb,
            tenant,
            limit,
            mode,
            json,
            config,
        } => report(knowledge::search(
            config.as_deref(),
            &kb,
            &tenant,
            &query,
            limit,
            mode.into(),
            json,
        )),
        Command::Models { command } => report(models::run(command)),
        Command::Eval {
            command:
                EvalCommand::Retrieval {
                    datasets,
                    embedder,
                    max_queries,
                    json,
                },
        } => report(knowledge::eval_retrieval(
            &datasets,
            embedder.as_deref(),
            max_queries,
            json,
        )),
    }
}

/// The validated configuration, or every problem in it.
pub(crate) fn load_config(
    path: Option<&std::path::Path>,
) -> anyhow::Result<landfall_config::Config> {
    landfall_config::load(path, &landfall_config::Environment::from_process()).map_err(|errors| {
        anyhow::anyhow!(
            "{}{errors}",
            path.map(|path| format!("{}: ", path.display()))
                .unwrap_or_default()
        )
    })
}

#[expect(clippy::print_stderr, reason = "the CLI reports failures to its user")]
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI reports to its user"
)]
fn check_config(file: &std::path::Path) -> ExitCode {
    match landfall_config::load(Some(file), &landfall_config::Environment::from_process()) {
        Ok(config) => {
            // Regexes, dictionaries and schemas are only known good once compiled.
            if let Err(error) = landfall_guardrails::Guardrails::compile(&config.guardrails, 0) {
                eprintln!("{}: {error}", file.display());
                return ExitCode::FAILURE;
            }
            println!(
                "{}: valid ({} provider(s), {} model(s), {} guardrail rule(s))",
                file.display(),
                config.providers.len(),
                config.models.len(),
                config.guardrails.rules.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{}: {errors}", file.display());
            ExitCode::FAILURE
        }
    }
}

/// What [`init_logging`]'s optional trace layer sits on: the log output over the registry.
pub(crate) type LogSubscriber = Layered<Box<dyn Layer<Registry> + Send + Sync>, Registry>;

/// Keeps the background log writer of `serve` running; dropping it writes what is buffered.
pub(crate) type LogGuard = Option<tracing_appender::non_blocking::WorkerGuard>;

/// Logs to stderr, filtered by `LANDFALL_LOG` (or `RUST_LOG`, default `info`), and hands spans
/// to `traces` too when given (it filters them itself). With `buffered` (the server, which logs
/// a line per request), lines are written by a background thread instead of a write per line
/// on the request path; when its buffer is full, logging waits rather than dropping lines.
///
/// # Errors
///
/// When a global subscriber is already set.
pub(crate) fn init_logging(
    format: LogFormat,
    traces: Option<telemetry::TraceLayer<LogSubscriber>>,
    buffered: bool,
) -> anyhow::Result<LogGuard> {
    let filter = std::env::var("LANDFALL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = if buffered {
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .finish(std::io::stderr());
        (BoxMakeWriter::new(writer), Some(guard))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let output = match format {
        LogFormat::Text => output.with_filter(filter).boxed(),
        LogFormat::Json => output.json().with_filter(filter).boxed(),
    };
    tracing_subscriber::registry()
        .with(output)
        .with(traces)
        .try_init()
        .context("cannot set up logging")?;
    Ok(guard)
}
