//! Default Anthropic Messages behaviour.

use landfall_testkit::{MockUpstream, Script};
use serde_json::{Value, json};

use crate::client::post;

const MESSAGES: &str = "/v1/messages";

#[tokio::test]
async fn messages_default_and_tool_use() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new()).await;
    let body = post(
        upstream.addr(),
        MESSAGES,
        &json!({
            "model": "claude-test",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}],
        }),
    )
    .await?
    .json()?;
    assert_eq!(body["id"], "msg_mock_1");
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-test");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "echo: hi there"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 5, "output_tokens": 3})
    );

    let tools = json!([{"name": "lookup", "input_schema": {"type": "object"}}]);
    let body = post(
        upstream.addr(),
        MESSAGES,
        &json!({"model": "c", "tools": tools, "messages": [{"role": "user", "content": "weather"}]}),
    )
    .await?
    .json()?;
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["content"],
        json!([{"type": "tool_use", "id": "toolu_mock_1", "name": "lookup", "input": {"query": "weather"}}])
    );

    let body = post(
        upstream.addr(),
        MESSAGES,
        &json!({"model": "c", "tools": tools, "messages": [
            {"role": "user", "content": "weather"},
            {"role": "assistant", "content": body["content"]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_mock_1", "content": "sunny"},
            ]},
        ]}),
    )
    .await?
    .json()?;
    assert_eq!(body["content"][0]["text"], "tool said: sunny");
    assert_eq!(body["stop_reason"], "end_turn");
    Ok(())
}

fn event_names(events: &[String]) -> Vec<String> {
    events
        .iter()
        .map(|event| {
            event
                .lines()
                .find_map(|line| line.strip_prefix("event: "))
                .unwrap_or("<none>")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn messages_stream_emits_anthropic_events() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new()).await;
    let response = post(
        upstream.addr(),
        MESSAGES,
        &json!({"model": "c", "stream": true, "messages": [{"role": "user", "content": "a b"}]}),
    )
    .await?;
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let events = response.events();
    assert_eq!(
        event_names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let data: Vec<Value> = response
        .data()
        .iter()
        .map(|data| serde_json::from_str(data))
        .collect::<Result<_, _>>()?;
    for (name, event) in event_names(&events).iter().zip(&data) {
        assert_eq!(
            &event["type"],
            name.as_str(),
            "data type matches the event name"
        );
    }
    let text: String = data
        .iter()
        .filter_map(|event| event["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "echo: a b");
    assert_eq!(data[7]["delta"]["stop_reason"], "end_turn");
    assert_eq!(data[7]["usage"]["output_tokens"], 3);

    let tool_stream = post(
        upstream.addr(),
        MESSAGES,
        &json!({"model": "c", "stream": true, "tools": [{"name": "lookup"}],
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await?;
    let data: Vec<Value> = tool_stream
        .data()
        .iter()
        .map(|data| serde_json::from_str(data))
        .collect::<Result<_, _>>()?;
    assert_eq!(data[1]["content_block"]["type"], "tool_use");
    let partial: String = data
        .iter()
        .filter(|event| event["delta"]["type"] == "input_json_delta")
        .filter_map(|event| event["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial)?,
        json!({"query": "x"})
    );
    assert!(
        data.iter()
            .any(|event| event["delta"]["stop_reason"] == "tool_use")
    );
    Ok(())
}
