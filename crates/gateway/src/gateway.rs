//! The [`Gateway`]: model names, their targets, and the attempt loop.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use landfall_config::{Config, RoutingConfig};
use landfall_providers::{ChatStream, LocalModels, Provider, ProviderError};
use landfall_types::{
    ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, ErrorClass, TokenPrice,
};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::Instrument;

use crate::breaker::Breaker;
use crate::error::{GatewayError, StartError};
use crate::observe::{Attempt, BreakerState, NextStep, NoObserver, Observer, Operation};
use crate::order::try_order;
use crate::retry;
use crate::slots::Slots;
use crate::stream;

/// A result and where it came from.
#[derive(Debug)]
pub struct Served<T> {
    pub value: T,
    /// `provider/upstream-model` of the target that served it.
    pub target: String,
    /// Upstream calls made, retries and fallbacks included.
    pub attempts: u32,
    /// The serving target's price, when configured.
    pub price: Option<TokenPrice>,
    /// Time spent in upstream calls, failed attempts included (for a stream: until its first
    /// output); the rest of a request's time is the gateway's own.
    pub upstream: Duration,
}

/// One provider + upstream model a model name may be served by.
struct Target {
    /// `provider/upstream-model`, for headers and logs.
    label: String,
    provider_name: String,
    upstream_model: String,
    priority: u32,
    weight: u32,
    context_window: Option<u32>,
    price: Option<TokenPrice>,
    provider: Provider,
    breaker: Breaker,
    slots: Option<Slots>,
}

/// What error messages call an operation.
fn operation_label(operation: Operation) -> &'static str {
    match operation {
        Operation::Chat => "chat completions",
        Operation::Embeddings => "embeddings",
    }
}

fn supported_by(operation: Operation, target: &Target) -> bool {
    match operation {
        Operation::Chat => true,
        Operation::Embeddings => target.provider.embeddings.is_some(),
    }
}

/// Routes requests for configured model names to their targets.
pub struct Gateway {
    models: HashMap<String, Vec<Arc<Target>>>,
    model_names: Vec<String>,
    routing: RoutingConfig,
    observer: Arc<dyn Observer>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Gateway")
            .field("models", &self.model_names)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds every provider and model of a validated configuration.
    ///
    /// # Errors
    /// When a provider's client cannot be built.
    pub fn new(config: &Config) -> Result<Self, StartError> {
        Self::with_observer(config, Arc::new(NoObserver))
    }

    /// Like [`Gateway::new`], reporting every upstream attempt to `observer`.
    ///
    /// # Errors
    /// When a provider's client cannot be built.
    pub fn with_observer(config: &Config, observer: Arc<dyn Observer>) -> Result<Self, StartError> {
        Self::build(config, observer, &LocalModels::default())
    }

    /// Like [`Gateway::with_observer`], taking local models from `locals`: a model whose
    /// settings are unchanged since the last build is reused as it is (loaded or not).
    ///
    /// # Errors
    /// When a provider's client cannot be built.
    pub fn build(
        config: &Config,
        observer: Arc<dyn Observer>,
        locals: &LocalModels,
    ) -> Result<Self, StartError> {
        let mut providers = HashMap::new();
        for (name, provider_config) in &config.providers {
            let provider =
                landfall_providers::build(name, provider_config, locals).map_err(|error| {
                    StartError::Provider {
                        provider: name.clone(),
                        error,
                    }
                })?;
            providers.insert(name.as_str(), provider);
        }
        let origin = Instant::now();
        let mut models = HashMap::new();
        for (name, model) in &config.models {
            let targets = model
                .targets
                .iter()
                .filter_map(|target| {
                    // Validation guarantees the provider exists.
                    let provider = providers.get(target.provider.as_str())?.clone();
                    let upstream_model = target.model.clone().unwrap_or_else(|| name.clone());
                    Some(Arc::new(Target {
                        label: format!("{}/{upstream_model}", target.provider),
                        provider_name: target.provider.clone(),
                        upstream_model,
                        priority: target.priority,
                        weight: target.weight,
                        context_window: target.context_window,
                        price: target.price.as_ref().map(|price| {
                            let [input, cached_input, output] = price.nanos_per_million();
                            TokenPrice {
                                input,
                                cached_input,
                                output,
                            }
                        }),
                        provider,
                        breaker: Breaker::new(origin),
                        slots: target.max_concurrency.map(|max_concurrency| {
                            Slots::new(
                                max_concurrency,
                                target.queue_size,
                                Duration::from_millis(target.queue_timeout_ms),
                            )
                        }),
                    }))
                })
                .collect();
            models.insert(name.clone(), targets);
        }
        Ok(Self {
            model_names: config.models.keys().cloned().collect(),
            models,
            routing: config.routing.clone(),
            observer,
        })
    }

