use candle_core::{D, DType, Tensor};

/// How token vectors become one sentence vector (sentence-transformers' pooling modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the real (unpadded) tokens' vectors, special tokens included.
    Mean,
    /// The first token's (`[CLS]`) vector.
    Cls,
    /// Element-wise maximum over the real tokens.
    Max,
    /// Sum of the real tokens' vectors divided by the square root of their count.
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

    /// Pools `hidden` (`[batch, seq, dim]`) over the tokens whose `mask` (`[batch, seq]`, f32
    /// 1.0 for real tokens, 0.0 for padding) is set, giving `[batch, dim]`.
    pub(crate) fn pool(self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
            Self::Mean | Self::MeanSqrtLen => {
                let mask3 = mask.unsqueeze(D::Minus1)?;
                let summed = hidden.broadcast_mul(&mask3)?.sum(1)?;
                // Every row has at least [CLS] and [SEP]; the clamp only guards a zero count.
                let count = mask.sum_keepdim(1)?.clamp(1e-9f32, f32::MAX)?;
                let divisor = if self == Self::Mean {
                    count
                } else {
                    count.sqrt()?
                };
                summed.broadcast_div(&divisor)
            }
            Self::Max => {
                // Padding positions get -1e9 (as sentence-transformers does) so they never win.
                let mask3 = mask.unsqueeze(D::Minus1)?;
                let penalty = ((mask3.ones_like()? - &mask3)? * -1e9f64)?;
                hidden.broadcast_add(&penalty)?.max(1)
            }
        }
    }
}

/// Divides each row of `[batch, dim]` by its L2 norm (rows of zeros stay zeros).
pub(crate) fn l2_normalize(vectors: &Tensor) -> candle_core::Result<Tensor> {
    let norms = vectors
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    vectors.broadcast_div(&norms)
}

/// `[batch, seq]` token id, type id and mask tensors of `rows` (`(ids, type_ids)` each),
/// padded with `pad_token_id` to the longest row; the mask is 1.0 on real tokens.
pub(crate) fn padded_batch(
    rows: &[(&[u32], &[u32])],
    pad_token_id: u32,
    device: &candle_core::Device,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let seq_len = rows
        .iter()
        .map(|(ids, _)| ids.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut ids = vec![pad_token_id; rows.len() * seq_len];
    let mut type_ids = vec![0u32; rows.len() * seq_len];
    let mut lengths = Vec::with_capacity(rows.len());
    for (index, (row_ids, row_types)) in rows.iter().enumerate() {
        let start = index * seq_len;
        ids[start..start + row_ids.len()].copy_from_slice(row_ids);
        type_ids[start..start + row_types.len()].copy_from_slice(row_types);
        lengths.push(row_ids.len());
    }
    let shape = (rows.len(), seq_len);
    let ids = Tensor::from_vec(ids, shape, device)?;
    let type_ids = Tensor::from_vec(type_ids, shape, device)?;
    let mask = mask_from_lengths(&lengths, seq_len, device)?;
    Ok((ids, type_ids, mask))
}

/// A `[batch, seq]` f32 mask tensor from per-row real-token counts.
pub(crate) fn mask_from_lengths(
    lengths: &[usize],
    seq_len: usize,
    device: &candle_core::Device,
) -> candle_core::Result<Tensor> {
    let mut data = vec![0f32; lengths.len() * seq_len];
    for (row, &len) in lengths.iter().enumerate() {
        let start = row * seq_len;
        data[start..start + len.min(seq_len)].fill(1.0);
    }
    Tensor::from_vec(data, (lengths.len(), seq_len), device)?.to_dtype(DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().unwrap()
    }

    /// Two rows of three tokens (dim 2); the second row has one padding token holding
    /// large values that must not leak into any pooling.
    fn sample() -> (Tensor, Tensor) {
        let hidden = Tensor::new(
            &[
                [[1f32, 2.], [3., 4.], [5., 0.]],
                [[2f32, -1.], [4., 1.], [100., 100.]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let mask = mask_from_lengths(&[3, 2], 3, &Device::Cpu).unwrap();
        (hidden, mask)
    }

    #[test]
    fn pooling_modes_ignore_padding() {
        let (hidden, mask) = sample();
        let table: [(Pooling, [[f32; 2]; 2]); 4] = [
            (Pooling::Mean, [[3., 2.], [3., 0.]]),
            (Pooling::Cls, [[1., 2.], [2., -1.]]),
            (Pooling::Max, [[5., 4.], [4., 1.]]),
            (
                Pooling::MeanSqrtLen,
                [[9. / 3f32.sqrt(), 6. / 3f32.sqrt()], [6. / 2f32.sqrt(), 0.]],
            ),
        ];
        for (pooling, expected) in table {
            let got = rows(&pooling.pool(&hidden, &mask).unwrap());
            for (g, e) in got.iter().flatten().zip(expected.iter().flatten()) {
                assert!(
                    (g - e).abs() < 1e-5,
                    "{pooling:?}: got {got:?}, expected {expected:?}"
                );
            }
        }
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero_rows() {
        let v = Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap();
        assert_eq!(
            rows(&l2_normalize(&v).unwrap()),
            vec![vec![0.6, 0.8], vec![0., 0.]]
        );
    }
}
