//! What the Files and Vector Stores routes share: the service handle, OpenAI's list
//! parameters and list envelope, and time in seconds.

use std::collections::HashMap;

use landfall_knowledge::Knowledge;
use landfall_storage::PageRequest;
use serde_json::{Value, json};

use crate::{ApiError, AppState};

pub(crate) fn knowledge(state: &AppState) -> Result<&Knowledge, ApiError> {
    state.knowledge().ok_or(ApiError::KnowledgeDisabled)
}

/// OpenAI's times are unix seconds.
pub(crate) fn seconds(millis: i64) -> i64 {
    millis.div_euclid(1000)
}

/// `limit` and the cursor (`after` or `before`) of a list request; one more item is fetched
/// to tell `has_more`. A `before` page is read as the `after` page of the opposite order and
/// turned around.
pub(crate) struct Page {
    limit: u32,
    cursor: Option<String>,
    backward: bool,
}

impl Page {
    pub(crate) fn fetch(&self) -> PageRequest {
        PageRequest {
            after: self.cursor.clone(),
            limit: self.limit + 1,
        }
    }

    /// Drops the extra item and puts a `before` page back in the asked order; returns whether
    /// there are more items past the page (beyond its end, or before its start for `before`).
    pub(crate) fn trim<T>(&self, items: &mut Vec<T>) -> bool {
        let has_more = items.len() > self.limit as usize;
        items.truncate(self.limit as usize);
        if self.backward {
            items.reverse();
        }
        has_more
    }
}

/// Parses `limit` (1..=100, default 20), `order` (`asc` or `desc`, default `desc`) and one of
/// `after` and `before`. Returns the page and the order to read the store in (the opposite
/// one for `before`).
pub(crate) fn list_page(params: &HashMap<String, String>) -> Result<(Page, bool), ApiError> {
    let limit = match params.get("limit") {
        None => 20,
        Some(text) => match text.parse::<u32>() {
            Ok(limit) if (1..=100).contains(&limit) => limit,
            _ => {
                return Err(ApiError::InvalidValue {
                    message: format!("limit must be a number from 1 to 100, got `{text}`"),
                    param: "limit",
                });
            }
        },
    };
    let descending = match params.get("order").map(String::as_str) {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::InvalidValue {
                message: format!("order must be `asc` or `desc`, got `{other}`"),
                param: "order",
            });
        }
    };
    let cursor = |name: &str| params.get(name).filter(|id| !id.is_empty()).cloned();
    let page = match (cursor("after"), cursor("before")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidValue {
                message: "give `after` or `before`, not both".to_owned(),
                param: "before",
            });
        }
        (None, Some(before)) => Page {
            limit,
            cursor: Some(before),
            backward: true,
        },
        (after, None) => Page {
            limit,
            cursor: after,
            backward: false,
        },
    };
    let read_descending = descending != page.backward;
    Ok((page, read_descending))
}

/// OpenAI's list envelope; `data` items must have an `id`.
pub(crate) fn listed(data: Vec<Value>, has_more: bool) -> Value {
    let id = |item: Option<&Value>| item.and_then(|item| item.get("id")).cloned();
    json!({
        "object": "list",
        "first_id": id(data.first()),
        "last_id": id(data.last()),
        "has_more": has_more,
        "data": data,
    })
}
