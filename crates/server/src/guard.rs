//! Guardrails on the request path: the rules for a request (its tenant, key and model alias),
//! checked on chat input messages, tool results, embeddings input, and the answer — whole, or
//! as it streams (masked in-stream, a block ends the stream with an `error` event, a review
//! hold replaces the answer with a pending notice). Every hit goes into the request's record
//! (audit log, metrics) and into the response (`x-landfall-guardrails`, `landfall_guardrails`).

use futures::StreamExt;
use http::HeaderValue;
use landfall_accounting::{RequestLog, RuleHit};
use landfall_governance::Principal;
use landfall_guardrails::{Hit, OutputStream, Released, Selection, Stage, Subject};
use landfall_providers::{ChatStream, ProviderError};
use landfall_types::{ChatChunk, ChatMessage, ChatResponse, MessageContent, Role};
use serde_json::{Value, json};

use crate::{ApiError, AppState, reviews};

/// Response header listing the rules that fired: `rule=action` (`;dry_run` when it only
/// reported), comma-separated.
pub const GUARDRAILS_HEADER: &str = "x-landfall-guardrails";
/// Response header with the id of a review holding the answer.
pub const REVIEW_HEADER: &str = "x-landfall-review";
/// The response field with the rules that fired.
const FIELD: &str = "landfall_guardrails";

/// The rules that apply to this caller and model, if any.
pub(crate) fn select(state: &AppState, principal: &Principal, model: &str) -> Option<Selection> {
    state.guardrails().select(&Subject {
        tenant_id: Some(principal.tenant.id.as_str()),
        key_id: Some(principal.key_id()),
        model: Some(model),
    })
}

/// What the checks of one stage found: the hits (one per rule, matches added up), the first
/// live block, and whether a live rule holds the answer for review.
#[derive(Default)]
struct Findings {
    hits: Vec<Hit>,
    blocked: Option<Hit>,
    review: bool,
}

impl Findings {
    /// Checks `text` at `stage`, masking it in place.
    fn check(&mut self, selection: &Selection, stage: Stage, text: &mut String) {
        let verdict = selection.check(stage, text);
        if let Some(masked) = verdict.masked {
            *text = masked;
        }
        if self.blocked.is_none() {
            self.blocked = verdict.blocked;
        }
        self.review |= verdict.review;
        merge(&mut self.hits, verdict.hits);
    }

    /// Records the hits on the request and turns a live block into the client's error.
    fn settle(self, output: bool, log: &RequestLog) -> Result<(Vec<Hit>, bool), ApiError> {
        log.rule_hits(self.hits.iter().map(rule_hit));
        match self.blocked {
            Some(hit) => Err(ApiError::Blocked {
                output,
                rule: hit.rule.clone(),
                message: block_message(&hit),
            }),
            None => Ok((self.hits, self.review)),
        }
    }
}

fn block_message(hit: &Hit) -> String {
    if hit.message.is_empty() {
        format!("blocked by guardrail rule `{}`", hit.rule)
    } else {
        hit.message.clone()
    }
}

pub(crate) fn rule_hit(hit: &Hit) -> RuleHit {
    RuleHit {
        rule: hit.rule.clone(),
        action: hit.action.name(),
        stage: hit.stage.name(),
        severity: hit.severity.name(),
        dry_run: hit.dry_run,
        matches: hit.matches,
        details: hit.details.clone(),
    }
}

/// Checks and masks chat messages in place: `tool` messages at the tool stage, the rest at the
/// input stage. Returns the hits.
///
/// # Errors
/// [`ApiError::Blocked`] when a live rule blocks.
pub(crate) fn check_messages(
    selection: &Selection,
    messages: &mut [ChatMessage],
    log: &RequestLog,
) -> Result<Vec<Hit>, ApiError> {
    let mut findings = Findings::default();
    for message in messages.iter_mut() {
        let stage = if message.role == Role::Tool {
            Stage::Tool
        } else {
            Stage::Input
        };
        if selection.applies(stage) {
            for_each_text(message, |text| findings.check(selection, stage, text));
        }
    }
    Ok(findings.settle(false, log)?.0)
}

