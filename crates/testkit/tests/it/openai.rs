//! Default OpenAI behaviours.

use landfall_testkit::{MockUpstream, Script};
use serde_json::{Value, json};

use crate::client::{base64_decode, post, send};

const CHAT: &str = "/v1/chat/completions";

#[tokio::test]
async fn chat_default_echoes_the_last_user_message() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new()).await;
    let request = json!({
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"},
        ],
    });
    let response = post(upstream.addr(), CHAT, &request).await?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json()?;
    assert_eq!(body["id"], "chatcmpl-mock-1");
    assert_eq!(body["object"], "chat.completion");
    assert!(
        body["created"]
            .as_u64()
            .is_some_and(|created| created > 1_600_000_000)
    );
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["system_fingerprint"], "fp_mock");
    assert_eq!(
        body["choices"],
        json!([{
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hello there", "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }])
    );
    // (2 + 3) + (2 + 3) prompt words, "echo: hello there" is 3 words.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13})
    );
    assert_eq!(upstream.hits(CHAT), 1);
    let recorded = upstream.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].method, "POST");
    assert_eq!(recorded[0].path, CHAT);
    assert_eq!(recorded[0].body, request);
    assert_eq!(recorded[0].header("Authorization"), Some("Bearer sk-test"));
    Ok(())
}

#[tokio::test]
async fn chat_honours_n_parts_and_json_response_format() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new()).await;
    let request = json!({
        "model": "m",
        "n": 2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "one"},
            {"type": "text", "text": "two \"quoted\""},
        ]}],
    });
    let body = post(upstream.addr(), CHAT, &request).await?.json()?;
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[1]["index"], 1);
    let content = choices[0]["message"]["content"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(content)?;
    assert_eq!(parsed, json!({"echo": "one two \"quoted\""}));
    Ok(())
}

fn stream_request(include_usage: bool) -> Value {
    let mut request = json!({
        "model": "gpt-test",
        "stream": true,
        "messages": [{"role": "user", "content": "hi you"}],
    });
    if include_usage {
        request["stream_options"] = json!({"include_usage": true});
    }
    request
}

#[tokio::test]
async fn chat_stream_without_usage_is_the_exact_chunk_sequence() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new()).await;
    let response = post(upstream.addr(), CHAT, &stream_request(false)).await?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert!(response.complete);
    let data = response.data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|chunk| serde_json::from_str(chunk))
        .collect::<Result<_, _>>()?;
    let deltas: Vec<(Value, Value)> = chunks
        .iter()
        .map(|chunk| {
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["id"], "chatcmpl-mock-1");
            assert_eq!(chunk["model"], "gpt-test");
            assert!(
                chunk.get("usage").is_none(),
                "no usage key without include_usage"
            );
            let choice = &chunk["choices"][0];
            (choice["delta"].clone(), choice["finish_reason"].clone())
        })
        .collect();
    assert_eq!(
        deltas,
        vec![
            (json!({"role": "assistant", "content": ""}), Value::Null),
            (json!({"content": "echo: "}), Value::Null),
            (json!({"content": "hi "}), Value::Null),
            (json!({"content": "you"}), Value::Null),
            (json!({}), json!("stop")),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn chat_stream_with_usage_ends_with_a_usage_chunk() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new()).await;
    let response = post(upstream.addr(), CHAT, &stream_request(true)).await?;
    let data = response.data();
    assert_eq!(data.len(), 7, "role, 3 words, finish, usage, [DONE]");
    assert_eq!(data[6], "[DONE]");
    for chunk in &data[..5] {
        let chunk: Value = serde_json::from_str(chunk)?;
        assert_eq!(chunk["usage"], Value::Null);
        assert!(
            chunk.get("usage").is_some(),
            "usage: null on every earlier chunk"
        );
    }
    let last: Value = serde_json::from_str(&data[5])?;
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
    );
    Ok(())
}

fn tool_request(messages: Value, stream: bool) -> Value {
    json!({
        "model": "gpt-test",
        "stream": stream,
        "tools": [{"type": "function", "function": {"name": "search", "parameters": {}}}],
        "messages": messages,
    })
}

#[tokio::test]
async fn chat_tool_call_round_trip() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new()).await;
    let user = json!([{"role": "user", "content": "rust gateways"}]);
    let body = post(upstream.addr(), CHAT, &tool_request(user.clone(), false))
        .await?
        .json()?;
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{
            "id": "call_mock_1",
            "type": "function",
            "function": {"name": "search", "arguments": "{\"query\":\"rust gateways\"}"},
        }])
    );

    let follow_up = json!([
        {"role": "user", "content": "rust gateways"},
        {"role": "assistant", "content": null, "tool_calls": choice["message"]["tool_calls"]},
        {"role": "tool", "tool_call_id": "call_mock_1", "content": "three results"},
    ]);
    let body = post(upstream.addr(), CHAT, &tool_request(follow_up, false))
        .await?
        .json()?;
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tool said: three results"
    );

    let streamed = post(upstream.addr(), CHAT, &tool_request(user, true)).await?;
    let chunks: Vec<Value> = streamed
        .data()
        .iter()
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data))
        .collect::<Result<_, _>>()?;
    let opening = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(opening["id"], "call_mock_1");
    assert_eq!(opening["function"]["name"], "search");
    assert_eq!(opening["function"]["arguments"], "");
    let arguments: String = chunks[1..]
        .iter()
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        })
        .collect();
    assert_eq!(arguments, "{\"query\":\"rust gateways\"}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    Ok(())
}

#[tokio::test]
async fn embeddings_as_floats_and_base64_agree() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new()).await;
    let floats = post(
        upstream.addr(),
        "/v1/embeddings",
        &json!({"model": "emb", "input": ["alpha beta", "gamma"]}),
    )
    .await?
    .json()?;
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["model"], "emb");
    assert_eq!(
        floats["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    let data = floats["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    let vector: Vec<f32> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(vector.len(), 8);
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");

    let encoded = post(
        upstream.addr(),
        "/v1/embeddings",
        &json!({"model": "emb", "input": "alpha beta", "encoding_format": "base64"}),
    )
    .await?
    .json()?;
    let bytes = base64_decode(encoded["data"][0]["embedding"].as_str().unwrap())?;
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, vector);

    let sized = post(
        upstream.addr(),
        "/v1/embeddings",
        &json!({"model": "emb", "input": [[1, 2, 3]], "dimensions": 3}),
    )
    .await?
    .json()?;
    assert_eq!(sized["data"][0]["embedding"].as_array().unwrap().len(), 3);
    assert_eq!(sized["usage"]["prompt_tokens"], 3);
    Ok(())
}

#[tokio::test]
async fn models_list_and_unknown_routes() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new()).await;
    let models = send(upstream.addr(), "GET", "/v1/models", None)
        .await?
        .json()?;
    assert_eq!(models["data"][0]["id"], "mock-model");
    let missing = send(upstream.addr(), "GET", "/v1/nothing", None).await?;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()?["error"]["type"], "invalid_request_error");
    assert_eq!(upstream.hits("/v1/nothing"), 1);
    let not_json = crate::client::send(upstream.addr(), "POST", CHAT, Some(&json!("x"))).await?;
    assert_eq!(
        not_json.status, 200,
        "a JSON string is JSON; the echo is empty"
    );
    Ok(())
}
