//! The `landfall` binary as its users run it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: failing loudly is the point"
)]

mod audit;
mod knowledge;
mod manage;
mod metrics;
mod replicas;
mod shutdown;
mod traces;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_landfall");

/// An HTTP client for the tests. Landfall's tools build reqwest with rustls but no
/// built-in crypto provider (the whole project uses ring), so a client built here needs
/// ring installed as the process default first.
pub(crate) fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A port on 127.0.0.1 that was free a moment ago, for a `landfall serve` to listen on.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn example_environment(command: &mut Command) -> &mut Command {
    command.env("OPENAI_PROXY_URL", "http://proxy.internal:3128");
    command.env("LANDFALL_ADMIN_KEY", "admin-key-of-sixteen-characters");
    for name in [
        "OPENAI_API_KEY",
        "OPENAI_ORG",
        "DEEPSEEK_API_KEY",
        "DASHSCOPE_API_KEY",
        "MOONSHOT_API_KEY",
        "ANTHROPIC_API_KEY",
        "ERP_CLIENT_SECRET",
        "SMTP_PASSWORD",
        "SERVICENOW_PASSWORD",
        "ERP_MCP_TOKEN",
    ] {
        command.env(name, "x");
    }
    command
}

#[test]
fn the_example_configuration_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../landfall.example.toml");
    let output = example_environment(Command::new(BIN).args(["check-config", path]))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("valid (9 provider(s), 5 model(s), 7 guardrail rule(s))"),
        "{stdout}"
    );
}

#[test]
fn the_example_without_its_secrets_names_each_missing_variable() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../landfall.example.toml");
    let output = Command::new(BIN)
        .args(["check-config", path])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("providers.openai.api_key: environment variable `OPENAI_API_KEY` is not set"),
        "{stderr}"
    );
    assert!(
        stderr.contains("auth.admin_key: environment variable `LANDFALL_ADMIN_KEY` is not set"),
        "{stderr}"
    );
}

#[test]
fn check_config_lists_every_error() {
    let directory = std::env::temp_dir().join(format!("landfall-cli-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = 5\n[providers.a]\ntype = \"openai\"\nbase_url = \"nope\"\n\
         [models.m]\ntargets = [{ provider = \"b\" }]\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("3 configuration errors"), "{stderr}");
    for path in [
        "server.listen",
        "providers.a.base_url",
        "models.m.targets[0].provider",
    ] {
        assert!(stderr.contains(path), "{path} missing from {stderr}");
    }
    let output = Command::new(BIN)
        .args(["check-config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read /nonexistent.toml"));
}

#[test]
fn serve_without_a_file_says_where_it_listens_and_stops_on_sigterm() {
    // The embedded store is created under the working directory.
    let directory = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(directory.path())
        .env("LANDFALL_LOG", "info")
        .env_remove("LANDFALL_CONFIG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut listening = None;
    while listening.is_none() && Instant::now() < deadline {
        if let Ok(line) = receiver.recv_timeout(Duration::from_millis(100))
            && line.contains("landfall listening on http://127.0.0.1:")
        {
            listening = Some(line);
        }
    }
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("landfall did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(listening.is_some(), "no listening line");
    assert!(status.success(), "{status}");
}

#[test]
fn help_has_examples_and_version_prints() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["check-config", "--help"],
    ] {
        let output = Command::new(BIN).args(&args).output().unwrap();
        assert!(output.status.success());
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Examples:"),
            "{args:?}"
        );
    }
    let output = Command::new(BIN).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("landfall {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_arguments_are_refused_plainly() {
    let output = Command::new(BIN)
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value 'not-an-address'"));
}
