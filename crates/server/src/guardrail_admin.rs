//! `/admin/v1/guardrails`: the operators' rules and policies, added to the configuration
//! file's (which are read-only here). Every change is a new version saved in the metadata
//! store before it takes effect — a change compiles first, or nothing changes — and replicas
//! pick up new versions within 5 s. `POST /admin/v1/guardrails/check` is the dry run: what the
//! rules would do to a text, without doing it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use landfall_config::{PolicySpec, RuleSpec, Stage};
use landfall_guardrails::{Guardrails, GuardrailsError, Subject};
use landfall_storage::{RuleSetVersion, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::AdminJson;
use crate::routes::json_response;
use crate::{ApiError, AppState, StartError};

/// The rules and policies operators added, and the version they were saved as (0: none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct OperatorRules {
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
}

/// The configuration file's rule set with the operators' added, compiled as their version.
fn build(state: &AppState, operator: &OperatorRules) -> Result<Guardrails, GuardrailsError> {
    let mut config = state.inner.guardrail_base.clone();
    config.rules.extend(operator.rules.iter().cloned());
    config.policies.extend(operator.policies.iter().cloned());
    Guardrails::compile(&config, u64::try_from(operator.version).unwrap_or(0))
}

fn swap(state: &AppState, engine: Guardrails) {
    *state
        .inner
        .guardrails
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(engine);
}

fn decode(saved: &RuleSetVersion) -> Result<OperatorRules, StoreError> {
    let mut rules: OperatorRules =
        serde_json::from_value(saved.document.clone()).map_err(|error| StoreError::Corrupt {
            entity: "rule set version",
            id: saved.version.to_string(),
            message: error.to_string(),
        })?;
    rules.version = saved.version;
    Ok(rules)
}

/// Applies the newest saved version at start.
pub(crate) async fn load_saved(state: &AppState) -> Result<(), StartError> {
    let Some(store) = state.guardrail_store() else {
        return Ok(());
    };
    let Some(saved) = store.latest_rule_set().await? else {
        return Ok(());
    };
    let operator = decode(&saved)?;
    swap(state, build(state, &operator)?);
    *state.inner.guardrail_operator.lock().await = operator;
    Ok(())
}

/// Checks every 5 s for a version another replica saved, while the server lives.
pub(crate) fn follow_replicas(state: &AppState) {
    let weak = Arc::downgrade(&state.inner);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(5));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            let state = AppState { inner };
            let Some(store) = state.guardrail_store() else {
                return;
            };
            let latest = match store.latest_rule_set().await {
                Ok(Some(latest)) => latest,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "cannot check for a newer guardrail rule set");
                    continue;
                }
            };
            let mut current = state.inner.guardrail_operator.lock().await;
            if latest.version <= current.version {
                continue;
            }
            let operator = match decode(&latest) {
                Ok(operator) => operator,
                Err(error) => {
                    tracing::error!(%error, "cannot read a saved guardrail rule set");
                    continue;
                }
            };
            match build(&state, &operator) {
                Ok(engine) => {
                    tracing::info!(
                        version = operator.version,
                        "applying a guardrail rule set saved by another replica"
                    );
                    swap(&state, engine);
                    *current = operator;
                }
                Err(error) => tracing::error!(
                    %error,
                    version = latest.version,
                    "a saved guardrail rule set does not compile; keeping the current one"
                ),
            }
        }
    });
}

/// Compiles `next`, saves it as the next version, then applies it.
async fn apply(
    state: &AppState,
    change: impl FnOnce(&mut OperatorRules) -> Result<(), ApiError>,
) -> Result<Response, ApiError> {
    let mut current = state.inner.guardrail_operator.lock().await;
    let mut next = current.clone();
    change(&mut next)?;
    next.version = current.version + 1;
    let engine = build(state, &next).map_err(|error| ApiError::InvalidRules {
        problems: error.to_string(),
    })?;
    let Some(store) = state.guardrail_store() else {
        return Err(
            StoreError::Unavailable("rule changes need a metadata store".to_owned()).into(),
        );
    };
    let document = serde_json::to_value(&next).unwrap_or_default();
    store
        .save_rule_set(&RuleSetVersion {
            version: next.version,
            document,
            created_at: landfall_storage::now_millis(),
        })
        .await?;
    swap(state, engine);
    *current = next;
    Ok(json_response(&view(state, &current)))
}

fn view(state: &AppState, operator: &OperatorRules) -> serde_json::Value {
    let base = &state.inner.guardrail_base;
    json!({
        "object": "guardrails",
        "version": operator.version,
        "configured": { "rules": base.rules, "policies": base.policies },
        "operator": { "rules": operator.rules, "policies": operator.policies },
    })
}