/// Checks and masks texts in place at `stage` (embeddings input, retrieved chunks).
///
/// # Errors
/// [`ApiError::Blocked`] when a live rule blocks.
pub(crate) fn check_texts<'a>(
    selection: &Selection,
    stage: Stage,
    texts: impl Iterator<Item = &'a mut String>,
    log: &RequestLog,
) -> Result<Vec<Hit>, ApiError> {
    let mut findings = Findings::default();
    if selection.applies(stage) {
        for text in texts {
            findings.check(selection, stage, text);
        }
    }
    Ok(findings.settle(false, log)?.0)
}

/// Checks retrieved chunks before they enter a prompt: a chunk a live rule blocks (an
/// injection hidden in a document, say) is dropped rather than failing the request; masks
/// apply. Returns the hits.
pub(crate) fn check_retrieved(
    selection: &Selection,
    hits: &mut Vec<landfall_knowledge::SearchHit>,
    log: &RequestLog,
) -> Vec<Hit> {
    let mut found = Vec::new();
    if !selection.applies(Stage::Retrieved) {
        return found;
    }
    hits.retain_mut(|hit| {
        let verdict = selection.check(Stage::Retrieved, &hit.text);
        if let Some(masked) = verdict.masked {
            hit.text = masked;
        }
        merge(&mut found, verdict.hits);
        verdict.blocked.is_none()
    });
    log.rule_hits(found.iter().map(rule_hit));
    found
}

/// A rule that fired on several texts is one hit with the matches added up.
fn merge(into: &mut Vec<Hit>, hits: Vec<Hit>) {
    for hit in hits {
        match into
            .iter_mut()
            .find(|known| known.rule == hit.rule && known.stage == hit.stage)
        {
            Some(known) => {
                known.matches += hit.matches;
                for detail in hit.details {
                    if !known.details.contains(&detail) {
                        known.details.push(detail);
                    }
                }
            }
            None => into.push(hit),
        }
    }
}

fn for_each_text(message: &mut ChatMessage, mut visit: impl FnMut(&mut String)) {
    match &mut message.content {
        Some(MessageContent::Text(text)) => visit(text),
        Some(MessageContent::Parts(parts)) => {
            for part in parts {
                if part.get("type").and_then(Value::as_str) == Some("text")
                    && let Some(Value::String(text)) = part.get_mut("text")
                {
                    visit(text);
                }
            }
        }
        None => {}
    }
}

/// What became of a whole answer.
pub(crate) enum Answer {
    /// Send it (masked where rules masked).
    Send,
    /// Held for review under this id; the response now carries the notice.
    Held(String),
}

/// Checks a whole answer in place.
///
/// # Errors
/// [`ApiError::Blocked`] when a live rule blocks; storage errors when a review cannot be held.
pub(crate) async fn check_answer(
    state: &AppState,
    principal: &Principal,
    selection: &Selection,
    response: &mut ChatResponse,
    earlier: &[Hit],
    log: &RequestLog,
) -> Result<Answer, ApiError> {
    let mut findings = Findings::default();
    if selection.applies(Stage::Output) {
        for choice in &mut response.choices {
            for_each_text(&mut choice.message, |text| {
                findings.check(selection, Stage::Output, text);
            });
        }
    }
    let (hits, review) = findings.settle(true, log)?;
    let mut all = earlier.to_vec();
    all.extend(hits);
    annotate(&mut response.extra, &all);
    if !review {
        return Ok(Answer::Send);
    }
    let held = serde_json::to_value(&*response).unwrap_or(Value::Null);
    let id = reviews::hold(state, principal, log, &response.model, &all, held).await?;
    let notice = selection.review_message(&id);
    for choice in &mut response.choices {
        choice.message.content = Some(MessageContent::Text(notice.clone()));
        choice.finish_reason = Some("stop".to_owned());
    }
    response.extra.insert(
        "landfall_review".to_owned(),
        json!({ "id": id, "status": "pending" }),
    );
    Ok(Answer::Held(id))
}

fn annotate(extra: &mut landfall_types::Extra, hits: &[Hit]) {
    if !hits.is_empty() {
        extra.insert(
            FIELD.to_owned(),
            serde_json::to_value(hits).unwrap_or(Value::Null),
        );
    }
}

/// The `x-landfall-guardrails` value for `hits`.
pub(crate) fn header(response: &mut axum::response::Response, hits: &[Hit]) {
    if hits.is_empty() {
        return;
    }
    let value = hits
        .iter()
        .map(|hit| {
            let dry = if hit.dry_run { ";dry_run" } else { "" };
            format!("{}={}{dry}", hit.rule, hit.action.name())
        })
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(GUARDRAILS_HEADER, value);
    }
}

