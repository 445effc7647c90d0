use crate::{Environment, ProviderKind, from_toml};

fn environment() -> Environment {
    Environment::from_pairs([("OPENAI_KEY", "sk-test")])
}

const VALID: &str = r#"
[server]
listen = "127.0.0.1:9999"

[providers.openai]
type = "openai"
base_url = "https://api.openai.com/v1"
api_key = "env::OPENAI_KEY"
headers = { "OpenAI-Organization" = "org-1" }

[providers.claude]
type = "anthropic"
api_key = "literal"

[models.chat]
targets = [
  { provider = "openai", model = "gpt-4o-mini", weight = 3 },
  { provider = "claude", model = "claude-sonnet-4", priority = 1, context_window = 200000 },
]
"#;

#[test]
fn valid_config_resolves_secrets_and_defaults() {
    let config = from_toml(VALID, &environment()).unwrap();
    assert_eq!(config.server.listen.port(), 9999);
    let openai = &config.providers["openai"];
    assert_eq!(openai.http.api_key.as_ref().unwrap().expose(), "sk-test");
    let claude = &config.providers["claude"];
    assert_eq!(claude.http.base_url, "https://api.anthropic.com/v1");
    assert!(matches!(
        claude.kind,
        ProviderKind::Anthropic {
            default_max_tokens: 4096,
            ..
        }
    ));
    assert_eq!(config.models["chat"].targets[0].weight, 3);
    assert_eq!(config.routing.max_attempts, 4);
}

#[test]
fn empty_config_is_valid() {
    let config = from_toml("", &Environment::default()).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert!(config.models.is_empty());
}

#[test]
fn every_error_is_listed_with_its_path() {
    let text = r#"
[server]
listen = "nowhere"

[routing]
max_attemps = 3

[providers.a]
type = "openai"
base_url = "ftp://example.com"
api_key = "env::MISSING_KEY"

[providers.b]
type = "openai"
base_url = "not a url"
timeout_ms = "soon"

[providers.c]
type = "cohere"

[providers.e]
type = "openai"
base_url = "http://x/v1"
proxy_url = "socks5://proxy:1080"

[providers.d]
base_url = "http://x"

[models.chat]
targets = [{ provider = "nope" }, { provider = "a", weight = 0 }]

[models.empty]
targets = []

[extra]
"#;
    let errors = from_toml(text, &Environment::default()).unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|error| error.path.as_str()).collect();
    for expected in [
        "extra",
        "server.listen",
        "routing.max_attemps",
        "providers.a.base_url",
        "providers.a.api_key",
        "providers.b.timeout_ms",
        "providers.c.type",
        "providers.e.proxy_url",
        "providers.d.type",
        "models.chat.targets[0].provider",
        "models.chat.targets[1].weight",
        "models.empty.targets",
    ] {
        assert!(
            paths.iter().any(|path| path.starts_with(expected)),
            "missing {expected} in {errors}"
        );
    }
    let text = errors.to_string();
    assert!(text.contains("MISSING_KEY"), "{text}");
    assert!(text.contains("unknown field `max_attemps`"), "{text}");
}

#[test]
fn bad_base_url_is_reported() {
    let text = "[providers.b]\ntype = \"openai\"\nbase_url = \"not a url\"\n";
    let errors = from_toml(text, &Environment::default()).unwrap_err();
    assert_eq!(errors.0[0].path, "providers.b.base_url");
}

#[test]
fn unknown_provider_key_is_reported() {
    let text = "[providers.b]\ntype = \"openai\"\nbase_url = \"http://x/v1\"\nbase_ur = 1\n";
    let errors = from_toml(text, &Environment::default()).unwrap_err();
    assert!(errors.to_string().contains("base_ur"), "{errors}");
}

