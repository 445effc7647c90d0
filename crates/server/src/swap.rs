//! Hot swap: the gateway and the model aliases sit behind one pointer that a configuration
//! reload (`SIGHUP`, `POST /admin/v1/reload`) or an operator's model change replaces at once.
//! Requests in flight keep the gateway they started with; new requests see the new one. A
//! local model whose settings did not change is carried over loaded, not loaded again.

use std::collections::HashMap;
use std::sync::Arc;

use landfall_config::{Config, ConfigErrors, ModelKnowledge, ProviderKind};
use landfall_gateway::Gateway;
use landfall_providers::LocalModels;

use crate::{AppState, Inner};

/// Where a reload reads the configuration from: the file and environment the server started
/// with, as the CLI reads them.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// What requests are routed by. Replaced whole, never changed in place.
pub(crate) struct Routes {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) model_knowledge: HashMap<String, ModelKnowledge>,
    pub(crate) locals: LocalModels,
    /// The `[tools.NAME]` entries, built.
    pub(crate) tools: Arc<landfall_tools::Registry>,
    /// What these routes were built from; model changes through the admin API start here.
    pub(crate) config: Config,
}

impl Routes {
    pub(crate) fn new(
        config: Config,
        gateway: Gateway,
        locals: LocalModels,
        tools: landfall_tools::Registry,
    ) -> Self {
        Self {
            gateway: Arc::new(gateway),
            model_knowledge: config
                .models
                .iter()
                .filter_map(|(name, model)| Some((name.clone(), model.knowledge.clone()?)))
                .collect(),
            locals,
            tools: Arc::new(tools),
            config,
        }
    }
}