/// [`guard_stream`] when the request has rules, else the stream as it is.
pub(crate) fn guard_stream_if(
    state: &AppState,
    principal: &Principal,
    selection: Option<&Selection>,
    stream: ChatStream,
    earlier: &[Hit],
    log: &RequestLog,
) -> ChatStream {
    match selection {
        Some(selection) => guard_stream(
            state.clone(),
            principal.clone(),
            selection.clone(),
            stream,
            earlier.to_vec(),
            log.clone(),
        ),
        None => stream,
    }
}

/// Scans a streamed answer: content is released as the scanners allow, masked; a block ends
/// the stream with an `error` event; a review hold replaces the answer with its notice; the
/// last chunk carries every hit.
pub(crate) fn guard_stream(
    state: AppState,
    principal: Principal,
    selection: Selection,
    stream: ChatStream,
    earlier: Vec<Hit>,
    log: RequestLog,
) -> ChatStream {
    if !selection.applies(Stage::Output) {
        return stream;
    }
    let guard = StreamGuard {
        state,
        principal,
        selection,
        choices: Vec::new(),
        hits: earlier,
        log,
        last: None,
        ended: false,
    };
    futures::stream::unfold((stream, guard), |(mut upstream, mut guard)| async move {
        loop {
            if guard.ended {
                return None;
            }
            match upstream.next().await {
                Some(Ok(chunk)) => match guard.chunk(chunk).await {
                    Ok(Some(chunk)) => return Some((Ok(chunk), (upstream, guard))),
                    Ok(None) => {}
                    Err(error) => {
                        guard.ended = true;
                        return Some((Err(error), (upstream, guard)));
                    }
                },
                Some(Err(error)) => {
                    guard.ended = true;
                    return Some((Err(error), (upstream, guard)));
                }
                None => {
                    guard.ended = true;
                    return match guard.end().await {
                        Ok(Some(chunk)) => Some((Ok(chunk), (upstream, guard))),
                        Ok(None) => None,
                        Err(error) => Some((Err(error), (upstream, guard))),
                    };
                }
            }
        }
    })
    .boxed()
}

struct StreamGuard {
    state: AppState,
    principal: Principal,
    selection: Selection,
    /// One scanner per choice index, and whether it finished.
    choices: Vec<(u32, OutputStream, bool)>,
    hits: Vec<Hit>,
    log: RequestLog,
    /// The stream's `id`, `model` and `created`, for a chunk of our own.
    last: Option<ChatChunk>,
    ended: bool,
}

impl StreamGuard {
    fn scanner(&mut self, index: u32) -> &mut (u32, OutputStream, bool) {
        if let Some(position) = self
            .choices
            .iter()
            .position(|(known, _, _)| *known == index)
        {
            return &mut self.choices[position];
        }
        self.choices.push((index, self.selection.stream(), false));
        let last = self.choices.len() - 1;
        &mut self.choices[last]
    }

    /// The chunk as it may go out, or `None` when nothing of it may go yet.
    async fn chunk(&mut self, mut chunk: ChatChunk) -> Result<Option<ChatChunk>, ProviderError> {
        if self.last.is_none() {
            self.last = Some(ChatChunk {
                id: chunk.id.clone(),
                object: chunk.object.clone(),
                created: chunk.created,
                model: chunk.model.clone(),
                choices: Vec::new(),
                usage: None,
                extra: landfall_types::Extra::new(),
            });
        }
        for choice in &mut chunk.choices {
            let finishing = choice.finish_reason.is_some();
            let mut released = String::new();
            if let Some(content) = choice.delta.content.take() {
                let (_, scanner, _) = self.scanner(choice.index);
                let step = scanner
                    .push(&content)
                    .map_err(|error| stopped("output_too_long", error.to_string()))?;
                released = self.released(step)?;
            }
            if finishing {
                let (_, scanner, finished) = self.scanner(choice.index);
                *finished = true;
                let step = scanner.finish();
                released.push_str(&self.released(step)?);
                if let Some(notice) = self.held(choice.index).await? {
                    released = notice;
                    choice
                        .extra
                        .insert("landfall_review".to_owned(), json!({ "status": "pending" }));
                }
            }
            if !released.is_empty() {
                choice.delta.content = Some(released);
            }
        }
        let every_choice_done =
            !self.choices.is_empty() && self.choices.iter().all(|(_, _, finished)| *finished);
        if every_choice_done && (chunk.usage.is_some() || !chunk.choices.is_empty()) {
            self.note_hits();
            if chunk
                .choices
                .iter()
                .any(|choice| choice.finish_reason.is_some())
                || chunk.usage.is_some()
            {
                annotate(&mut chunk.extra, &self.hits);
            }
        }
        let empty = chunk.usage.is_none()
            && chunk.choices.iter().all(|choice| {
                choice.delta.role.is_none()
                    && choice.delta.content.is_none()
                    && choice.delta.tool_calls.is_none()
                    && choice.finish_reason.is_none()
            })
            && !chunk.choices.is_empty();
        Ok((!empty).then_some(chunk))
    }

