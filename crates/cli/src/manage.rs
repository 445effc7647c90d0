//! `landfall tenants …` and `landfall keys …`: the admin API's operations, run directly on the
//! configured metadata store (no server needed). Output is the same JSON the API returns.

use std::path::Path;

use anyhow::Context;
use clap::{Args, Subcommand};
use landfall_governance::{Admin, AdminError};
use serde_json::{Map, Value, json};

#[derive(Subcommand)]
pub(crate) enum TenantCommand {
    /// Create a tenant.
    #[command(
        after_help = "Examples:\n  landfall tenants create --id acme --name 'Acme Corp' --rps 200 --monthly-cost 500\n  \
                            landfall tenants create --json '{\"id\": \"acme\", \"budgets\": [{\"period\": \"day\", \"tokens\": 1000000}]}'"
    )]
    Create {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// The whole request body of `POST /admin/v1/tenants`; flags override its fields.
        #[arg(long)]
        json: Option<String>,
    },
    /// List tenants.
    #[command(
        after_help = "Examples:\n  landfall tenants list\n  landfall tenants list --after acme --limit 50"
    )]
    List {
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one tenant.
    #[command(after_help = "Example:\n  landfall tenants get acme")]
    Get { id: String },
    /// Change a tenant's name, limits, budgets or metadata.
    #[command(
        after_help = "Examples:\n  landfall tenants update acme --rpm 6000\n  \
                            landfall tenants update acme --json '{\"budgets\": []}'"
    )]
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// The whole body of `PATCH /admin/v1/tenants/{id}`; flags override its fields.
        #[arg(long)]
        json: Option<String>,
    },
    /// Revoke a tenant: all its keys stop working.
    #[command(after_help = "Example:\n  landfall tenants revoke acme")]
    Revoke { id: String },
}

#[derive(Subcommand)]
pub(crate) enum KeyCommand {
    /// Create an API key; its secret is printed once.
    #[command(
        after_help = "Examples:\n  landfall keys create --tenant acme --name support-bot\n  \
                            landfall keys create --tenant acme --models gpt-4o-mini,deepseek-chat --rpm 600 --expires-at 1893456000"
    )]
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        /// Model aliases the key may use (comma-separated); all when absent.
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Knowledge bases the key may read (comma-separated); all when absent.
        #[arg(long, value_delimiter = ',')]
        knowledge_bases: Option<Vec<String>>,
        /// `[tools.NAME]` entries the key may have run (comma-separated); all when absent.
        #[arg(long, value_delimiter = ',')]
        tools: Option<Vec<String>>,
        /// Expiry, unix seconds.
        #[arg(long)]
        expires_at: Option<i64>,
        #[command(flatten)]
        limits: LimitArgs,
        /// The whole body of `POST /admin/v1/keys`; flags override its fields.
        #[arg(long)]
        json: Option<String>,
    },
    /// List keys, of one tenant or all.
    #[command(after_help = "Examples:\n  landfall keys list\n  landfall keys list --tenant acme")]
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one key (never its secret).
    #[command(after_help = "Example:\n  landfall keys get key_AbCdEfGh12345678")]
    Get { id: String },
    /// Change a key's name, scopes, limits, budgets, expiry or metadata.
    #[command(
        after_help = "Examples:\n  landfall keys update key_AbCdEfGh12345678 --rps 5\n  \
                            landfall keys update key_AbCdEfGh12345678 --json '{\"expires_at\": null}'"
    )]
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// The whole body of `PATCH /admin/v1/keys/{id}`; flags override its fields.
        #[arg(long)]
        json: Option<String>,
    },
    /// Revoke a key; every replica refuses it within `auth.key_cache_ttl_ms`.
    #[command(after_help = "Example:\n  landfall keys revoke key_AbCdEfGh12345678")]
    Revoke { id: String },
}

/// Common limit flags; each sets one field of `limits` (or a budget).
#[derive(Args, Default)]
pub(crate) struct LimitArgs {
    /// Requests per second.
    #[arg(long)]
    rps: Option<u64>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Concurrent requests.
    #[arg(long)]
    concurrency: Option<u64>,
    /// Daily token budget.
    #[arg(long)]
    daily_tokens: Option<u64>,
    /// Monthly budget in the accounting currency.
    #[arg(long)]
    monthly_cost: Option<f64>,
}

impl LimitArgs {
    fn apply(&self, body: &mut Map<String, Value>) {
        let pairs = [
            ("requests_per_second", self.rps),
            ("requests_per_minute", self.rpm),
            ("tokens_per_minute", self.tpm),
            ("max_concurrent_requests", self.concurrency),
        ];
        if pairs.iter().any(|(_, value)| value.is_some()) {
            let limits = body.entry("limits").or_insert_with(|| json!({}));
            if let Value::Object(limits) = limits {
                for (name, value) in pairs {
                    if let Some(value) = value {
                        limits.insert(name.to_owned(), json!(value));
                    }
                }
            }
        }
        let mut budgets = Vec::new();
        if let Some(tokens) = self.daily_tokens {
            budgets.push(json!({"period": "day", "tokens": tokens}));
        }
        if let Some(cost) = self.monthly_cost {
            budgets.push(json!({"period": "month", "cost": cost}));
        }
        if !budgets.is_empty() {
            body.insert("budgets".to_owned(), Value::Array(budgets));
        }
    }
}

