//! `landfall-mcp-peer stdio`: the test MCP server ([`landfall_testkit::mcp`]) on stdin and
//! stdout. `landfall-mcp-peer http`: on 127.0.0.1 (a free port); prints `ready PORT` and
//! serves `/mcp` until killed.

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("stdio") => landfall_testkit::mcp::serve_stdio()
            .await
            .map_err(anyhow::Error::msg)?,
        Some("http") => {
            let peer = landfall_testkit::mcp::McpPeer::start().await?;
            let port = peer
                .url
                .trim_start_matches("http://127.0.0.1:")
                .trim_end_matches("/mcp");
            use std::io::Write as _;
            let mut stdout = std::io::stdout();
            writeln!(stdout, "ready {port}")?;
            stdout.flush()?;
            std::future::pending::<()>().await;
        }
        _ => anyhow::bail!("usage: landfall-mcp-peer stdio|http"),
    }
    Ok(())
}