/// Why a reload or a model change was not applied (the old routes stay in place).
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("this server was not started from a configuration file, so there is nothing to reload")]
    NoSource,
    #[error("{0}")]
    Config(ConfigErrors),
    #[error(transparent)]
    Build(#[from] landfall_gateway::StartError),
    #[error("tools: {0}")]
    Tools(#[from] crate::tools::ToolsError),
    #[error("local model `{name}` could not be loaded: {reason}")]
    Load { name: String, reason: String },
    #[error("local model `{name}` does not exist")]
    NotFound { name: String },
    #[error("provider `{name}` is not a local model")]
    NotLocal { name: String },
    #[error("local model `{name}` is still a target of {aliases}; change those aliases first")]
    InUse { name: String, aliases: String },
}

impl Inner {
    pub(crate) fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn gateway(&self) -> Arc<Gateway> {
        self.routes().gateway.clone()
    }
}

impl AppState {
    pub(crate) fn routes(&self) -> Arc<Routes> {
        self.inner.routes()
    }

    /// Lets [`reload`](Self::reload) read the configuration again (set once; later calls are
    /// ignored).
    pub fn reload_from(&self, source: ConfigSource) {
        let _ = self.inner.config_source.set(source);
    }

    /// Reads the configuration again and applies its providers, model aliases and routing.
    /// Other sections (listeners, storage, auth, limits) need a restart.
    ///
    /// # Errors
    /// As [`apply`](Self::apply), and [`SwapError::NoSource`] when there is no file.
    pub async fn reload(&self) -> Result<(), SwapError> {
        let source = self.inner.config_source.get().ok_or(SwapError::NoSource)?;
        let config = source().map_err(SwapError::Config)?;
        self.apply(config).await
    }

    /// Builds routes for `config`, loads its preloaded local models, then swaps them in.
    /// Reloads and model changes run one at a time.
    ///
    /// # Errors
    /// A provider that cannot be built or a preloaded model that cannot be loaded; the
    /// routes in place stay as they were.
    pub async fn apply(&self, config: Config) -> Result<(), SwapError> {
        let _one_at_a_time = self.inner.swapping.lock().await;
        let locals = self.routes().locals.successor();
        let gateway = Gateway::build(&config, self.inner.accounting.metrics(), &locals)?;
        let tools = crate::tools::build(&config, &self.inner.knowledge)?;
        let names: Vec<&str> = config.providers.keys().map(String::as_str).collect();
        locals.retain(&names);
        preload(&locals).await?;
        let routes = Arc::new(Routes::new(config, gateway, locals, tools));
        *self
            .inner
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = routes;
        tracing::info!(models = ?self.gateway().model_names(), "routes swapped");
        Ok(())
    }

    /// Loads, now, every local model configured with `preload` (at start and on reload).
    ///
    /// # Errors
    /// [`SwapError::Load`] naming the first model that failed.
    pub async fn preload_local_models(&self) -> Result<(), SwapError> {
        preload(&self.routes().locals).await
    }

    /// Runs local model `name` with `model` instead (adding it, with an alias of the same
    /// name, when there is none); the running generations finish on the old one.
    ///
    /// # Errors
    /// Invalid settings, a provider of another type, or a model that does not load.
    pub(crate) async fn switch_local_model(
        &self,
        name: &str,
        model: landfall_config::LocalModelConfig,
    ) -> Result<bool, SwapError> {
        let problems = model.problems();
        if !problems.is_empty() {
            let errors = problems
                .into_iter()
                .map(|(key, message)| landfall_config::ConfigError {
                    path: key.to_owned(),
                    message,
                })
                .collect();
            return Err(SwapError::Config(ConfigErrors(errors)));
        }
        let mut config = self.routes().config.clone();
        let created = match config.providers.get_mut(name) {
            Some(provider) if !matches!(provider.kind, ProviderKind::Local(_)) => {
                return Err(SwapError::NotLocal {
                    name: name.to_owned(),
                });
            }
            Some(provider) => {
                provider.kind = ProviderKind::Local(force_preload(model));
                false
            }
            None => {
                config.providers.insert(
                    name.to_owned(),
                    landfall_config::ProviderConfig {
                        http: landfall_config::HttpSettings::default(),
                        kind: ProviderKind::Local(force_preload(model)),
                    },
                );
                config.models.entry(name.to_owned()).or_insert_with(|| {
                    landfall_config::ModelConfig {
                        targets: vec![landfall_config::TargetConfig::to(name)],
                        knowledge: None,
                        tool_protocol: Default::default(),
                        prompt: None,
                    }
                });
                true
            }
        };
        self.apply(config).await?;
        Ok(created)
    }

    /// Removes local model `name` and the alias of the same name that only it serves.
    ///
    /// # Errors
    /// A model that does not exist or that other aliases still route to.
    pub(crate) async fn remove_local_model(&self, name: &str) -> Result<(), SwapError> {
        let mut config = self.routes().config.clone();
        match config.providers.get(name).map(|provider| &provider.kind) {
            None => {
                return Err(SwapError::NotFound {
                    name: name.to_owned(),
                });
            }
            Some(ProviderKind::Local(_)) => {}
            Some(_) => {
                return Err(SwapError::NotLocal {
                    name: name.to_owned(),
                });
            }
        }
        let own_alias = config
            .models
            .get(name)
            .is_some_and(|alias| alias.targets.iter().all(|target| target.provider == name));
        if own_alias {
            config.models.remove(name);
        }
        let users: Vec<String> = config
            .models
            .iter()
            .filter(|(_, alias)| alias.targets.iter().any(|target| target.provider == name))
            .map(|(alias, _)| format!("`{alias}`"))
            .collect();
        if !users.is_empty() {
            return Err(SwapError::InUse {
                name: name.to_owned(),
                aliases: users.join(", "),
            });
        }
        config.providers.remove(name);
        self.apply(config).await
    }
}

/// An operator's model change takes effect loaded, so the first request does not wait.
fn force_preload(
    mut model: landfall_config::LocalModelConfig,
) -> landfall_config::LocalModelConfig {
    model.preload = true;
    model
}

async fn preload(locals: &LocalModels) -> Result<(), SwapError> {
    for model in locals.all() {
        if !model.config().preload {
            continue;
        }
        model.preload().await.map_err(|reason| SwapError::Load {
            name: model.status().name,
            reason,
        })?;
    }
    Ok(())
}