    /// Every target's circuit breaker, by model name and target.
    #[must_use]
    pub fn breaker_states(&self) -> Vec<BreakerState> {
        let now = Instant::now();
        let mut states: Vec<BreakerState> = self
            .models
            .iter()
            .flat_map(|(model, targets)| {
                targets.iter().map(move |target| BreakerState {
                    model: model.clone(),
                    target: target.label.clone(),
                    open: target.breaker.open_for(now).is_some(),
                })
            })
            .collect();
        states.sort_by(|a, b| (&a.model, &a.target).cmp(&(&b.model, &b.target)));
        states
    }

    /// Configured model names, sorted.
    #[must_use]
    pub fn model_names(&self) -> &[String] {
        &self.model_names
    }

    #[must_use]
    pub fn has_model(&self, model: &str) -> bool {
        self.models.contains_key(model)
    }

    /// The highest price of each kind among `model`'s targets: what to reserve against a
    /// budget before knowing which target will serve. `None` when no target is priced.
    #[must_use]
    pub fn reservation_price(&self, model: &str) -> Option<TokenPrice> {
        self.models
            .get(model)?
            .iter()
            .filter_map(|target| target.price)
            .reduce(TokenPrice::max)
    }

    /// A whole chat completion.
    ///
    /// # Errors
    /// The last failure once no target could serve the request.
    pub async fn chat(&self, request: &ChatRequest) -> Result<Served<ChatResponse>, GatewayError> {
        let served = self
            .run(&request.model, Operation::Chat, |target, slot| async move {
                // The target's slot is held until the upstream call is over.
                let _slot = slot;
                target
                    .provider
                    .chat
                    .chat(request, &target.upstream_model)
                    .await
            })
            .await?;
        let usage = served.value.usage.as_ref();
        tracing::debug!(
            model = %request.model,
            target = %served.target,
            attempts = served.attempts,
            prompt_tokens = usage.map_or(0, |usage| usage.prompt_tokens),
            completion_tokens = usage.map_or(0, |usage| usage.completion_tokens),
            usage_reported = usage.is_some(),
            "chat completed"
        );
        Ok(served)
    }

    /// A streamed chat completion. Targets are tried until one produces its first output; a
    /// failure after that ends the returned stream with the error.
    ///
    /// # Errors
    /// The last failure once no target could start the stream.
    pub async fn chat_stream(
        &self,
        request: &ChatRequest,
    ) -> Result<Served<ChatStream>, GatewayError> {
        let served = self
            .run(&request.model, Operation::Chat, |target, slot| async move {
                let upstream = target
                    .provider
                    .chat
                    .chat_stream(request, &target.upstream_model)
                    .await?;
                let stream = stream::until_first_output(upstream).await?;
                // The target's slot stays taken until the stream ends or is dropped.
                Ok(stream::holding(stream, slot))
            })
            .await?;
        let value = stream::account(served.value, request.model.clone(), served.target.clone());
        Ok(Served { value, ..served })
    }

    /// Embeddings.
    ///
    /// # Errors
    /// The last failure once no target could serve the request.
    pub async fn embed(
        &self,
        request: &EmbeddingRequest,
    ) -> Result<Served<EmbeddingResponse>, GatewayError> {
        self.run(
            &request.model,
            Operation::Embeddings,
            |target, slot| async move {
                let _slot = slot;
                let Some(embeddings) = &target.provider.embeddings else {
                    return Err(ProviderError::Unsupported {
                        operation: "embeddings",
                    });
                };
                embeddings.embed(request, &target.upstream_model).await
            },
        )
        .await
    }

