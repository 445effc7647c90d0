//! Metrics, the audit log, usage analytics and request ids, end to end: after a mixed run of
//! streams, retries, fallbacks, cache hits and refusals, the token counters equal the upstreams'
//! usage exactly, every metric the Grafana dashboard queries exists, and every request is in the
//! audit log once.

use std::collections::BTreeSet;
use std::time::Duration;

use landfall_testkit::{MockUpstream, Reply, Script};
use serde_json::{Value, json};

use crate::harness::{FAST_ROUTING, Landfall, provider, sse_data, start};

const ADMIN_KEY: &str = "admin-key-0123456789";

async fn mixed_setup(extra: &str) -> (Landfall, MockUpstream, MockUpstream) {
    // The primary fails now and then: a 503 (retried), a rate limit (fallback, and its breaker
    // opens for a second), then more 503s.
    let primary = MockUpstream::start(Script::new().chat([
        Reply::status(503, "busy"),
        Reply::Default,
        Reply::rate_limited(1),
        Reply::status(503, "busy"),
        Reply::status(503, "busy"),
        Reply::status(503, "busy"),
    ]))
    .await;
    let secondary = MockUpstream::start(Script::new()).await;
    let config = format!(
        "[auth]\nadmin_key = \"{ADMIN_KEY}\"\nallow_anonymous = true\n\
         [audit]\nflush_interval_ms = 20\n{extra}\n{}{}{FAST_ROUTING}\
         [models.chat]\ntargets = [{{ provider = \"primary\", model = \"a\", price = {{ input = 1.5, output = 6.0 }} }}, \
         {{ provider = \"secondary\", model = \"b\", priority = 1, price = {{ input = 0.5, output = 2.0 }} }}]\n",
        provider("primary", &primary.base_url(), ""),
        provider("secondary", &secondary.base_url(), ""),
    );
    (start(&config).await, primary, secondary)
}

