/// How token vectors become one sentence vector (sentence-transformers' pooling modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the tokens' vectors, special tokens included.
    Mean,
    /// The first token's (`[CLS]`) vector.
    Cls,
    /// Element-wise maximum over the tokens.
    Max,
    /// Sum of the tokens' vectors divided by the square root of their count.
    MeanSqrtLen,
}

impl Pooling {
    /// Name as sentence-transformers spells it in `1_Pooling/config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Cls => "cls",
            Self::Max => "max",
            Self::MeanSqrtLen => "mean_sqrt_len",
        }
    }

    /// Pools one sequence's token vectors (`rows`: `width` values per token, concatenated;
    /// at least one token) into one vector.
    pub(crate) fn pool(self, rows: &[f32], width: usize) -> Vec<f32> {
        let mut tokens = rows.chunks_exact(width);
        let mut pooled = tokens.next().map(<[f32]>::to_vec).unwrap_or_default();
        match self {
            Self::Cls => {}
            Self::Max => {
                for token in tokens {
                    for (out, value) in pooled.iter_mut().zip(token) {
                        *out = out.max(*value);
                    }
                }
            }
            Self::Mean | Self::MeanSqrtLen => {
                for token in tokens {
                    for (out, value) in pooled.iter_mut().zip(token) {
                        *out += value;
                    }
                }
                #[expect(clippy::cast_precision_loss, reason = "a token count")]
                let count = (rows.len() / width.max(1)).max(1) as f32;
                let divisor = if self == Self::Mean {
                    count
                } else {
                    count.sqrt()
                };
                for out in &mut pooled {
                    *out /= divisor;
                }
            }
        }
        pooled
    }
}

/// Divides `vector` by its L2 norm (a vector of zeros stays zeros).
pub(crate) fn l2_normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
    let scale = 1.0 / norm.max(1e-12);
    for value in vector {
        *value *= scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes() {
        // Three tokens of width 2.
        let rows = [1f32, 2., 3., 4., 5., 0.];
        let table: [(Pooling, [f32; 2]); 4] = [
            (Pooling::Mean, [3., 2.]),
            (Pooling::Cls, [1., 2.]),
            (Pooling::Max, [5., 4.]),
            (Pooling::MeanSqrtLen, [9. / 3f32.sqrt(), 6. / 3f32.sqrt()]),
        ];
        for (pooling, expected) in table {
            let got = pooling.pool(&rows, 2);
            for (g, e) in got.iter().zip(&expected) {
                assert!(
                    (g - e).abs() < 1e-5,
                    "{pooling:?}: got {got:?}, expected {expected:?}"
                );
            }
        }
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero_rows() {
        let mut v = [3f32, 4.];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut zero = [0f32, 0.];
        l2_normalize(&mut zero);
        assert_eq!(zero, [0., 0.]);
    }
}
