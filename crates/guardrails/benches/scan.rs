//! Scanning throughput of a 50k-term dictionary plus the PII detectors over mixed Chinese and
//! English text (whole texts, one core), and the time a streamed chunk spends in the scanner.
//!
//! `cargo bench -p landfall-guardrails --bench scan`; figures in docs/benchmarks.md.
#![expect(
    clippy::panic,
    reason = "a benchmark that cannot set up has nothing to measure"
)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use landfall_guardrails::{
    Guardrails, GuardrailsConfig, MatcherSpec, PiiKind, PolicySpec, RuleSpec, Stage, Subject,
};

/// A small deterministic generator, so every run scans the same text.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Characters of the text and of the dictionary's Chinese terms: 3,500 Han characters, the
/// size of the list of commonly used characters, so terms are made of what text is made of.
const HAN_CHARS: u32 = 3_500;

const WORDS: &[&str] = &[
    "the",
    "pump",
    "manual",
    "pressure",
    "valve",
    "install",
    "warranty",
    "customer",
    "service",
    "order",
    "delivery",
    "policy",
    "medical",
    "insurance",
    "claim",
    "report",
    "quarterly",
    "revenue",
    "model",
    "system",
    "please",
    "contact",
    "support",
    "ticket",
    "account",
    "refund",
    "product",
    "version",
];

/// A character of running text: ranks drawn by Zipf's law (weight 1/rank), as character
/// frequencies in Chinese text are (the 1,000 most frequent cover about 90% of it).
fn text_han(random: &mut Lcg, zipf: &[f64]) -> char {
    let total = zipf.last().copied().unwrap_or(1.0);
    let point = (random.next() as f64 / f64::from(1u32 << 31)) * total;
    let rank = zipf.partition_point(|cumulative| *cumulative < point);
    han_at(rank)
}

/// A character of a dictionary term: any of the 3,500, equally likely (sensitive terms are
/// mostly not common words).
fn term_han(random: &mut Lcg) -> char {
    han_at(random.below(HAN_CHARS as usize))
}

fn han_at(rank: usize) -> char {
    char::from_u32(0x4E00 + rank.min(HAN_CHARS as usize - 1) as u32).unwrap_or('中')
}

fn zipf_table() -> Vec<f64> {
    let mut total = 0.0;
    (1..=HAN_CHARS)
        .map(|rank| {
            total += 1.0 / f64::from(rank);
            total
        })
        .collect()
}

/// 50,000 terms: Chinese words of 2–4 characters and English phrases.
fn dictionary(random: &mut Lcg) -> Vec<String> {
    (0..50_000)
        .map(|index| {
            if index % 5 == 0 {
                // English terms: invented words of 4–10 letters, one or two of them. The text's
                // letters walk their trie three or four levels deep, as real text does with a
                // real list (profanity, drug names), without the terms being everyday words.
                let word = |random: &mut Lcg| -> String {
                    (0..4 + random.below(7))
                        .map(|_| char::from(b'a' + random.below(26) as u8))
                        .collect()
                };
                let first = word(random);
                if random.below(2) == 0 {
                    first
                } else {
                    format!("{first} {}", word(random))
                }
            } else {
                (0..2 + random.below(3)).map(|_| term_han(random)).collect()
            }
        })
        .collect()
}

/// About `bytes` of mixed text: Chinese sentences, English sentences, numbers, a phone number
/// or e-mail now and then.
fn corpus(random: &mut Lcg, bytes: usize) -> String {
    let zipf = zipf_table();
    let mut text = String::with_capacity(bytes + 256);
    while text.len() < bytes {
        match random.below(10) {
            0..=4 => {
                for _ in 0..8 + random.below(20) {
                    text.push(text_han(random, &zipf));
                }
                text.push('。');
            }
            5..=8 => {
                for _ in 0..6 + random.below(10) {
                    text.push_str(WORDS[random.below(WORDS.len())]);
                    text.push(' ');
                }
                text.push_str(&format!("{} units. ", random.below(10_000)));
            }
            _ => text.push_str(if random.below(2) == 0 {
                "请致电13812345678或发邮件到support@example.com。"
            } else {
                "Order 2024-11-08, total 1,234.50 CNY. "
            }),
        }
    }
    text
}

