//! Streams split anywhere decide as the whole text does: the same rules fire with the same
//! counts, the released text is the whole text masked, and a block stops the stream before
//! any of the blocked match is sent.

use proptest::prelude::*;

use landfall_guardrails::{Released, Stage};

use crate::{rules, selection};

const RULES: &str = r#"
[[rules]]
id = "mask-pii"
stages = ["output"]
action = "mask"
match = { pii = ["cn_mobile", "cn_resident_id", "bank_card", "email"] }
[[rules]]
id = "mask-words"
stages = ["output"]
action = "mask"
mask_with = "[x]"
match = { words = ["内幕消息", "fuck", "保本"] }
[[rules]]
id = "warn-ticket"
stages = ["output"]
action = "warn"
match = { regex = 'INC[0-9]{4}' }
[[rules]]
id = "warn-no-number"
stages = ["output"]
action = "warn"
match = { all = [{ words = ["剂量", "dose"] }, { not = { regex = '[0-9]+ ?mg' } }] }
[[rules]]
id = "block-both"
stages = ["output"]
action = "block"
match = { all = [{ words = ["稳赚"] }, { words = ["不赔"] }] }
"#;

const PIECES: &[&str] = &[
    "您好，",
    "hello ",
    "world. ",
    "电话",
    "13812345678",
    "138-1234-5678",
    "卡号",
    "4111 1111 1111 1111",
    "11010519491231002X",
    "zhang.san@example.com",
    "内幕消息",
    "内 幕 消 息",
    "FUCK",
    "f.u.c.k",
    "保本",
    "保·本",
    "INC1234",
    "剂量",
    "dose",
    " 5 mg",
    "稳赚",
    "不赔",
    "，",
    "。",
    " ",
    "\n",
    "1",
    "23",
    "@",
    "x",
    "é",
    "😀",
    "第",
    "条",
];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|pieces| pieces.concat())
}

/// Splits `text` at the given (scaled) points, each moved back to a character boundary.
fn split(text: &str, points: &[usize]) -> Vec<String> {
    let mut cuts: Vec<usize> = points
        .iter()
        .map(|point| {
            let mut cut = point % (text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            cut
        })
        .collect();
    cuts.push(0);
    cuts.push(text.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|pair| text[pair[0]..pair[1]].to_owned())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn any_split_decides_as_the_whole_text(text in text(), points in prop::collection::vec(any::<usize>(), 0..12)) {
        let engine = rules(RULES);
        let selection = selection(&engine);
        let whole = selection.check(Stage::Output, &text);
        let whole_text = whole.masked.clone().unwrap_or_else(|| text.clone());

        let mut stream = selection.stream();
        let mut sent = String::new();
        let mut blocked = None;
        for chunk in split(&text, &points) {
            let Released { text: released, blocked: block } = stream.push(&chunk).unwrap_or_default();
            sent.push_str(&released);
            if block.is_some() {
                blocked = block;
                break;
            }
        }
        if blocked.is_none() {
            let Released { text: released, blocked: block } = stream.finish();
            sent.push_str(&released);
            blocked = block;
        }

        prop_assert_eq!(blocked.is_some(), whole.blocked.is_some());
        if blocked.is_some() {
            // What was sent is a prefix of the masked text, without the match that completed
            // the condition.
            prop_assert!(whole_text.starts_with(&sent), "sent {:?} of {:?}", sent, whole_text);
            prop_assert!(!(sent.contains("稳赚") && sent.contains("不赔")), "sent {:?}", sent);
        } else {
            prop_assert_eq!(&sent, &whole_text);
            prop_assert_eq!(stream.hits(), whole.hits);
        }
    }

    #[test]
    fn a_held_stream_releases_only_at_the_end(text in text(), points in prop::collection::vec(any::<usize>(), 0..8)) {
        let engine = rules(r#"
[[rules]]
id = "review-dose"
stages = ["output"]
action = "review"
match = { words = ["剂量"] }
[[rules]]
id = "mask-mobile"
stages = ["output"]
action = "mask"
match = { pii = ["cn_mobile"] }
"#);
        let selection = selection(&engine);
        let whole = selection.check(Stage::Output, &text);
        let mut stream = selection.stream();
        prop_assert!(stream.holds_everything());
        for chunk in split(&text, &points) {
            prop_assert_eq!(stream.push(&chunk).unwrap_or_default(), Released::default());
        }
        let end = stream.finish();
        prop_assert_eq!(stream.review(), whole.review);
        if whole.review {
            prop_assert_eq!(end.text, "");
            prop_assert_eq!(stream.masked_text(), whole.masked.unwrap_or_else(|| text.clone()));
        } else {
            prop_assert_eq!(end.text, whole.masked.unwrap_or_else(|| text.clone()));
        }
    }
}

#[test]
fn a_term_split_across_chunks_is_masked_before_it_is_sent() {
    let engine = rules(RULES);
    let mut stream = selection(&engine).stream();
    let mut sent = String::new();
    for chunk in [
        "这是",
        "内",
        "幕",
        "消",
        "息，电话138",
        "1234",
        "5678",
        "，谢谢。",
    ] {
        let released = stream.push(chunk).unwrap_or_default();
        assert!(
            !released.text.contains('内') && !released.text.contains("138"),
            "{released:?}"
        );
        sent.push_str(&released.text);
    }
    sent.push_str(&stream.finish().text);
    assert_eq!(sent, "这是[x]，电话***********，谢谢。");
}

#[test]
fn text_is_released_while_the_answer_streams() {
    let engine = rules(RULES);
    let mut stream = selection(&engine).stream();
    let long = "这是一段很长的正常回答，没有任何需要处理的内容。".repeat(20);
    let mut released_early = 0;
    for piece in long.chars().collect::<Vec<_>>().chunks(4) {
        let chunk: String = piece.iter().collect();
        released_early += stream.push(&chunk).unwrap_or_default().text.len();
    }
    let rest = stream.finish().text.len();
    assert_eq!(released_early + rest, long.len());
    assert!(
        released_early > long.len() / 2,
        "only {released_early} bytes released before the end"
    );
}

#[test]
fn an_answer_past_the_limit_ends_the_stream() {
    let mut config: landfall_guardrails::GuardrailsConfig =
        toml::from_str(RULES).unwrap_or_else(|error| panic!("{error}"));
    config.max_text_bytes = 100;
    let ids = config.rules.iter().map(|rule| rule.id.clone()).collect();
    config
        .policies
        .push(crate::landfall_guardrails_test_policy(ids));
    let engine = std::sync::Arc::new(
        landfall_guardrails::Guardrails::compile(&config, 1)
            .unwrap_or_else(|error| panic!("{error}")),
    );
    let mut stream = selection(&engine).stream();
    assert!(stream.push(&"a".repeat(90)).is_ok());
    assert!(stream.push(&"a".repeat(20)).is_err());
}
