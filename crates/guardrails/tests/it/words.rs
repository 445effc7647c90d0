//! Sensitive-word dictionaries: normalization (case, width, traditional characters, inserted
//! separators), word boundaries in spaced scripts, and dictionary files.

use crate::{check, fired, rules};

const RULES: &str = r#"
[[rules]]
id = "banned"
action = "mask"
match = { words = ["保本", "稳赚不赔", "内幕消息", "fuck", "guaranteed return", "ass"] }
"#;

#[test]
fn terms_are_found_through_evasions() {
    let engine = rules(RULES);
    let cases = [
        ("这个产品保本", "这个产品**"),
        ("保 本收益", "***收益"),
        ("保·本收益", "***收益"),
        ("保\u{200B}本收益", "***收益"),
        ("穩賺不賠的買賣", "****的買賣"),
        ("稳 赚 不 赔", "*******"),
        ("内幕、消息", "*****"),
        ("what the FUCK", "what the ****"),
        ("what the Ｆｕｃｋ", "what the ****"),
        ("what the f.u.c.k", "what the *******"),
        ("a Guaranteed  Return!", "a ******************!"),
        ("a guaranteed-return fund", "a ***************** fund"),
        ("kick ass", "kick ***"),
    ];
    for (text, expected) in cases {
        let verdict = check(&engine, text);
        assert_eq!(fired(&verdict), ["banned"], "{text}");
        assert_eq!(verdict.masked.as_deref(), Some(expected), "{text}");
    }
}

#[test]
fn words_inside_other_words_and_wide_gaps_do_not_match() {
    let engine = rules(RULES);
    for text in [
        "first class passenger",
        "this hit the news",
        "an assessment",
        "保    本",
        "本保",
        "guaranteed returns",
    ] {
        let verdict = check(&engine, text);
        assert!(verdict.hits.is_empty(), "{text}: {:?}", verdict.hits);
    }
}

#[test]
fn dictionaries_load_from_files() {
    let dir = std::env::temp_dir().join(format!("landfall-words-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("terms.txt");
    let terms: String = (0..20_000)
        .map(|index| format!("禁词{index}号\n"))
        .collect();
    let write = std::fs::write(&path, format!("# a comment\n\n{terms}最后一个\n"));
    assert!(write.is_ok(), "{write:?}");
    let engine = rules(&format!(
        r#"
[[rules]]
id = "dictionary"
action = "block"
message = "forbidden term"
match = {{ words_files = ["{}"] }}
"#,
        path.display()
    ));
    let verdict = check(&engine, "开头 禁词19999号 结尾");
    assert_eq!(
        verdict.blocked.map(|hit| hit.message),
        Some("forbidden term".to_owned())
    );
    assert!(check(&engine, "最后 一个").blocked.is_some());
    assert!(check(&engine, "a comment").hits.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
