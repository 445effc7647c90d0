//! OpenAI's vector store attribute filters: a comparison (`{"type": "eq", "key": "region",
//! "value": "us"}`) or a compound of filters (`{"type": "and", "filters": [...]}`), with the
//! same JSON shape, so request bodies deserialize straight into [`Filter`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Filter {
    Comparison(Comparison),
    Compound {
        #[serde(rename = "type")]
        op: CompoundOp,
        filters: Vec<Filter>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    #[serde(rename = "type")]
    pub op: ComparisonOp,
    pub key: String,
    /// A string, number or boolean; an array of them for `in` and `nin`.
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComparisonOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Nin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompoundOp {
    And,
    Or,
}

impl Filter {
    /// Whether a chunk with these attributes passes. The reference semantics every backend's
    /// pushed-down filter must agree with: a missing key fails every comparison except `ne`
    /// and `nin`; numbers compare as numbers, strings as strings, and values of different
    /// types are never equal or ordered.
    pub fn matches(&self, attributes: &Map<String, Value>) -> bool {
        match self {
            Filter::Compound {
                op: CompoundOp::And,
                filters,
            } => filters.iter().all(|f| f.matches(attributes)),
            Filter::Compound {
                op: CompoundOp::Or,
                filters,
            } => filters.iter().any(|f| f.matches(attributes)),
            Filter::Comparison(comparison) => comparison.matches(attributes.get(&comparison.key)),
        }
    }
}

impl Comparison {
    fn matches(&self, actual: Option<&Value>) -> bool {
        use std::cmp::Ordering;
        let ordering = |actual: &Value| compare(actual, &self.value);
        match self.op {
            ComparisonOp::Eq => actual.is_some_and(|a| ordering(a) == Some(Ordering::Equal)),
            ComparisonOp::Ne => actual.is_none_or(|a| ordering(a) != Some(Ordering::Equal)),
            ComparisonOp::Gt => actual.is_some_and(|a| ordering(a) == Some(Ordering::Greater)),
            ComparisonOp::Gte => actual
                .is_some_and(|a| matches!(ordering(a), Some(Ordering::Greater | Ordering::Equal))),
            ComparisonOp::Lt => actual.is_some_and(|a| ordering(a) == Some(Ordering::Less)),
            ComparisonOp::Lte => actual
                .is_some_and(|a| matches!(ordering(a), Some(Ordering::Less | Ordering::Equal))),
            ComparisonOp::In => actual.is_some_and(|a| self.contains(a)),
            ComparisonOp::Nin => !actual.is_some_and(|a| self.contains(a)),
        }
    }

    fn contains(&self, actual: &Value) -> bool {
        let Value::Array(options) = &self.value else {
            return false;
        };
        options
            .iter()
            .any(|option| compare(actual, option) == Some(std::cmp::Ordering::Equal))
    }
}

fn compare(actual: &Value, expected: &Value) -> Option<std::cmp::Ordering> {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(value: Value) -> Filter {
        serde_json::from_value(value).unwrap_or_else(|e| unreachable!("bad test filter: {e}"))
    }

    #[test]
    fn comparisons_and_compounds_follow_the_reference_semantics() {
        let attributes = json!({"region": "us", "year": 2024, "draft": false})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let cases = [
            (json!({"type": "eq", "key": "region", "value": "us"}), true),
            (json!({"type": "eq", "key": "region", "value": "eu"}), false),
            (json!({"type": "ne", "key": "region", "value": "eu"}), true),
            (json!({"type": "ne", "key": "missing", "value": "eu"}), true),
            (
                json!({"type": "eq", "key": "missing", "value": "eu"}),
                false,
            ),
            (json!({"type": "gt", "key": "year", "value": 2023}), true),
            (json!({"type": "gte", "key": "year", "value": 2024.0}), true),
            (json!({"type": "lt", "key": "year", "value": 2024}), false),
            (json!({"type": "lte", "key": "year", "value": 2024}), true),
            (json!({"type": "gt", "key": "region", "value": 1}), false),
            (json!({"type": "eq", "key": "draft", "value": false}), true),
            (
                json!({"type": "in", "key": "region", "value": ["eu", "us"]}),
                true,
            ),
            (
                json!({"type": "nin", "key": "region", "value": ["eu", "us"]}),
                false,
            ),
            (
                json!({"type": "nin", "key": "missing", "value": ["eu"]}),
                true,
            ),
            (
                json!({"type": "and", "filters": [
                    {"type": "eq", "key": "region", "value": "us"},
                    {"type": "gte", "key": "year", "value": 2025}
                ]}),
                false,
            ),
            (
                json!({"type": "or", "filters": [
                    {"type": "eq", "key": "region", "value": "eu"},
                    {"type": "gte", "key": "year", "value": 2024}
                ]}),
                true,
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(
                filter(json.clone()).matches(&attributes),
                expected,
                "{json}"
            );
        }
    }

    #[test]
    fn an_unknown_operator_is_refused() {
        let parsed: Result<Filter, _> =
            serde_json::from_value(json!({"type": "like", "key": "a", "value": "b"}));
        assert!(parsed.is_err());
    }
}