#[test]
fn environment_overrides_any_key() {
    let environment = Environment::from_pairs([
        ("OPENAI_KEY", "sk-test"),
        ("LANDFALL__SERVER__LISTEN", "127.0.0.1:7000"),
        (
            "LANDFALL__PROVIDERS__OPENAI__BASE_URL",
            "http://127.0.0.1:1/v1",
        ),
    ]);
    let config = from_toml(VALID, &environment).unwrap();
    assert_eq!(config.server.listen.port(), 7000);
    assert_eq!(
        config.providers["openai"].http.base_url,
        "http://127.0.0.1:1/v1"
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let errors = from_toml("[server]\nlisten = ", &Environment::default()).unwrap_err();
    assert!(errors.to_string().contains("line 2"), "{errors}");
}

#[test]
fn governance_sections_are_validated_with_paths() {
    let text = r#"
[auth]
admin_key = "short"

[storage.metadata]
type = "postgres"
url = "mysql://root@db/landfall"

[storage.kv]
type = "redis"
url = "env::MISSING_REDIS_URL"
timeout_ms = 0

[shedding]
cpu_threshold_percent = 150

[accounting]
currency = "usd"

[providers.openai]
type = "openai"
base_url = "https://api.openai.com/v1"

[models.chat]
targets = [{ provider = "openai", price = { input = -1.0, output = 2.0, currency = "CNY" }, max_concurrency = 0 }]
"#;
    let errors = from_toml(text, &environment()).unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|error| error.path.as_str()).collect();
    for expected in [
        "auth.admin_key",
        "storage.metadata.url",
        "storage.kv.url",
        "storage.kv.timeout_ms",
        "shedding.cpu_threshold_percent",
        "accounting.currency",
        "models.chat.targets[0].price.input",
        "models.chat.targets[0].price.currency",
        "models.chat.targets[0].max_concurrency",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    // The URL may carry a password: only its scheme is named.
    let url_error = errors
        .0
        .iter()
        .find(|error| error.path == "storage.metadata.url")
        .unwrap();
    assert!(url_error.message.contains("mysql"), "{}", url_error.message);
}

#[test]
fn governance_defaults_are_embedded() {
    let config = from_toml("", &environment()).unwrap();
    assert!(matches!(
        config.storage.metadata,
        crate::MetadataBackend::Sqlite { .. }
    ));
    assert!(matches!(config.storage.kv, crate::KvBackend::Memory));
    assert!(!config.auth.allow_anonymous);
    assert_eq!(config.auth.key_cache_ttl_ms, 500);
    assert!(config.cache.enabled);
    assert_eq!(config.shedding.cpu_threshold_percent, 80);
}

#[test]
fn knowledge_search_settings_are_validated() {
    let text = r#"
[knowledge.search]
vector_weight = 1.5
grounding_instructions = "   "
"#;
    let errors = from_toml(text, &Environment::default()).unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|error| error.path.as_str()).collect();
    for expected in [
        "knowledge.search.vector_weight",
        "knowledge.search.grounding_instructions",
    ] {
        assert!(paths.contains(&expected), "missing {expected} in {errors}");
    }
    let text = r#"
[knowledge.search]
grounding_instructions = "Answer as a pharmacist. Cite sources as [n]."
"#;
    let config = from_toml(text, &Environment::default()).unwrap();
    assert_eq!(
        config.knowledge.search.grounding_instructions.as_deref(),
        Some("Answer as a pharmacist. Cite sources as [n].")
    );
}

#[test]
fn local_providers_take_a_file_or_a_hub_file_and_no_http_keys() {
    let file = std::env::temp_dir().join("landfall-config-test-model.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    let text = format!(
        r#"
[providers.file]
type = "local"
path = {file:?}
context_length = 2048

[providers.hub]
type = "local"
hub_repo = "org/name@v1"
file = "model.gguf"
preload = false

[models.chat]
targets = [{{ provider = "file" }}, {{ provider = "hub", priority = 1 }}]
"#
    );
    let config = from_toml(&text, &Environment::default()).unwrap();
    let ProviderKind::Local(local) = &config.providers["file"].kind else {
        panic!("not local");
    };
    assert_eq!(
        (local.context_length, local.queue_size, local.preload),
        (Some(2048), 16, true)
    );
    assert!(local.convert_slow_weights);
    assert_eq!(
        crate::LocalModelConfig::source(match &config.providers["hub"].kind {
            ProviderKind::Local(local) => local,
            _ => panic!("not local"),
        }),
        "hub:org/name@v1/model.gguf"
    );

    let bad = r#"
[providers.none]
type = "local"

[providers.both]
type = "local"
path = "/no/such.gguf"
hub_repo = "org/name"
file = "x.gguf"

[providers.missing]
type = "local"
path = "/no/such.gguf"
base_url = "http://127.0.0.1:1/v1"

[providers.repo]
type = "local"
hub_repo = "just-a-name"
file = "weights.bin"
queue_size = 0
"#;
    let errors = from_toml(bad, &Environment::default()).unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|error| error.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "providers.both.path",
            "providers.missing.path",
            "providers.missing.base_url",
            "providers.none.path",
            "providers.repo.hub_repo",
            "providers.repo.file",
            "providers.repo.queue_size",
        ],
        "{errors}"
    );
    assert!(
        errors.to_string().contains("/no/such.gguf is not a file"),
        "{errors}"
    );
}

#[test]
fn the_default_local_model_is_added_only_when_no_provider_is_configured() {
    use crate::{DEFAULT_LOCAL_NAME, LocalModelConfig};
    let mut empty = from_toml("", &Environment::default()).unwrap();
    assert!(empty.add_default_local_model(LocalModelConfig::default_model(None), false));
    assert_eq!(
        empty.models[DEFAULT_LOCAL_NAME].targets[0].provider,
        DEFAULT_LOCAL_NAME
    );
    let ProviderKind::Local(model) = &empty.providers[DEFAULT_LOCAL_NAME].kind else {
        panic!("not local");
    };
    assert_eq!(
        model.source(),
        "hub:bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q8_0.gguf"
    );
    assert!(!model.preload, "fetched on first use, not at start");

    let mut configured = from_toml(VALID, &environment()).unwrap();
    assert!(!configured.add_default_local_model(LocalModelConfig::default_model(None), false));
    let explicit = LocalModelConfig::default_model(Some("/models/m.gguf".into()));
    assert!(explicit.preload);
    assert!(
        configured.add_default_local_model(explicit, true),
        "--model adds it anyway"
    );
    assert_eq!(configured.providers.len(), 3);
}