fn engine(terms: Vec<String>, pii: bool) -> Arc<Guardrails> {
    let terms_empty = terms.is_empty();
    let terms = if terms_empty {
        vec!["unused".to_owned()]
    } else {
        terms
    };
    let rule = |id: &str, action, matcher| RuleSpec {
        id: id.to_owned(),
        description: String::new(),
        stages: vec![Stage::Input, Stage::Output],
        action,
        severity: Default::default(),
        message: String::new(),
        mask_with: None,
        matcher,
    };
    let config = GuardrailsConfig {
        rules: vec![
            rule(
                "dictionary",
                landfall_guardrails::Action::Warn,
                MatcherSpec {
                    words: terms,
                    ..MatcherSpec::default()
                },
            ),
            rule(
                "pii",
                landfall_guardrails::Action::Mask,
                MatcherSpec {
                    pii: PiiKind::ALL.to_vec(),
                    ..MatcherSpec::default()
                },
            ),
        ],
        policies: vec![PolicySpec {
            id: "all".to_owned(),
            rules: [(!terms_empty).then_some("dictionary"), pii.then_some("pii")]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect(),
            tenants: Vec::new(),
            keys: Vec::new(),
            models: Vec::new(),
            everyone: true,
            dry_run: false,
        }],
        ..GuardrailsConfig::default()
    };
    match Guardrails::compile(&config, 1) {
        Ok(engine) => Arc::new(engine),
        Err(error) => panic!("{error}"),
    }
}

fn scanning(criterion: &mut Criterion) {
    let mut random = Lcg(42);
    let terms = dictionary(&mut random);
    let text = corpus(&mut random, 1 << 20);
    let select = |engine: &Arc<Guardrails>| match engine.select(&Subject::default()) {
        Some(selection) => selection,
        None => panic!("no rules selected"),
    };
    let dictionary_only = select(&engine(terms.clone(), false));
    let pii_only = select(&engine(Vec::new(), true));
    let selection = select(&engine(terms, true));

    report_density(&selection.check(Stage::Output, &text), text.len());
    let mut group = criterion.benchmark_group("scan");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(20);
    group.bench_function("dictionary_50k_and_pii_1MiB", |bench| {
        bench.iter(|| black_box(selection.check(Stage::Output, black_box(&text))));
    });
    group.bench_function("dictionary_50k_1MiB", |bench| {
        bench.iter(|| black_box(dictionary_only.check(Stage::Output, black_box(&text))));
    });
    group.bench_function("pii_1MiB", |bench| {
        bench.iter(|| black_box(pii_only.check(Stage::Output, black_box(&text))));
    });
    group.finish();

    // A 4 KiB answer streamed in 16-byte chunks (about 5 Chinese characters, a token or two):
    // the time per chunk, scanner set-up and end included.
    let answer: String = text
        .chars()
        .scan(0, |bytes, character| {
            *bytes += character.len_utf8();
            (*bytes <= 4096).then_some(character)
        })
        .collect();
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < answer.len() {
        let mut end = (start + 16).min(answer.len());
        while !answer.is_char_boundary(end) {
            end += 1;
        }
        chunks.push(&answer[start..end]);
        start = end;
    }
    let mut group = criterion.benchmark_group("stream");
    group.throughput(Throughput::Elements(chunks.len() as u64));
    group.bench_function("4KiB_answer_in_16B_chunks", |bench| {
        bench.iter(|| {
            let mut stream = selection.stream();
            for chunk in &chunks {
                black_box(stream.push(chunk).ok());
            }
            black_box(stream.finish())
        });
    });
    group.finish();
}

#[expect(clippy::print_stderr, reason = "the benchmark states what it scanned")]
fn report_density(verdict: &landfall_guardrails::Verdict, bytes: usize) {
    for hit in &verdict.hits {
        eprintln!("{}: {} matches in {bytes} bytes", hit.rule, hit.matches);
    }
}

criterion_group!(benches, scanning);
criterion_main!(benches);
