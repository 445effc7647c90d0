//! The short-term window: how much of a conversation's history a response sends.
//!
//! History is cut only where a turn starts (at a user message), so a tool call is never sent
//! without its result, nor a result without its call.

use landfall_types::{ChatMessage, Role};

/// The index of the first message of `history` to send: the start of the last `max_turns`
/// turns (all when 0), moved on while what is left is over `max_tokens` (no budget when 0),
/// but never past the start of the last turn.
#[must_use]
pub fn window_start(
    history: &[ChatMessage],
    max_turns: usize,
    max_tokens: u64,
    tokens: impl Fn(&ChatMessage) -> u64,
) -> usize {
    let starts: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, message)| message.role == Role::User)
        .map(|(index, _)| index)
        .collect();
    let Some(&last_turn) = starts.last() else {
        return 0;
    };
    let mut start = match max_turns {
        0 => 0,
        turns if turns >= starts.len() => 0,
        turns => starts[starts.len() - turns],
    };
    if max_tokens == 0 {
        return start;
    }
    let mut total: u64 = history[start..].iter().map(&tokens).sum();
    let first = start;
    for &next in starts.iter().filter(|&&index| index > first) {
        if total <= max_tokens || start >= last_turn {
            break;
        }
        total -= history[start..next].iter().map(&tokens).sum::<u64>();
        start = next;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation(turns: &[&[(Role, &str)]]) -> Vec<ChatMessage> {
        turns
            .iter()
            .flat_map(|turn| {
                turn.iter()
                    .map(|(role, text)| ChatMessage::text(*role, *text))
            })
            .collect()
    }

    fn length(message: &ChatMessage) -> u64 {
        message.text_content().len() as u64
    }

    #[test]
    fn keeps_whole_turns_within_the_limits() {
        let history = conversation(&[
            &[(Role::Assistant, "welcome")],
            &[(Role::User, "aaaa"), (Role::Assistant, "bbbb")],
            &[
                (Role::User, "cc"),
                (Role::Assistant, "call"),
                (Role::Tool, "result"),
            ],
            &[(Role::User, "dd"), (Role::Assistant, "ee")],
        ]);
        let cases = [
            // (max_turns, max_tokens, expected start)
            (0, 0, 0),
            (10, 0, 0),
            (3, 0, 0),
            (2, 0, 3),
            (1, 0, 6),
            (0, 1_000, 0),
            (0, 20, 3),
            (0, 4, 6),
            (0, 1, 6),
            (3, 20, 3),
        ];
        for (turns, tokens, expected) in cases {
            assert_eq!(
                window_start(&history, turns, tokens, length),
                expected,
                "turns {turns}, tokens {tokens}"
            );
        }
    }

    #[test]
    fn history_without_user_messages_is_kept_whole() {
        let history = conversation(&[&[(Role::Assistant, "hello"), (Role::Assistant, "again")]]);
        assert_eq!(window_start(&history, 1, 1, length), 0);
        assert_eq!(window_start(&[], 1, 1, length), 0);
    }
}