/// Usage the client saw: `(input, output)` of a JSON response or a stream's usage chunk.
async fn chat_usage(landfall: &Landfall, index: usize, stream: bool) -> (u64, u64) {
    let words = "word ".repeat(index * 3 + 1);
    let mut body = json!({
        "model": "chat",
        "messages": [{"role": "user", "content": format!("question {index}: {words}")}],
        "max_tokens": 64,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let response = landfall
        .client
        .post(landfall.url("/v1/chat/completions"))
        .header("x-request-id", format!("mixed-{index}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "request {index}");
    assert_eq!(
        response.headers()["x-request-id"].to_str().unwrap(),
        format!("mixed-{index}")
    );
    let usage = if stream {
        let text = response.text().await.unwrap();
        let chunks: Vec<Value> = sse_data(&text)
            .iter()
            .filter(|data| *data != "[DONE]")
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        chunks
            .iter()
            .rev()
            .find_map(|chunk| chunk.get("usage").filter(|usage| !usage.is_null()).cloned())
            .expect("a usage chunk")
    } else {
        response.json::<Value>().await.unwrap()["usage"].clone()
    };
    (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    )
}

/// Sum of every sample of `name` whose labels contain all of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let series_name = series.split('{').next()?;
            (series_name == name && labels.iter().all(|label| series.contains(label)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

async fn metrics(landfall: &Landfall) -> String {
    let response = landfall
        .client
        .get(landfall.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    response.text().await.unwrap()
}

async fn admin_get(landfall: &Landfall, path: &str) -> reqwest::Response {
    landfall
        .client
        .get(landfall.url(path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
}

/// Waits until the audit log holds at least `count` request records.
async fn audit_records(landfall: &Landfall, count: usize) -> Vec<Value> {
    for _ in 0..200 {
        let response = admin_get(
            landfall,
            "/admin/v1/audit?kind=request&order=asc&limit=1000",
        )
        .await;
        let body: Value = response.json().await.unwrap();
        let data = body["data"].as_array().unwrap().clone();
        if data.len() >= count {
            return data;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the audit log never reached {count} request records");
}

#[tokio::test]
async fn token_counters_equal_the_upstreams_usage_after_streams_retries_and_fallbacks() {
    let (landfall, primary, secondary) = mixed_setup("").await;
    let mut expected = (0, 0);
    for index in 0..24 {
        let (input, output) = chat_usage(&landfall, index, index % 2 == 1).await;
        expected.0 += input;
        expected.1 += output;
    }
    assert!(primary.hits("/v1/chat/completions") > 0 && secondary.hits("/v1/chat/completions") > 0);

    let text = metrics(&landfall).await;
    let counted = (
        metric_sum(&text, "landfall_tokens_total", &["type=\"input\""]),
        metric_sum(&text, "landfall_tokens_total", &["type=\"output\""]),
    );
    assert_eq!(counted, (expected.0 as f64, expected.1 as f64), "{text}");
    let histogram = (
        metric_sum(
            &text,
            "gen_ai_client_token_usage_sum",
            &["gen_ai_token_type=\"input\""],
        ),
        metric_sum(
            &text,
            "gen_ai_client_token_usage_sum",
            &["gen_ai_token_type=\"output\""],
        ),
    );
    assert_eq!(histogram, counted);
    assert_eq!(
        metric_sum(
            &text,
            "landfall_requests_total",
            &["status_class=\"2xx\"", "route=\"/v1/chat/completions\""]
        ),
        24.0
    );
    assert!(
        metric_sum(&text, "landfall_retries_total", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        metric_sum(&text, "landfall_fallbacks_total", &[]) >= 1.0,
        "{text}"
    );
    assert!(metric_sum(&text, "landfall_cost_nanos_total", &[]) > 0.0);
    assert_eq!(
        metric_sum(
            &text,
            "gen_ai_server_time_to_first_token_seconds_count",
            &[]
        ),
        12.0
    );
    assert_eq!(metric_sum(&text, "landfall_requests_in_flight", &[]), 0.0);

    // The audit log has every request once, with the same tokens.
    let records = audit_records(&landfall, 24).await;
    assert_eq!(records.len(), 24);
    let ids: BTreeSet<&str> = records
        .iter()
        .map(|record| record["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 24);
    let audited: (u64, u64) = records.iter().fold((0, 0), |sum, record| {
        let usage = &record["record"]["usage"];
        (
            sum.0 + usage["input_tokens"].as_u64().unwrap(),
            sum.1 + usage["output_tokens"].as_u64().unwrap(),
        )
    });
    assert_eq!(audited, expected);
    let retried = records
        .iter()
        .find(|record| record["request_id"] == "mixed-0")
        .unwrap();
    assert_eq!(retried["record"]["attempts"], 2);
    assert_eq!(retried["record"]["target"], "primary/a");
    assert_eq!(retried["tenant_id"], "anonymous");
}

/// Names of the metrics the dashboard's queries use.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/landfall.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut expressions = Vec::new();
    collect_expressions(&dashboard, &mut expressions);
    assert!(expressions.len() > 20, "the dashboard has queries");
    let mut names = BTreeSet::new();
    for expression in expressions {
        let bytes = expression.as_bytes();
        let mut start = 0;
        while let Some(found) = expression[start..]
            .find("landfall_")
            .into_iter()
            .chain(expression[start..].find("gen_ai_"))
            .min()
        {
            let begin = start + found;
            let end = expression[begin..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expression.len(), |length| begin + length);
            let preceded_by_identifier =
                begin > 0 && (bytes[begin - 1].is_ascii_alphanumeric() || bytes[begin - 1] == b'_');
            // `name=` / `name!=` / `name=~` is a label matcher, not a metric.
            let is_label = expression[end..].trim_start().starts_with(['=', '!']);
            if !preceded_by_identifier && !is_label {
                names.insert(expression[begin..end].to_owned());
            }
            start = end;
        }
    }
    names
}

fn collect_expressions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query", Value::String(text)) => out.push(text.clone()),
                    _ => collect_expressions(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_expressions(item, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let (landfall, _primary, _secondary) =
        mixed_setup("[cache]\nenabled = true\nmode = \"opt_in\"\n").await;
    for index in 0..6 {
        chat_usage(&landfall, index, index % 2 == 0).await;
    }
    // A cache miss then a hit, and two refusals.
    for _ in 0..2 {
        let response = landfall
            .client
            .post(landfall.url("/v1/chat/completions"))
            .header("x-landfall-cache", "use")
            .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "cached"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let refused = landfall
        .client
        .post(landfall.url("/v1/chat/completions"))
        .bearer_auth("lf-unknown-key")
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    audit_records(&landfall, 8).await;

    let text = metrics(&landfall).await;
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let missing: Vec<String> = dashboard_metrics()
        .into_iter()
        .filter(|name| {
            !exported.contains(name.as_str())
                && !["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| exported.contains(format!("{name}{suffix}").as_str()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics lacks: {missing:?}\n{text}"
    );
    assert_eq!(
        metric_sum(
            &text,
            "landfall_rejections_total",
            &["reason=\"unauthorized\""]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(&text, "landfall_cache_requests_total", &["result=\"hit\""]),
        1.0
    );
}

#[tokio::test]
async fn usage_aggregates_and_exports_from_the_audit_log() {
    let (landfall, _primary, _secondary) = mixed_setup("").await;
    let mut expected = (0, 0);
    for index in 0..10 {
        let (input, output) = chat_usage(&landfall, index, index % 3 == 0).await;
        expected.0 += input;
        expected.1 += output;
    }
    audit_records(&landfall, 10).await;

    let response = admin_get(
        &landfall,
        "/admin/v1/usage?group_by=tenant,model&bucket=day",
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{body}");
    let row = &rows[0];
    assert_eq!(row["tenant_id"], "anonymous");
    assert_eq!(row["model"], "chat");
    assert_eq!(row["requests"], 10);
    assert_eq!(row["errors"], 0);
    assert_eq!(row["input_tokens"].as_u64().unwrap(), expected.0);
    assert_eq!(row["output_tokens"].as_u64().unwrap(), expected.1);
    assert!(row["cost_nanos"].as_u64().unwrap() > 0);
    assert!(row["p95_latency_ms"].as_f64().unwrap() > 0.0);

    let csv = admin_get(&landfall, "/admin/v1/usage?format=csv").await;
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().await.unwrap();
    assert!(
        csv.starts_with("start,tenant_id,key_id,model,requests"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 2, "{csv}");

    // Export pages through everything; the admin reads themselves are audited too.
    let export = admin_get(&landfall, "/admin/v1/audit?format=jsonl&order=asc").await;
    let lines: Vec<Value> = export
        .text()
        .await
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(lines.len() >= 10);
    let seqs: Vec<u64> = lines
        .iter()
        .map(|line| line["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let admin = admin_get(&landfall, "/admin/v1/audit?kind=admin&limit=1").await;
    let admin: Value = admin.json().await.unwrap();
    assert_eq!(admin["data"][0]["route"], "GET /admin/v1/audit");
    assert_eq!(admin["data"][0]["record"]["path"], "/admin/v1/audit");
    assert_eq!(admin["data"][0]["key_id"], "admin");

    // Bad parameters are named.
    let bad = admin_get(&landfall, "/admin/v1/usage?bucket=week").await;
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["error"]["param"], "bucket");
    let bad = admin_get(&landfall, "/admin/v1/audit?status=6xx").await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn audit_pages_filter_and_follow_the_cursor() {
    let (landfall, _primary, _secondary) = mixed_setup("").await;
    for index in 0..7 {
        chat_usage(&landfall, index, false).await;
    }
    let missing = landfall
        .client
        .post(landfall.url("/v1/chat/completions"))
        .json(&json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let generated = missing.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(generated.starts_with("req_"));
    audit_records(&landfall, 8).await;

    let mut seen = Vec::new();
    let mut cursor: Option<u64> = None;
    loop {
        let path = match cursor {
            Some(cursor) => format!("/admin/v1/audit?kind=request&limit=3&cursor={cursor}"),
            None => "/admin/v1/audit?kind=request&limit=3".to_owned(),
        };
        let page: Value = admin_get(&landfall, &path).await.json().await.unwrap();
        for record in page["data"].as_array().unwrap() {
            seen.push(record["seq"].as_u64().unwrap());
        }
        match page["next_cursor"].as_u64() {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    assert!(
        seen.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first: {seen:?}"
    );

    let errors: Value = admin_get(&landfall, "/admin/v1/audit?status=4xx")
        .await
        .json()
        .await
        .unwrap();
    let errors = errors["data"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["request_id"], generated.as_str(), "{errors:?}");
    assert_eq!(errors[0]["record"]["error"], "model_not_found");
}

#[tokio::test]
async fn kept_bodies_are_redacted_and_abandoned_requests_are_audited() {
    let upstream = MockUpstream::start(Script::new().chat([
        Reply::chat_text("write to li.wei@example.com"),
        Reply::chat_text("late").delayed(3_000),
    ]))
    .await;
    let config = format!(
        "[auth]\nadmin_key = \"{ADMIN_KEY}\"\nallow_anonymous = true\n\
         [audit]\nflush_interval_ms = 20\n[audit.bodies]\ntenants = [\"*\"]\nredact = [\"Project \\\\w+\"]\n{}\
         [models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), ""),
    );
    let landfall = start(&config).await;
    let response = landfall
        .chat(json!({"model": "chat", "messages": [{"role": "user",
            "content": "Project Falcon: card 4111111111111111, call 13800138000"}]}))
        .await;
    assert_eq!(response.status(), 200);

    // The client gives up on the second request long before the upstream answers.
    let abandoned = landfall
        .client
        .post(landfall.url("/v1/chat/completions"))
        .header("x-request-id", "gave-up")
        .timeout(Duration::from_millis(300))
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "slow"}]}))
        .send()
        .await;
    assert!(abandoned.is_err());

    let records = audit_records(&landfall, 2).await;
    let kept = records[0]["record"].to_string();
    for secret in [
        "Falcon",
        "4111111111111111",
        "13800138000",
        "li.wei@example.com",
    ] {
        assert!(!kept.contains(secret), "{secret} kept in {kept}");
    }
    assert!(kept.contains("[REDACTED]"), "{kept}");
    assert_eq!(records[0]["record"]["request_body"]["model"], "chat");
    assert!(
        records[0]["record"]["response_body"]["text"]
            .as_str()
            .unwrap()
            .contains("write to [REDACTED]")
    );
    let gave_up = &records[1];
    assert_eq!(gave_up["request_id"], "gave-up");
    assert_eq!(gave_up["status"], 499);
    let text = metrics(&landfall).await;
    assert_eq!(metric_sum(&text, "landfall_requests_in_flight", &[]), 0.0);
}

#[tokio::test]
async fn metrics_can_require_the_admin_key() {
    let (landfall, _primary, _secondary) = mixed_setup("[metrics]\naccess = \"admin_key\"\n").await;
    let open = landfall
        .client
        .get(landfall.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 401);
    let authorized = admin_get(&landfall, "/metrics").await;
    assert_eq!(authorized.status(), 200);
    let text = authorized.text().await.unwrap();
    assert!(
        text.contains("# TYPE landfall_audit_queue_depth gauge"),
        "{text}"
    );
}