/// A request body from `--json` plus flags.
fn body(
    json_text: Option<&str>,
    fields: &[(&str, Option<Value>)],
    limits: &LimitArgs,
) -> anyhow::Result<Map<String, Value>> {
    let mut body = match json_text {
        None => Map::new(),
        Some(text) => match serde_json::from_str(text).context("--json is not valid JSON")? {
            Value::Object(map) => map,
            _ => anyhow::bail!("--json must be a JSON object"),
        },
    };
    for (name, value) in fields {
        if let Some(value) = value {
            body.insert((*name).to_owned(), value.clone());
        }
    }
    limits.apply(&mut body);
    Ok(body)
}

fn parse<T: serde::de::DeserializeOwned>(body: Map<String, Value>) -> anyhow::Result<T> {
    serde_path_to_error::deserialize(Value::Object(body)).map_err(|error| {
        let path = error.path().to_string();
        anyhow::anyhow!("{path}: {}", error.into_inner())
    })
}

async fn admin(config_path: Option<&Path>) -> anyhow::Result<Admin> {
    let config = crate::load_config(config_path)?;
    let store = landfall_governance::open_store(&config)
        .await
        .context("cannot open the metadata store")?;
    Ok(Admin::new(store, config.models.keys().cloned().collect()))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[expect(clippy::print_stdout, reason = "the CLI prints results for its user")]
fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn plain(error: AdminError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

pub(crate) fn tenants(config_path: Option<&Path>, command: TenantCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let admin = admin(config_path).await?;
        match command {
            TenantCommand::Create {
                id,
                name,
                limits,
                json,
            } => {
                let fields = [("id", id.map(Value::from)), ("name", name.map(Value::from))];
                let input = parse(body(json.as_deref(), &fields, &limits)?)?;
                print(&admin.create_tenant(input).await.map_err(plain)?)
            }
            TenantCommand::List { after, limit } => {
                print(&admin.tenants(after, limit).await.map_err(plain)?)
            }
            TenantCommand::Get { id } => print(&admin.tenant(&id).await.map_err(plain)?),
            TenantCommand::Update {
                id,
                name,
                limits,
                json,
            } => {
                let fields = [("name", name.map(Value::from))];
                let patch = parse(body(json.as_deref(), &fields, &limits)?)?;
                print(&admin.update_tenant(&id, patch).await.map_err(plain)?)
            }
            TenantCommand::Revoke { id } => print(&admin.revoke_tenant(&id).await.map_err(plain)?),
        }
    })
}

pub(crate) fn keys(config_path: Option<&Path>, command: KeyCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let admin = admin(config_path).await?;
        match command {
            KeyCommand::Create {
                tenant,
                name,
                models,
                knowledge_bases,
                tools,
                expires_at,
                limits,
                json,
            } => {
                let mut scopes = Map::new();
                if let Some(models) = models {
                    scopes.insert("models".to_owned(), json!(models));
                }
                if let Some(knowledge_bases) = knowledge_bases {
                    scopes.insert("knowledge_bases".to_owned(), json!(knowledge_bases));
                }
                if let Some(tools) = tools {
                    scopes.insert("tools".to_owned(), json!(tools));
                }
                let fields = [
                    ("tenant_id", Some(Value::from(tenant))),
                    ("name", name.map(Value::from)),
                    ("expires_at", expires_at.map(Value::from)),
                    (
                        "scopes",
                        (!scopes.is_empty()).then_some(Value::Object(scopes)),
                    ),
                ];
                let input = parse(body(json.as_deref(), &fields, &limits)?)?;
                let created = admin.create_key(input).await.map_err(plain)?;
                print(&created)?;
                #[expect(
                    clippy::print_stderr,
                    reason = "a warning for the user, apart from the JSON"
                )]
                {
                    eprintln!("Store the secret now: it is not kept and cannot be shown again.");
                }
                Ok(())
            }
            KeyCommand::List {
                tenant,
                after,
                limit,
            } => print(
                &admin
                    .keys(tenant.as_deref(), after, limit)
                    .await
                    .map_err(plain)?,
            ),
            KeyCommand::Get { id } => print(&admin.key(&id).await.map_err(plain)?),
            KeyCommand::Update {
                id,
                name,
                limits,
                json,
            } => {
                let fields = [("name", name.map(Value::from))];
                let patch = parse(body(json.as_deref(), &fields, &limits)?)?;
                print(&admin.update_key(&id, patch).await.map_err(plain)?)
            }
            KeyCommand::Revoke { id } => print(&admin.revoke_key(&id).await.map_err(plain)?),
        }
    })
}