/// `GET /admin/v1/guardrails`.
pub(crate) async fn show(State(state): State<AppState>) -> Response {
    let operator = state.inner.guardrail_operator.lock().await.clone();
    json_response(&view(&state, &operator))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Replacement {
    /// The version being replaced: a concurrent change makes this stale, and the request
    /// fails instead of undoing it.
    version: i64,
    #[serde(default)]
    rules: Vec<RuleSpec>,
    #[serde(default)]
    policies: Vec<PolicySpec>,
}

/// `PUT /admin/v1/guardrails`: replaces the operators' whole set.
pub(crate) async fn replace(
    State(state): State<AppState>,
    AdminJson(body): AdminJson<Replacement>,
) -> Result<Response, ApiError> {
    apply(&state, |operator| {
        if operator.version != body.version {
            return Err(ApiError::InvalidRules {
                problems: format!(
                    "version {} is not the current version {}; read it again and retry",
                    body.version, operator.version
                ),
            });
        }
        operator.rules = body.rules;
        operator.policies = body.policies;
        Ok(())
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct VersionsQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// `GET /admin/v1/guardrails/versions`: every saved version, oldest first.
pub(crate) async fn versions(
    State(state): State<AppState>,
    Query(query): Query<VersionsQuery>,
) -> Result<Response, ApiError> {
    let Some(store) = state.guardrail_store() else {
        return Err(StoreError::Unavailable("no metadata store".to_owned()).into());
    };
    let saved = store
        .list_rule_sets(query.after, query.limit.unwrap_or(20).clamp(1, 100))
        .await?;
    let data: Vec<_> = saved
        .iter()
        .map(|saved| json!({ "version": saved.version, "created_at": saved.created_at, "document": saved.document }))
        .collect();
    Ok(json_response(&json!({ "object": "list", "data": data })))
}

fn not_found(kind: &'static str, id: &str) -> ApiError {
    ApiError::RuleNotFound {
        kind,
        id: id.to_owned(),
    }
}

/// `GET /admin/v1/guardrails/rules/{id}`.
pub(crate) async fn get_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let operator = state.inner.guardrail_operator.lock().await;
    let configured = state.inner.guardrail_base.rules.iter();
    let rule = operator
        .rules
        .iter()
        .chain(configured)
        .find(|rule| rule.id == id)
        .ok_or_else(|| not_found("rule", &id))?;
    Ok(json_response(rule))
}

/// `PUT /admin/v1/guardrails/rules/{id}`: creates or replaces an operator rule.
pub(crate) async fn put_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminJson(mut rule): AdminJson<RuleSpec>,
) -> Result<Response, ApiError> {
    rule.id = id;
    apply(&state, |operator| {
        match operator.rules.iter_mut().find(|known| known.id == rule.id) {
            Some(known) => *known = rule,
            None => operator.rules.push(rule),
        }
        Ok(())
    })
    .await
}

/// `DELETE /admin/v1/guardrails/rules/{id}` (fails while a policy names it).
pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    apply(&state, |operator| {
        let before = operator.rules.len();
        operator.rules.retain(|rule| rule.id != id);
        if operator.rules.len() == before {
            return Err(not_found("rule", &id));
        }
        Ok(())
    })
    .await
}

/// `GET /admin/v1/guardrails/policies/{id}`.
pub(crate) async fn get_policy(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let operator = state.inner.guardrail_operator.lock().await;
    let configured = state.inner.guardrail_base.policies.iter();
    let policy = operator
        .policies
        .iter()
        .chain(configured)
        .find(|policy| policy.id == id)
        .ok_or_else(|| not_found("policy", &id))?;
    Ok(json_response(policy))
}

/// `PUT /admin/v1/guardrails/policies/{id}`: creates or replaces an operator policy.
pub(crate) async fn put_policy(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminJson(mut policy): AdminJson<PolicySpec>,
) -> Result<Response, ApiError> {
    policy.id = id;
    apply(&state, |operator| {
        match operator
            .policies
            .iter_mut()
            .find(|known| known.id == policy.id)
        {
            Some(known) => *known = policy,
            None => operator.policies.push(policy),
        }
        Ok(())
    })
    .await
}

/// `DELETE /admin/v1/guardrails/policies/{id}`.
pub(crate) async fn delete_policy(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    apply(&state, |operator| {
        let before = operator.policies.len();
        operator.policies.retain(|policy| policy.id != id);
        if operator.policies.len() == before {
            return Err(not_found("policy", &id));
        }
        Ok(())
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Check {
    text: String,
    #[serde(default = "output")]
    stage: Stage,
    /// Check the rules of this subject's policies…
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    /// …or exactly these rules.
    #[serde(default)]
    rules: Option<Vec<String>>,
}

fn output() -> Stage {
    Stage::Output
}

/// `POST /admin/v1/guardrails/check`: what the rules would do to `text`, without doing it.
pub(crate) async fn check(
    State(state): State<AppState>,
    AdminJson(body): AdminJson<Check>,
) -> Response {
    let engine = state.guardrails();
    let selection = match &body.rules {
        Some(ids) => engine.select_rules(ids),
        None => engine.select(&Subject {
            tenant_id: body.tenant_id.as_deref(),
            key_id: body.key_id.as_deref(),
            model: body.model.as_deref(),
        }),
    };
    let verdict = selection
        .map(|selection| selection.check(body.stage, &body.text))
        .unwrap_or_default();
    json_response(&json!({
        "object": "guardrails.check",
        "version": engine.version(),
        "stage": body.stage,
        "hits": verdict.hits,
        "blocked": verdict.blocked.map(|hit| hit.rule),
        "review": verdict.review,
        "masked": verdict.masked,
    }))
}
