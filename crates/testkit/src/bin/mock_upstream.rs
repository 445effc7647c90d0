//! `landfall-mock-upstream`: the fake LLM upstream as a process, for the throughput benchmark.
//!
//! Serves the default behaviours without recording, prints `listening on ADDR` once bound, and
//! runs until SIGINT or SIGTERM.

use std::{io::Write as _, net::SocketAddr};

use anyhow::Context as _;
use clap::Parser;
use landfall_testkit::Script;
use tokio::net::TcpListener;

/// Scripted fake OpenAI/Anthropic upstream serving the default echo behaviours.
#[derive(Parser, Debug)]
#[command(name = "landfall-mock-upstream", version)]
struct Args {
    /// Address to listen on; port 0 picks a free one (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Delay before each event of streamed replies, in milliseconds.
    #[arg(long, default_value_t = 0)]
    stream_delay_ms: u64,
    /// Tokio worker threads; 1 runs a single-threaded runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = if args.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(args.workers))
            .enable_all()
            .build()
    }
    .context("build the tokio runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    let addr = listener.local_addr().context("read the bound address")?;
    // Handlers go in before the announcement, so a script that signals as soon as it reads the
    // line still gets a clean exit.
    let shutdown = shutdown_signal()?;
    announce(addr)?;
    let script = Script::new()
        .record(false)
        .stream_delay_ms(args.stream_delay_ms);
    tokio::select! {
        () = landfall_testkit::serve(listener, script) => {}
        () = shutdown => {}
    }
    Ok(())
}

/// The one stdout line scripts wait for.
fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}").context("write to stdout")?;
    stdout.flush().context("flush stdout")
}

/// Registers SIGINT and SIGTERM handlers now; the future resolves on the first of them.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        // Without a handler Ctrl-C still ends the process, just less tidily.
        let _ = tokio::signal::ctrl_c().await;
    })
}
