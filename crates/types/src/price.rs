//! Token prices and the exact cost of a request.

use crate::Usage;

/// Price of a target in billionths of the currency unit ("nanos") per million tokens.
/// Integers, so costs add up exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenPrice {
    pub input: u64,
    /// Input tokens served from the provider's prompt cache.
    pub cached_input: u64,
    pub output: u64,
}

impl TokenPrice {
    /// Cost of `usage` in nanos, rounded to the nearest nano.
    #[must_use]
    pub fn cost_nanos(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_prompt_tokens().min(usage.prompt_tokens);
        self.cost_of(
            usage.prompt_tokens - cached,
            cached,
            usage.completion_tokens,
        )
    }

    /// Cost in nanos of token counts, rounded to the nearest nano.
    #[must_use]
    pub fn cost_of(&self, input_tokens: u64, cached_input_tokens: u64, output_tokens: u64) -> u64 {
        let nanos_per_million = u128::from(input_tokens) * u128::from(self.input)
            + u128::from(cached_input_tokens) * u128::from(self.cached_input)
            + u128::from(output_tokens) * u128::from(self.output);
        u64::try_from((nanos_per_million + 500_000) / 1_000_000).unwrap_or(u64::MAX)
    }

    /// The higher of each component, for reserving before the serving target is known.
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        Self {
            input: self.input.max(other.input),
            cached_input: self.cached_input.max(other.cached_input),
            output: self.output.max(other.output),
        }
    }
}

impl Usage {
    /// Prompt tokens the provider served from its cache (`prompt_tokens_details.cached_tokens`).
    #[must_use]
    pub fn cached_prompt_tokens(&self) -> u64 {
        self.extra
            .get("prompt_tokens_details")
            .and_then(|details| details.get("cached_tokens"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_exact_and_rounded() {
        // $0.15 / $0.075 / $0.60 per million tokens.
        let price = TokenPrice {
            input: 150_000_000,
            cached_input: 75_000_000,
            output: 600_000_000,
        };
        let usage: Usage = serde_json::from_value(serde_json::json!({
            "prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 400}
        }))
        .unwrap_or_default();
        // 600 × 150 + 400 × 75 + 500 × 600 = 90,000 + 30,000 + 300,000 nanos.
        assert_eq!(price.cost_nanos(&usage), 420_000);
        assert_eq!(price.cost_of(1, 0, 0), 150);
        assert_eq!(
            TokenPrice {
                input: 1_499_999,
                ..price
            }
            .cost_of(1, 0, 0),
            1
        );
        assert_eq!(
            TokenPrice {
                input: 499_999,
                ..price
            }
            .cost_of(1, 0, 0),
            0
        );
    }
}
