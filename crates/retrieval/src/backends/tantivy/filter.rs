//! Compiles a [`Filter`] into a tantivy query over the attribute-term field.
//!
//! Every scalar attribute (and the chunk's `file_id`) is indexed as one raw term
//! `{type}\0{key}\0{value}` where the value is encoded so that byte order is the value's order:
//! strings as themselves (Rust's `str` order is byte order), booleans as `0`/`1`, numbers as the
//! order-preserving bit pattern of their `f64` in hex. Then `eq` is a term query, `gt`/`lt` are
//! term-range queries inside the `{type}\0{key}\0` prefix (so values of other types never
//! compare, as in [`Filter::matches`]), `ne`/`nin` are "everything but", and missing keys fall
//! out naturally. tantivy's own JSON field is not used for this: it types numbers as
//! i64/u64/f64 separately and only supports ranges on fast JSON fields, which would not agree
//! with the reference semantics (numbers compare as numbers, whatever their JSON spelling).

use std::ops::Bound;

use ::tantivy::Term;
use ::tantivy::query::{AllQuery, BooleanQuery, EmptyQuery, Occur, Query, RangeQuery, TermQuery};
use ::tantivy::schema::{Field, IndexRecordOption};
use serde_json::{Map, Value};

use crate::{Comparison, ComparisonOp, CompoundOp, Filter};

/// The attribute terms of one chunk (attributes that are not strings, numbers or booleans are
/// not indexed: no comparison can match them, which is what [`Filter::matches`] says too).
pub(super) fn attribute_terms(attributes: &Map<String, Value>) -> Vec<String> {
    attributes
        .iter()
        .filter_map(|(key, value)| encode(key, value))
        .collect()
}

/// The query selecting exactly the documents whose attributes pass `filter`.
pub(super) fn compile(field: Field, filter: &Filter) -> Box<dyn Query> {
    match filter {
        Filter::Compound {
            op: CompoundOp::And,
            filters,
        } => {
            if filters.is_empty() {
                return Box::new(AllQuery);
            }
            let clauses = filters
                .iter()
                .map(|f| (Occur::Must, compile(field, f)))
                .collect();
            Box::new(BooleanQuery::new(clauses))
        }
        Filter::Compound {
            op: CompoundOp::Or,
            filters,
        } => {
            if filters.is_empty() {
                return Box::new(EmptyQuery);
            }
            let clauses = filters
                .iter()
                .map(|f| (Occur::Should, compile(field, f)))
                .collect();
            Box::new(BooleanQuery::new(clauses))
        }
        Filter::Comparison(comparison) => compile_comparison(field, comparison),
    }
}

fn compile_comparison(field: Field, comparison: &Comparison) -> Box<dyn Query> {
    let key = comparison.key.as_str();
    let value = &comparison.value;
    match comparison.op {
        ComparisonOp::Eq => equals(field, key, value),
        ComparisonOp::Ne => not(equals(field, key, value)),
        ComparisonOp::In => one_of(field, key, value),
        ComparisonOp::Nin => not(one_of(field, key, value)),
        ComparisonOp::Gt => range(field, key, value, Side::Above, false),
        ComparisonOp::Gte => range(field, key, value, Side::Above, true),
        ComparisonOp::Lt => range(field, key, value, Side::Below, false),
        ComparisonOp::Lte => range(field, key, value, Side::Below, true),
    }
}

fn term(field: Field, text: &str) -> Term {
    Term::from_field_text(field, text)
}

fn equals(field: Field, key: &str, value: &Value) -> Box<dyn Query> {
    match encode(key, value) {
        Some(encoded) => Box::new(TermQuery::new(
            term(field, &encoded),
            IndexRecordOption::Basic,
        )),
        None => Box::new(EmptyQuery),
    }
}

fn one_of(field: Field, key: &str, value: &Value) -> Box<dyn Query> {
    let Value::Array(options) = value else {
        return Box::new(EmptyQuery);
    };
    let clauses: Vec<(Occur, Box<dyn Query>)> = options
        .iter()
        .map(|option| (Occur::Should, equals(field, key, option)))
        .collect();
    if clauses.is_empty() {
        return Box::new(EmptyQuery);
    }
    Box::new(BooleanQuery::new(clauses))
}

/// Everything but `query` (a boolean query of only `MustNot` clauses would match nothing).
fn not(query: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
        (Occur::MustNot, query),
    ]))
}

#[derive(Clone, Copy)]
enum Side {
    Above,
    Below,
}

fn range(field: Field, key: &str, value: &Value, side: Side, inclusive: bool) -> Box<dyn Query> {
    let (Some(tag), Some(encoded)) = (type_tag(value), encode(key, value)) else {
        return Box::new(EmptyQuery);
    };
    // `{tag}\0{key}\0` starts the key's values of this type; `{tag}\0{key}\x01` is just past
    // the last of them.
    let first = term(field, &format!("{tag}\0{key}\0"));
    let past_last = term(field, &format!("{tag}\0{key}\u{1}"));
    let bound = |term: Term| {
        if inclusive {
            Bound::Included(term)
        } else {
            Bound::Excluded(term)
        }
    };
    let (lower, upper) = match side {
        Side::Above => (bound(term(field, &encoded)), Bound::Excluded(past_last)),
        Side::Below => (Bound::Included(first), bound(term(field, &encoded))),
    };
    Box::new(RangeQuery::new(lower, upper))
}

fn type_tag(value: &Value) -> Option<char> {
    match value {
        Value::String(_) => Some('s'),
        Value::Number(_) => Some('n'),
        Value::Bool(_) => Some('b'),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The raw term of `key = value`; `None` for values no comparison can match.
fn encode(key: &str, value: &Value) -> Option<String> {
    let tag = type_tag(value)?;
    let encoded = match value {
        Value::String(text) => text.clone(),
        Value::Bool(flag) => if *flag { "1" } else { "0" }.to_string(),
        Value::Number(number) => sortable_f64(number.as_f64()?),
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    Some(format!("{tag}\0{key}\0{encoded}"))
}

/// Hex of the `f64`'s bits transformed so unsigned order is numeric order (`-0.0` folds into
/// `0.0`, as `partial_cmp` says they are equal).
fn sortable_f64(number: f64) -> String {
    let number = if number == 0.0 { 0.0 } else { number };
    let bits = number.to_bits();
    let sortable = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    format!("{sortable:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_encoding_preserves_order() {
        let numbers = [-1e300, -2.5, -1.0, -0.0, 0.0, 1e-9, 1.0, 2.0, 2024.0, 1e300];
        for pair in numbers.windows(2) {
            let (a, b) = (sortable_f64(pair[0]), sortable_f64(pair[1]));
            if pair[0] == pair[1] {
                assert_eq!(a, b);
            } else {
                assert!(a < b, "{} !< {}", pair[0], pair[1]);
            }
        }
    }

    #[test]
    fn only_scalars_are_encoded() {
        let attributes = serde_json::json!({"a": "x", "b": 1, "c": true, "d": null, "e": [1]});
        let Value::Object(attributes) = attributes else {
            unreachable!("an object")
        };
        let mut terms = attribute_terms(&attributes);
        terms.sort();
        assert_eq!(terms.len(), 3);
        assert_eq!(terms[0], "b\0c\u{0}1");
        assert_eq!(terms[2], "s\0a\0x");
    }
}