    /// The upstream ended without finishing some choices: release what is left.
    async fn end(&mut self) -> Result<Option<ChatChunk>, ProviderError> {
        let mut choices = Vec::new();
        let open: Vec<u32> = self
            .choices
            .iter()
            .filter(|(_, _, finished)| !finished)
            .map(|(index, _, _)| *index)
            .collect();
        for index in open {
            let (_, scanner, finished) = self.scanner(index);
            *finished = true;
            let step = scanner.finish();
            let mut released = self.released(step)?;
            if let Some(notice) = self.held(index).await? {
                released = notice;
            }
            if !released.is_empty() {
                choices.push(landfall_types::ChunkChoice {
                    index,
                    delta: landfall_types::Delta {
                        content: Some(released),
                        ..landfall_types::Delta::default()
                    },
                    finish_reason: None,
                    logprobs: None,
                    extra: landfall_types::Extra::new(),
                });
            }
        }
        self.note_hits();
        if choices.is_empty() {
            return Ok(None);
        }
        let mut chunk = self.last.take().unwrap_or_else(|| ChatChunk {
            id: String::new(),
            object: "chat.completion.chunk".to_owned(),
            created: 0,
            model: String::new(),
            choices: Vec::new(),
            usage: None,
            extra: landfall_types::Extra::new(),
        });
        chunk.choices = choices;
        annotate(&mut chunk.extra, &self.hits);
        Ok(Some(chunk))
    }

    fn released(&mut self, step: Released) -> Result<String, ProviderError> {
        if let Some(hit) = step.blocked {
            self.note_hits();
            return Err(stopped("output_blocked", block_message(&hit)));
        }
        Ok(step.text)
    }

    /// When the choice's answer is held for review: stores it and returns the notice.
    async fn held(&mut self, index: u32) -> Result<Option<String>, ProviderError> {
        let Some((_, scanner, _)) = self.choices.iter().find(|(known, _, _)| *known == index)
        else {
            return Ok(None);
        };
        if !scanner.review() {
            return Ok(None);
        }
        let text = scanner.masked_text();
        self.note_hits();
        let model = self
            .last
            .as_ref()
            .map(|chunk| chunk.model.clone())
            .unwrap_or_default();
        let held = json!({
            "object": "chat.completion",
            "model": model,
            "choices": [{ "index": index, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
        });
        match reviews::hold(
            &self.state,
            &self.principal,
            &self.log,
            &model,
            &self.hits,
            held,
        )
        .await
        {
            Ok(id) => Ok(Some(self.selection.review_message(&id))),
            Err(error) => {
                tracing::error!(?error, "cannot hold a streamed answer for review");
                Err(stopped(
                    "review_unavailable",
                    "the answer needs review and cannot be held now".to_owned(),
                ))
            }
        }
    }

    /// Folds the scanners' hits into the request's and records them.
    fn note_hits(&mut self) {
        let mut hits: Vec<Hit> = Vec::new();
        for (_, scanner, _) in &self.choices {
            merge(&mut hits, scanner.hits());
        }
        for hit in hits {
            match self
                .hits
                .iter_mut()
                .find(|known| known.rule == hit.rule && known.stage == hit.stage)
            {
                Some(known) => *known = hit,
                None => self.hits.push(hit),
            }
        }
        self.log.rule_hits(self.hits.iter().map(rule_hit));
    }
}

fn stopped(code: &'static str, message: String) -> ProviderError {
    ProviderError::Stopped { code, message }
}
