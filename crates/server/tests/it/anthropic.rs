//! OpenAI-shaped requests served by an Anthropic upstream, through the whole server.

use landfall_testkit::{MockUpstream, Script};
use serde_json::{Value, json};

use crate::harness::{header, sse_data, start};

async fn landfall_over_anthropic(upstream: &MockUpstream) -> crate::harness::Landfall {
    let config = format!(
        "[providers.claude]\ntype = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"sk-ant\"\n\
         [models.claude]\ntargets = [{{ provider = \"claude\", model = \"claude-x\" }}]\n",
        upstream.base_url()
    );
    start(&config).await
}

#[tokio::test]
async fn chat_and_tools_round_trip_through_the_messages_api() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = landfall_over_anthropic(&upstream).await;
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let response = landfall
        .chat(json!({"model": "claude", "tools": tools,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather"}]}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-landfall-target"), "claude/claude-x");
    let body: Value = response.json().await.unwrap();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(call["function"]["name"], "lookup");
    let received = &upstream.requests()[0];
    assert_eq!(received.path, "/v1/messages");
    assert_eq!(received.header("x-api-key"), Some("sk-ant"));
    assert_eq!(received.body["system"], "be brief");

    let response = landfall
        .chat(json!({"model": "claude", "tools": tools, "messages": [
            {"role": "user", "content": "weather"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ]}))
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "tool said: sunny");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn streams_are_translated_to_chunks_with_usage() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = landfall_over_anthropic(&upstream).await;
    let response = landfall
        .chat(
            json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hi there"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "echo: hi there");
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(usage["completion_tokens"], 3);
}