    /// Tries targets in order until one succeeds, as the class of each failure allows.
    async fn run<'a, T, F, Fut>(
        &self,
        model: &str,
        operation: Operation,
        call: F,
    ) -> Result<Served<T>, GatewayError>
    where
        F: Fn(Arc<Target>, Option<OwnedSemaphorePermit>) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>> + 'a,
    {
        let targets = self
            .models
            .get(model)
            .ok_or_else(|| GatewayError::UnknownModel {
                model: model.to_owned(),
            })?;
        let capable: Vec<&Arc<Target>> = targets
            .iter()
            .filter(|target| supported_by(operation, target))
            .collect();
        if capable.is_empty() {
            return Err(GatewayError::NoCapableTarget {
                model: model.to_owned(),
                operation: operation_label(operation),
            });
        }
        let keys: Vec<(u32, u32)> = capable
            .iter()
            .map(|target| (target.priority, target.weight))
            .collect();
        let order = try_order(&keys, &mut rand::rng());

        let mut attempts = 0;
        let mut upstream = Duration::ZERO;
        let mut last_failure: Option<(ProviderError, String)> = None;
        let mut skipped = Skipped {
            soonest_reopening: None,
            all_rate_limited: true,
            all_saturated: true,
        };
        // After a context-length error only targets with a larger window are worth trying.
        let mut window_to_exceed: Option<Option<u32>> = None;
        let last_position = order.len() - 1;

        for (position, &index) in order.iter().enumerate() {
            let target = capable[index];
            if let Some(window) = window_to_exceed
                && !has_larger_window(target.context_window, window)
            {
                continue;
            }
            if let Some(wait) = target.breaker.open_for(Instant::now()) {
                skipped.add(wait, target.breaker.rate_limited(), false);
                continue;
            }

            let mut retries = 0;
            loop {
                if attempts >= self.routing.max_attempts {
                    return Err(exhausted(model, attempts, last_failure, &skipped));
                }
                let slot = match &target.slots {
                    None => None,
                    Some(slots) => match slots.acquire().await {
                        Ok(permit) => Some(permit),
                        Err(refusal) => {
                            tracing::warn!(model, target = %target.label, ?refusal, "target saturated");
                            skipped.add(slots.queue_timeout(), false, true);
                            break;
                        }
                    },
                };
                attempts += 1;
                let span = tracing::info_span!(
                    "upstream_attempt",
                    target = %target.label,
                    attempt = attempts,
                    outcome = tracing::field::Empty,
                );
                let started = Instant::now();
                let result = call(Arc::clone(target), slot)
                    .instrument(span.clone())
                    .await;
                let elapsed = started.elapsed();
                upstream += elapsed;
                let mut attempt = Attempt {
                    operation,
                    model,
                    target: &target.label,
                    provider: &target.provider_name,
                    failure: None,
                    elapsed,
                    next: NextStep::Served,
                };
                let error = match result {
                    Ok(value) => {
                        span.record("outcome", "ok");
                        self.observer.attempt(&attempt);
                        target.breaker.record_success();
                        return Ok(Served {
                            value,
                            target: target.label.clone(),
                            attempts,
                            price: target.price,
                            upstream,
                        });
                    }
                    Err(error) => error,
                };
                span.record("outcome", error.class().name());
                tracing::warn!(model, target = %target.label, attempt = attempts, class = ?error.class(), %error, "upstream attempt failed");
                self.record_failure(target, &error);
                let step = self.next_step(target, &error, retries, position == last_position);
                attempt.failure = Some(error.class());
                attempt.next = match step {
                    Step::GiveUp => NextStep::GiveUp,
                    Step::Retry(_) => NextStep::Retry,
                    Step::NextTarget if position == last_position => NextStep::GiveUp,
                    Step::NextTarget => NextStep::Fallback,
                };
                self.observer.attempt(&attempt);
                if error.class() == ErrorClass::ContextTooLong {
                    window_to_exceed = Some(target.context_window);
                }
                match step {
                    Step::GiveUp => {
                        let target = target.label.clone();
                        return Err(GatewayError::Upstream {
                            model: model.to_owned(),
                            target,
                            attempts,
                            error,
                        });
                    }
                    Step::NextTarget => {
                        last_failure = Some((error, target.label.clone()));
                        break;
                    }
                    Step::Retry(wait) => {
                        last_failure = Some((error, target.label.clone()));
                        retries += 1;
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        Err(exhausted(model, attempts, last_failure, &skipped))
    }

    /// Feeds a failure to the target's circuit breaker, when it says something about the target.
    fn record_failure(&self, target: &Target, error: &ProviderError) {
        let class = error.class();
        if !class.counts_against_target() {
            return;
        }
        // Only a rate limit's Retry-After says how long the target itself wants to be left alone.
        let rate_limited = class == ErrorClass::RateLimited;
        target.breaker.record_failure(
            Instant::now(),
            self.routing.breaker_failure_threshold,
            Duration::from_millis(self.routing.breaker_cooldown_ms),
            rate_limited,
            error.retry_after().filter(|_| rate_limited),
        );
    }

    /// What to do after `error` from `target`, from the error's class alone.
    fn next_step(
        &self,
        target: &Target,
        error: &ProviderError,
        retries_done: u32,
        is_last: bool,
    ) -> Step {
        let retry = |wait: Option<Duration>| wait.map_or(Step::NextTarget, Step::Retry);
        match error.class() {
            ErrorClass::InvalidRequest => Step::GiveUp,
            ErrorClass::ContextTooLong | ErrorClass::Permanent => Step::NextTarget,
            // A failure that just opened the breaker ends this target's retries.
            ErrorClass::Transient if target.breaker.open_for(Instant::now()).is_some() => {
                Step::NextTarget
            }
            ErrorClass::Transient => retry(self.retry_wait(retries_done, error.retry_after())),
            // Waiting out a rate limit is worth it only when nothing else is left.
            ErrorClass::RateLimited if is_last => {
                retry(self.retry_wait(retries_done, error.retry_after()))
            }
            ErrorClass::RateLimited => Step::NextTarget,
        }
    }

    /// The pause before retrying the same target, or `None` to move on.
    fn retry_wait(&self, retries_done: u32, retry_after: Option<Duration>) -> Option<Duration> {
        retry::wait(&self.routing, retries_done, retry_after, &mut rand::rng())
    }
}

/// The decision after a failed attempt.
enum Step {
    /// Return the error to the client: no target would accept the request.
    GiveUp,
    /// Try the same target again after the pause.
    Retry(Duration),
    /// Move on to the next target in order.
    NextTarget,
}

fn has_larger_window(candidate: Option<u32>, failed: Option<u32>) -> bool {
    match (candidate, failed) {
        (Some(candidate), Some(failed)) => candidate > failed,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Targets passed over because their breaker was open or their queue full.
struct Skipped {
    soonest_reopening: Option<Duration>,
    all_rate_limited: bool,
    all_saturated: bool,
}

impl Skipped {
    fn add(&mut self, wait: Duration, rate_limited: bool, saturated: bool) {
        self.soonest_reopening = Some(
            self.soonest_reopening
                .map_or(wait, |soonest| soonest.min(wait)),
        );
        self.all_rate_limited &= rate_limited;
        self.all_saturated &= saturated;
    }
}

fn exhausted(
    model: &str,
    attempts: u32,
    last_failure: Option<(ProviderError, String)>,
    skipped: &Skipped,
) -> GatewayError {
    match last_failure {
        Some((error, target)) => GatewayError::Upstream {
            model: model.to_owned(),
            target,
            attempts,
            error,
        },
        None if skipped.all_saturated && skipped.soonest_reopening.is_some() => {
            GatewayError::Saturated {
                model: model.to_owned(),
                retry_after: skipped.soonest_reopening,
            }
        }
        None => GatewayError::Unavailable {
            model: model.to_owned(),
            retry_after: skipped.soonest_reopening,
            rate_limited: skipped.all_rate_limited && skipped.soonest_reopening.is_some(),
        },
    }
}
