//! Domain rules as conditions over matches (medical, finance, legal), JSON Schema on
//! structured outputs, regular expressions, policies and dry runs.

use std::sync::Arc;

use landfall_guardrails::{Guardrails, GuardrailsConfig, Stage, Subject};

use crate::{check, fired, rules};

const DOMAIN: &str = r#"
[[rules]]
id = "medical-dose-without-number"
stages = ["output"]
action = "warn"
message = "no explicit dosage found"
[rules.match]
all = [
  { words = ["剂量", "用量", "dose", "dosage", "mg"] },
  { not = { regex = '\d+(\.\d+)?\s*(mg|g|ml|μg|mcg|毫克|克|毫升|片|粒|次)' } },
]

[[rules]]
id = "finance-guaranteed-returns"
stages = ["output"]
action = "block"
severity = "critical"
message = "promises of guaranteed returns are not allowed"
match = { words = ["保本", "稳赚", "稳赚不赔", "guaranteed return", "guaranteed returns", "risk-free return"] }

[[rules]]
id = "legal-statute-citation"
stages = ["output"]
action = "warn"
message = "cite statutes as 《…》第N条"
match = { regex = '(?:^|[^》0-9零一二三四五六七八九十百千])第[0-9零一二三四五六七八九十百千]+条' }
"#;

#[test]
fn medical_doses_need_a_number() {
    let engine = rules(DOMAIN);
    let warned = check(&engine, "请按医嘱调整剂量。");
    assert_eq!(fired(&warned), ["medical-dose-without-number"]);
    assert_eq!(warned.hits[0].message, "no explicit dosage found");
    assert!(
        check(&engine, "成人剂量为每次 500 mg，每日两次。")
            .hits
            .is_empty()
    );
    assert!(
        check(&engine, "The usual dose is 2.5mg daily.")
            .hits
            .is_empty()
    );
    assert_eq!(
        fired(&check(&engine, "Take the usual dose.")),
        ["medical-dose-without-number"]
    );
    assert!(check(&engine, "多喝水，注意休息。").hits.is_empty());
}

#[test]
fn guaranteed_returns_are_blocked() {
    let engine = rules(DOMAIN);
    for text in [
        "本理财产品保本保息",
        "穩賺不賠",
        "We offer a GUARANTEED return of 8%.",
    ] {
        let verdict = check(&engine, text);
        let blocked = verdict.blocked.map(|hit| (hit.rule, hit.severity.name()));
        assert_eq!(
            blocked,
            Some(("finance-guaranteed-returns".to_owned(), "critical")),
            "{text}"
        );
    }
    assert!(check(&engine, "投资有风险，收益不保证。").blocked.is_none());
}

#[test]
fn statutes_are_cited_with_the_law_named() {
    let engine = rules(DOMAIN);
    assert!(
        check(
            &engine,
            "根据《中华人民共和国劳动合同法》第三十九条，公司可以解除合同。"
        )
        .hits
        .is_empty()
    );
    assert!(
        check(&engine, "依照《民法典》第1165条承担责任。")
            .hits
            .is_empty()
    );
    let verdict = check(&engine, "根据第三十九条，公司可以解除合同。");
    assert_eq!(fired(&verdict), ["legal-statute-citation"]);
}

