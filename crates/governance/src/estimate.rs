//! Token estimates for reservations, made before any tokenizer has seen the request. They
//! only size a reservation that is settled to the provider's exact count afterwards.

use landfall_types::ChatRequest;

/// Prompt tokens of a chat request: a quarter token per ASCII byte (English runs ~4 bytes per
/// token) and one per other character (CJK runs ~1 token per character), over the messages and
/// tools as JSON, plus a few tokens of framing per message.
#[must_use]
pub fn prompt_tokens(request: &ChatRequest) -> u64 {
    let mut counter = Counter::default();
    // Writing into the counter cannot fail; a failure would only lower the estimate.
    let _ = serde_json::to_writer(&mut counter, &request.messages);
    if let Some(tools) = &request.tools {
        let _ = serde_json::to_writer(&mut counter, tools);
    }
    counter.ascii_bytes.div_ceil(4) + counter.other_chars + 4 * request.messages.len() as u64
}

/// Prompt tokens of embedding inputs, by the same rule.
#[must_use]
pub fn text_tokens(text: &str) -> u64 {
    let mut counter = Counter::default();
    counter.add(text.as_bytes());
    counter.ascii_bytes.div_ceil(4) + counter.other_chars
}

#[derive(Default)]
struct Counter {
    ascii_bytes: u64,
    other_chars: u64,
}

impl Counter {
    fn add(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte.is_ascii() {
                self.ascii_bytes += 1;
            } else if byte & 0b1100_0000 != 0b1000_0000 {
                // A UTF-8 lead byte starts a character; continuation bytes do not.
                self.other_chars += 1;
            }
        }
    }
}

impl std::io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.add(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_and_chinese_text() {
        assert_eq!(text_tokens("hello world, how are you"), 6);
        assert_eq!(text_tokens("保本稳赚"), 4);
        assert_eq!(text_tokens(""), 0);
    }

    #[test]
    fn chat_requests_count_messages_and_framing() {
        let request: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hello world, how are you"}]
        }))
        .unwrap_or_else(|error| unreachable!("{error}"));
        let estimate = prompt_tokens(&request);
        assert!((10..30).contains(&estimate), "{estimate}");
    }
}
