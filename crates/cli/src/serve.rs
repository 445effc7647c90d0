//! `landfall serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use landfall_server::{AppState, ConfigSource};

pub(crate) fn run(
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    local_model: Option<PathBuf>,
    log_format: crate::LogFormat,
) -> anyhow::Result<()> {
    if let Some(path) = &local_model
        && !path.is_file()
    {
        anyhow::bail!(
            "--model {}: no such file; give the path of a GGUF chat model",
            path.display()
        );
    }
    let mut config = crate::load_config(config_path.as_deref())?;
    let defaulted = add_local_default(&mut config, local_model.clone());
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.server.worker_threads > 0 {
        runtime.worker_threads(config.server.worker_threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (traces, tracer) = crate::telemetry::layer(&config.telemetry, runtime.handle())?.unzip();
    let _log = crate::init_logging(log_format, traces, true)?;
    if let Some(source) = defaulted {
        tracing::info!(%source, "no provider configured: model `local` runs a GGUF chat model in process");
    }
    // A reload reads the file and the environment again, as at start.
    let source: ConfigSource = Arc::new(move || {
        let mut config = landfall_config::load(
            config_path.as_deref(),
            &landfall_config::Environment::from_process(),
        )?;
        add_local_default(&mut config, local_model.clone());
        Ok(config)
    });
    runtime.block_on(serve(config, source, tracer))
}

/// Adds the default local model when the configuration names no provider (or `--model`
/// names one); returns where that model comes from.
fn add_local_default(
    config: &mut landfall_config::Config,
    local_model: Option<PathBuf>,
) -> Option<String> {
    let explicit = local_model.is_some();
    let model = landfall_config::LocalModelConfig::default_model(local_model);
    let source = model.source();
    config
        .add_default_local_model(model, explicit)
        .then_some(source)
}

async fn serve(
    config: landfall_config::Config,
    source: ConfigSource,
    tracer: Option<crate::telemetry::TracerGuard>,
) -> anyhow::Result<()> {
    let result = async {
        let state = AppState::start(&config).await.context("cannot start")?;
        state.reload_from(source);
        reload_on_hangup(state.clone())?;
        if tracer.is_some() {
            state.continue_traces_with(std::sync::Arc::new(crate::telemetry::W3cTraceContext));
        }
        let result = run_server(&config, state.clone()).await;
        state.shutdown().await;
        result
    }
    .await;
    // Last, so that the spans of the final requests are sent.
    if let Some(tracer) = tracer {
        tracer.shutdown().await;
    }
    result
}

async fn run_server(config: &landfall_config::Config, state: AppState) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let models = state.gateway().model_names().join(", ");
    if models.is_empty() {
        tracing::warn!("no model aliases configured: add [models] (see landfall.example.toml)");
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), models = %models, "landfall listening on http://{address}");

    if config.metrics.enabled
        && let Some(metrics_listen) = config.metrics.listen
    {
        let metrics_listener = tokio::net::TcpListener::bind(metrics_listen)
            .await
            .with_context(|| format!("cannot listen on {metrics_listen} (metrics.listen)"))?;
        let metrics = landfall_server::serve_metrics(metrics_listener, state.clone());
        // Stops with the process; scrapes need no graceful end.
        tokio::spawn(async move {
            if let Err(error) = metrics.await {
                tracing::error!(%error, "the metrics listener failed");
            }
        });
        tracing::info!("metrics on http://{metrics_listen}/metrics");
    }

    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = landfall_server::serve(listener, state.clone(), async move {
        shutdown.await;
        state.set_ready(false);
        tracing::info!(
            grace_ms = grace.as_millis(),
            "shutting down: finishing in-flight requests"
        );
        let _ = stopping_tx.send(());
    });
    let mut server = tokio::spawn(server);
    tokio::select! {
        result = &mut server => return result.context("server task failed")?.context("server failed"),
        _ = stopping_rx => {}
    }
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result
            .context("server task failed")?
            .context("server failed"),
        Err(_) => {
            tracing::warn!("in-flight requests did not finish within the grace period; exiting");
            Ok(())
        }
    }
}

/// Reloads providers and model aliases on every SIGHUP; a reload that fails is logged and
/// changes nothing.
fn reload_on_hangup(state: AppState) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            if let Err(error) = state.reload().await {
                tracing::error!(%error, "reload failed; the running configuration stays");
            }
        }
    });
    Ok(())
}

/// SIGINT and SIGTERM, registered when created: a signal that arrives before the server runs
/// (right after the "listening" line, say) is still seen, instead of killing the process.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