#[test]
fn structured_outputs_follow_their_schema() {
    let engine = rules(
        r#"
[[rules]]
id = "report-schema"
stages = ["output"]
action = "block"
message = "the report does not follow its schema"
[rules.match.json_schema]
type = "object"
required = ["title", "rows"]
properties = { title = { type = "string" }, rows = { type = "array", items = { type = "integer" } } }
"#,
    );
    assert!(
        check(&engine, r#"{"title": "Q3", "rows": [1, 2, 3]}"#)
            .hits
            .is_empty()
    );
    assert!(
        check(&engine, "```json\n{\"title\": \"Q3\", \"rows\": []}\n```")
            .hits
            .is_empty()
    );
    let wrong = check(&engine, r#"{"title": "Q3", "rows": ["one"]}"#);
    let blocked = wrong
        .blocked
        .clone()
        .unwrap_or_else(|| panic!("not blocked: {wrong:?}"));
    assert!(
        blocked.details[0].starts_with("/rows/0"),
        "{:?}",
        blocked.details
    );
    let prose = check(&engine, "Here is your report: Q3 was good.");
    assert!(
        prose
            .blocked
            .is_some_and(|hit| hit.details[0].starts_with("not valid JSON"))
    );
}

#[test]
fn regexes_match_the_original_text() {
    let engine = rules(
        r#"
[[rules]]
id = "ticket"
action = "mask"
mask_with = "[ticket]"
match = { regex = '\bINC[0-9]{7}\b' }
"#,
    );
    let verdict = check(&engine, "See INC0012345 and INC0012346, not XINC0012347.");
    assert_eq!(
        verdict.masked.as_deref(),
        Some("See [ticket] and [ticket], not XINC0012347.")
    );
    assert_eq!(verdict.hits[0].matches, 2);
}

fn policies() -> Arc<Guardrails> {
    let config: GuardrailsConfig = toml::from_str(
        r#"
[[rules]]
id = "mask-mobile"
action = "mask"
match = { pii = ["cn_mobile"] }
[[rules]]
id = "no-guarantees"
action = "block"
match = { words = ["保本"] }
[[policies]]
id = "acme"
rules = ["mask-mobile"]
tenants = ["acme"]
[[policies]]
id = "finance-alias"
rules = ["no-guarantees"]
models = ["advisor"]
[[policies]]
id = "trial"
rules = ["no-guarantees", "mask-mobile"]
keys = ["key-trial"]
dry_run = true
"#,
    )
    .unwrap_or_else(|error| panic!("{error}"));
    Arc::new(Guardrails::compile(&config, 7).unwrap_or_else(|error| panic!("{error}")))
}

#[test]
fn policies_attach_to_tenants_keys_and_models() {
    let engine = policies();
    let text = "保本，电话13812345678";
    let for_subject = |tenant, key, model| {
        engine
            .select(&Subject {
                tenant_id: Some(tenant),
                key_id: Some(key),
                model: Some(model),
            })
            .map(|selection| selection.check(Stage::Output, text))
    };
    assert!(for_subject("other", "key-1", "chat").is_none());
    let acme = for_subject("acme", "key-1", "chat").unwrap_or_default();
    assert_eq!(acme.masked.as_deref(), Some("保本，电话***********"));
    assert!(acme.blocked.is_none());
    let advisor = for_subject("other", "key-1", "advisor").unwrap_or_default();
    assert!(advisor.blocked.is_some());
    // Both policies: the rules run in policy order, each once.
    let both = for_subject("acme", "key-1", "advisor").unwrap_or_default();
    assert_eq!(fired(&both), ["mask-mobile", "no-guarantees"]);
}

#[test]
fn dry_runs_report_without_acting() {
    let engine = policies();
    let trial = engine
        .select(&Subject {
            tenant_id: Some("other"),
            key_id: Some("key-trial"),
            model: Some("chat"),
        })
        .map(|selection| selection.check(Stage::Input, "保本，电话13812345678"))
        .unwrap_or_default();
    assert_eq!(fired(&trial), ["no-guarantees", "mask-mobile"]);
    assert!(trial.hits.iter().all(|hit| hit.dry_run));
    assert!(trial.blocked.is_none() && trial.masked.is_none());
    // A rule live in another policy of the same request is live.
    let live = engine
        .select(&Subject {
            tenant_id: Some("acme"),
            key_id: Some("key-trial"),
            model: Some("chat"),
        })
        .map(|selection| selection.check(Stage::Input, "电话13812345678"))
        .unwrap_or_default();
    assert_eq!(live.masked.as_deref(), Some("电话***********"));
}

#[test]
fn bad_rules_are_listed_with_their_paths() {
    let config: GuardrailsConfig = toml::from_str(
        r#"
[[rules]]
id = "a"
action = "block"
match = { regex = "(unclosed" }
[[rules]]
id = "a"
action = "review"
match = { words = ["x"], regex = "y" }
[[rules]]
id = "c"
action = "warn"
match = { all = [{ words_files = ["/nonexistent/dictionary.txt"] }] }
[[policies]]
id = "p"
rules = ["missing"]
"#,
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let Err(error) = Guardrails::compile(&config, 1) else {
        panic!("compiled");
    };
    let text = error.to_string();
    for expected in [
        "guardrails.rules[1].id: duplicate rule id `a`",
        "guardrails.rules[1].action: `review` holds answers",
        "guardrails.rules[1].match: sets words and regex",
        "guardrails.policies[0].rules[0]: no rule has id `missing`",
        "guardrails.rules[0].match.regex:",
        "guardrails.rules[2].match.all[0].words_files[0]: cannot read /nonexistent/dictionary.txt",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in {text}");
    }
}
