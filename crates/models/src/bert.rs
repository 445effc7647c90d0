//! The BERT encoder forward pass, written for CPU inference.
//!
//! A batch's sequences are packed end to end, so no work is spent on padding. Each layer makes
//! three matrix products as single 2-D products through candle's gemm (the query, key and
//! value projections fused into one), one for the attention output; everything between them
//! (biases, attention with its softmax, the activation, residual additions and layer norms)
//! runs as fused loops over rows, in parallel on the rayon pool gemm also uses.
//!
//! Attention needs no mask: each sequence attends only over its own rows.

use std::collections::HashMap;

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use rayon::prelude::*;

/// The activation of a BERT feed-forward block (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `gelu`: the exact, erf-based GELU.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation.
    GeluTanh,
    Relu,
}

/// The shape of a BERT model, from its `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

/// Hidden states of a packed batch: the tokens of sequence `i` are rows
/// `starts[i]..starts[i + 1]` of a `[tokens, width]` row-major matrix.
pub(crate) struct Packed {
    states: Vec<f32>,
    starts: Vec<usize>,
    width: usize,
}

impl Packed {
    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// The rows of sequence `index`, `width` values each, concatenated.
    pub fn sequence(&self, index: usize) -> &[f32] {
        &self.states[self.starts[index] * self.width..self.starts[index + 1] * self.width]
    }

    /// Length of each row.
    pub fn width(&self) -> usize {
        self.width
    }
}

/// A linear layer: the weight transposed to `[in, out]` (a view, as gemm reads it) and the
/// bias, added by whatever fused loop consumes the product.
struct Dense {
    weight: Tensor,
    bias: Vec<f32>,
}

/// Layer norm parameters.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct Layer {
    /// Query, key and value projections stacked: a product of width `3 * hidden`.
    qkv: Dense,
    attention_output: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

/// A BERT encoder (embeddings and transformer layers, no heads).
pub(crate) struct Encoder {
    hidden: usize,
    heads: usize,
    eps: f32,
    activation: Activation,
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    token_type_embeddings: Vec<f32>,
    embeddings_norm: Norm,
    layers: Vec<Layer>,
}

/// Takes named tensors out of a checkpoint, checking their shapes.
pub(crate) struct Weights(HashMap<String, Tensor>);

impl Weights {
    pub fn new(tensors: HashMap<String, Tensor>) -> Self {
        Self(tensors)
    }

    /// The tensor `name` as f32, which must have `shape`.
    pub fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, String> {
        let tensor = self
            .0
            .remove(name)
            .ok_or_else(|| format!("no tensor `{name}`"))?;
        if tensor.dims() != shape {
            return Err(format!(
                "`{name}` has shape {:?}, expected {shape:?}",
                tensor.dims()
            ));
        }
        tensor
            .to_dtype(DType::F32)
            .map_err(|error| format!("`{name}`: {error}"))
    }

    /// The tensor `name` flattened into a vector.
    pub fn vector(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        self.tensor(name, shape)?
            .flatten_all()
            .and_then(|tensor| tensor.to_vec1::<f32>())
            .map_err(|error| format!("`{name}`: {error}"))
    }

    /// The first dimension of tensor `name`, if there is one.
    pub fn rows(&self, name: &str) -> Option<usize> {
        self.0
            .get(name)
            .map(|tensor| tensor.dims().first().copied().unwrap_or(0))
    }

    /// The linear layer `{prefix}.weight` (`[out, in]`) and `{prefix}.bias`.
    fn dense(&mut self, prefix: &str, inputs: usize, outputs: usize) -> Result<Dense, String> {
        let weight = self.tensor(&format!("{prefix}.weight"), &[outputs, inputs])?;
        Ok(Dense {
            weight: weight
                .t()
                .and_then(|t| t.contiguous())
                .map_err(|error| error.to_string())?,
            bias: self.vector(&format!("{prefix}.bias"), &[outputs])?,
        })
    }

    /// The same as a plain `[out, in]` row-major matrix and bias, for small heads.
    pub fn matrix(
        &mut self,
        prefix: &str,
        inputs: usize,
        outputs: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), String> {
        Ok((
            self.vector(&format!("{prefix}.weight"), &[outputs, inputs])?,
            self.vector(&format!("{prefix}.bias"), &[outputs])?,
        ))
    }

    fn norm(&mut self, prefix: &str, width: usize) -> Result<Norm, String> {
        Ok(Norm {
            weight: self.vector(&format!("{prefix}.weight"), &[width])?,
            bias: self.vector(&format!("{prefix}.bias"), &[width])?,
        })
    }
}

impl Encoder {
    /// Builds the encoder from `weights` (names without a `bert.` prefix), which must match
    /// `config`. The error says which tensor is missing or misshapen.
    pub fn load(weights: &mut Weights, config: &BertConfig) -> Result<Self, String> {
        let hidden = config.hidden_size;
        let layers = (0..config.num_hidden_layers)
            .map(|index| load_layer(weights, &format!("encoder.layer.{index}"), config))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            hidden,
            heads: config.num_attention_heads,
            // f32 cannot hold the usual 1e-12 exactly; it only guards a zero variance.
            #[expect(clippy::cast_possible_truncation, reason = "an epsilon")]
            eps: config.layer_norm_eps as f32,
            activation: config.activation,
            word_embeddings: weights.vector(
                "embeddings.word_embeddings.weight",
                &[config.vocab_size, hidden],
            )?,
            position_embeddings: weights.vector(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, hidden],
            )?,
            token_type_embeddings: weights.vector(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, hidden],
            )?,
            embeddings_norm: weights.norm("embeddings.LayerNorm", hidden)?,
            layers,
        })
    }

    /// Encodes `sequences` (`(token ids, token type ids)` each, of equal lengths, special
    /// tokens included) in one pass.
    ///
    /// # Errors
    /// An id outside the vocabulary, a type id outside `type_vocab_size`, a sequence longer
    /// than `max_position_embeddings`, or a failed matrix product.
    pub fn forward(&self, sequences: &[(&[u32], &[u32])]) -> candle_core::Result<Packed> {
        let mut starts = Vec::with_capacity(sequences.len() + 1);
        starts.push(0);
        for (ids, _) in sequences {
            starts.push(starts[starts.len() - 1] + ids.len());
        }
        let tokens = starts[starts.len() - 1];
        let mut states = self.embed(sequences, tokens)?;
        for layer in &self.layers {
            states = self.layer(layer, states, &starts)?;
        }
        Ok(Packed {
            states: into_vec(states)?,
            starts,
            width: self.hidden,
        })
    }

    /// Word, position and token type embeddings summed and normalized: `[tokens, hidden]`.
    fn embed(&self, sequences: &[(&[u32], &[u32])], tokens: usize) -> candle_core::Result<Tensor> {
        let width = self.hidden;
        fn row<'t>(
            table: &'t [f32],
            width: usize,
            index: usize,
            what: &str,
        ) -> candle_core::Result<&'t [f32]> {
            table
                .get(index * width..(index + 1) * width)
                .ok_or_else(|| candle_core::Error::msg(format!("{what} {index} is out of range")))
        }
        let mut states = vec![0f32; tokens * width];
        let mut rows = states.chunks_exact_mut(width);
        for (ids, type_ids) in sequences {
            if ids.len() != type_ids.len() {
                return Err(candle_core::Error::msg("ids and type ids differ in length"));
            }
            for (position, (&id, &type_id)) in ids.iter().zip(type_ids.iter()).enumerate() {
                let word = row(&self.word_embeddings, width, id as usize, "token id")?;
                let place = row(&self.position_embeddings, width, position, "position")?;
                let kind = row(
                    &self.token_type_embeddings,
                    width,
                    type_id as usize,
                    "token type",
                )?;
                let out = rows.next().unwrap_or_default();
                for (((out, word), place), kind) in out.iter_mut().zip(word).zip(place).zip(kind) {
                    *out = word + place + kind;
                }
            }
        }
        states.par_chunks_mut(width).for_each(|row| {
            normalize_row(row, &self.embeddings_norm, self.eps);
        });
        Tensor::from_vec(states, (tokens, width), &Device::Cpu)
    }

    fn layer(&self, layer: &Layer, input: Tensor, starts: &[usize]) -> candle_core::Result<Tensor> {
        let tokens = input.dims()[0];
        let qkv = input.matmul(&layer.qkv.weight)?;
        let context = with_data(&qkv, |qkv| {
            self.attention(qkv, &layer.qkv.bias, starts, tokens)
        })??;
        let context = Tensor::from_vec(context, (tokens, self.hidden), &Device::Cpu)?;
        let projected = context.matmul(&layer.attention_output.weight)?;
        let attended = self.add_and_normalize(
            &projected,
            &layer.attention_output.bias,
            &input,
            &layer.attention_norm,
        )?;
        let intermediate = attended.matmul(&layer.intermediate.weight)?;
        let width = layer.intermediate.bias.len();
        let activated = with_data(&intermediate, |values| {
            bias_and_activate(values, &layer.intermediate.bias, self.activation)
        })?;
        let activated = Tensor::from_vec(activated, (tokens, width), &Device::Cpu)?;
        let output = activated.matmul(&layer.output.weight)?;
        self.add_and_normalize(&output, &layer.output.bias, &attended, &layer.output_norm)
    }

    /// Multi-head self-attention over each sequence of the packed `qkv` product
    /// (`[tokens, 3 * hidden]`, biases not yet added): `[tokens, hidden]`.
    fn attention(
        &self,
        qkv: &[f32],
        bias: &[f32],
        starts: &[usize],
        tokens: usize,
    ) -> candle_core::Result<Vec<f32>> {
        let hidden = self.hidden;
        let mut context = vec![0f32; tokens * hidden];
        // Each sequence writes its own rows, so sequences run in parallel.
        let mut blocks = Vec::with_capacity(starts.len() - 1);
        let mut rest = context.as_mut_slice();
        for pair in starts.windows(2) {
            let (block, tail) = rest.split_at_mut((pair[1] - pair[0]) * hidden);
            blocks.push((pair[0], block));
            rest = tail;
        }
        blocks.into_par_iter().try_for_each(|(start, block)| {
            let rows = &qkv[start * 3 * hidden..(start * 3 * hidden + block.len() * 3)];
            attend(rows, bias, block, hidden, self.heads)
        })?;
        Ok(context)
    }

    /// `LayerNorm(product + bias + residual)`, row by row.
    fn add_and_normalize(
        &self,
        product: &Tensor,
        bias: &[f32],
        residual: &Tensor,
        norm: &Norm,
    ) -> candle_core::Result<Tensor> {
        let width = self.hidden;
        let out = with_data(product, |product| {
            with_data(residual, |residual| {
                let mut out = vec![0f32; product.len()];
                out.par_chunks_mut(width)
                    .zip(product.par_chunks(width))
                    .zip(residual.par_chunks(width))
                    .for_each(|((out, product), residual)| {
                        for (((out, product), bias), residual) in
                            out.iter_mut().zip(product).zip(bias).zip(residual)
                        {
                            *out = product + bias + residual;
                        }
                        normalize_row(out, norm, self.eps);
                    });
                out
            })
        })??;
        let rows = out.len() / width;
        Tensor::from_vec(out, (rows, width), &Device::Cpu)
    }
}

fn load_layer(weights: &mut Weights, prefix: &str, config: &BertConfig) -> Result<Layer, String> {
    let hidden = config.hidden_size;
    let intermediate = config.intermediate_size;
    let projections = ["query", "key", "value"]
        .map(|name| weights.dense(&format!("{prefix}.attention.self.{name}"), hidden, hidden));
    let [query, key, value] = projections;
    let (query, key, value) = (query?, key?, value?);
    // Stack the [out, in] weights (their transposes are views) into one [3 * hidden, hidden].
    let stacked = Tensor::cat(
        &[query.weight.t(), key.weight.t(), value.weight.t()]
            .into_iter()
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(|error| error.to_string())?,
        0,
    )
    .and_then(|stacked| stacked.t()?.contiguous())
    .map_err(|error| error.to_string())?;
    let qkv = Dense {
        weight: stacked,
        bias: [query.bias, key.bias, value.bias].concat(),
    };
    Ok(Layer {
        qkv,
        attention_output: weights.dense(
            &format!("{prefix}.attention.output.dense"),
            hidden,
            hidden,
        )?,
        attention_norm: weights.norm(&format!("{prefix}.attention.output.LayerNorm"), hidden)?,
        intermediate: weights.dense(
            &format!("{prefix}.intermediate.dense"),
            hidden,
            intermediate,
        )?,
        output: weights.dense(&format!("{prefix}.output.dense"), intermediate, hidden)?,
        output_norm: weights.norm(&format!("{prefix}.output.LayerNorm"), hidden)?,
    })
}

/// Runs `f` on the f32 values of a contiguous CPU tensor, without copying them.
fn with_data<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        return Err(candle_core::Error::msg("expected an f32 tensor on the CPU"));
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("expected a contiguous tensor"))?;
    Ok(f(&data[start..end]))
}

fn into_vec(tensor: Tensor) -> candle_core::Result<Vec<f32>> {
    tensor.flatten_all()?.to_vec1::<f32>()
}

/// Attention of one sequence: `rows` is its `[len, 3 * hidden]` slice of the qkv product,
/// `out` its `[len, hidden]` context rows. The two products per head go to gemm, batched over
/// the heads.
fn attend(
    rows: &[f32],
    bias: &[f32],
    out: &mut [f32],
    hidden: usize,
    heads: usize,
) -> candle_core::Result<()> {
    let len = out.len() / hidden;
    let head_size = hidden / heads;
    #[expect(clippy::cast_precision_loss, reason = "a head size")]
    let scale = 1.0 / (head_size as f32).sqrt();
    // Queries (scaled), keys and values as [heads, len, head_size], biases added.
    let split = |offset: usize, scale: f32| {
        let mut split = vec![0f32; len * hidden];
        for (token, row) in rows.chunks_exact(3 * hidden).enumerate() {
            let row = &row[offset..offset + hidden];
            let bias = &bias[offset..offset + hidden];
            for (head, (values, bias)) in row
                .chunks_exact(head_size)
                .zip(bias.chunks_exact(head_size))
                .enumerate()
            {
                let at = (head * len + token) * head_size;
                for ((out, value), bias) in
                    split[at..at + head_size].iter_mut().zip(values).zip(bias)
                {
                    *out = (value + bias) * scale;
                }
            }
        }
        Tensor::from_vec(split, (heads, len, head_size), &Device::Cpu)
    };
    let queries = split(0, scale)?;
    let keys = split(hidden, 1.0)?;
    let values = split(2 * hidden, 1.0)?;
    let scores = queries.matmul(&keys.t()?)?;
    let probabilities = with_data(&scores, |scores| {
        let mut probabilities = scores.to_vec();
        probabilities.chunks_exact_mut(len).for_each(softmax);
        probabilities
    })?;
    let probabilities = Tensor::from_vec(probabilities, (heads, len, len), &Device::Cpu)?;
    let context = probabilities.matmul(&values)?;
    with_data(&context, |context| {
        for (head, context) in context.chunks_exact(len * head_size).enumerate() {
            for (out, context) in out
                .chunks_exact_mut(hidden)
                .zip(context.chunks_exact(head_size))
            {
                out[head * head_size..(head + 1) * head_size].copy_from_slice(context);
            }
        }
    })
}

/// In-place softmax of one row.
fn softmax(row: &mut [f32]) {
    let max = lanes(row, f32::NEG_INFINITY, identity, f32::max);
    for value in row.iter_mut() {
        *value = exp(*value - max);
    }
    let inverse = 1.0 / lanes(row, 0.0, identity, add);
    for value in row.iter_mut() {
        *value *= inverse;
    }
}

/// Combines `map(value)` of every value with `combine` (associative and commutative) over 16
/// independent lanes, which the compiler keeps in vector registers; a plain fold over floats
/// stays scalar, since reordering it changes rounding.
#[inline]
fn lanes(
    values: &[f32],
    identity: f32,
    map: impl Fn(f32) -> f32,
    combine: impl Fn(f32, f32) -> f32,
) -> f32 {
    let mut accumulators = [identity; 16];
    let chunks = values.chunks_exact(16);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (accumulator, value) in accumulators.iter_mut().zip(chunk) {
            *accumulator = combine(*accumulator, map(*value));
        }
    }
    let folded = accumulators.into_iter().fold(identity, &combine);
    tail.iter().fold(folded, |a, b| combine(a, map(*b)))
}

fn identity(value: f32) -> f32 {
    value
}

fn add(a: f32, b: f32) -> f32 {
    a + b
}

/// `e^x` for `x <= 0` (softmax after its maximum is subtracted), to about 1 ulp; written
/// without calls or branches (and without `mul_add`, a libm call on CPUs without FMA) so the
/// compiler vectorizes the loops that use it. Inputs below
/// -87 give 2^-126 rather than 0, which no softmax can tell apart.
#[inline]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 0.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Cephes' expf polynomial on [-ln 2 / 2, ln 2 / 2].
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * (r * r) + r + 1.0;
    // 2^n from the integer in `shifted`'s mantissa: n is in [-126, 0].
    let exponent = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127)
        << 23;
    e_r * f32::from_bits(exponent)
}

/// `erf(x)` as a rational function (the one Eigen and XLA use for f32), within a few ulp;
/// vectorizable like [`exp`].
#[inline]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024_1e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_600_1e-3;
    p = p * x2 + -1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329_2e-3;
    q = q * x2 + -1.426_474e-2;
    x * p / q
}

/// `activation(values + bias)` for a `[rows, bias.len()]` matrix.
fn bias_and_activate(values: &[f32], bias: &[f32], activation: Activation) -> Vec<f32> {
    let width = bias.len();
    let mut out = vec![0f32; values.len()];
    out.par_chunks_mut(width)
        .zip(values.par_chunks(width))
        .for_each(|(out, values)| {
            let pairs = out.iter_mut().zip(values).zip(bias);
            match activation {
                Activation::Gelu => pairs.for_each(|((out, value), bias)| {
                    let x = value + bias;
                    *out = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
                }),
                Activation::GeluTanh => pairs.for_each(|((out, value), bias)| {
                    let x = value + bias;
                    let inner = 0.797_884_6 * (x + 0.044_715 * x * x * x);
                    *out = 0.5 * x * (1.0 + inner.tanh());
                }),
                Activation::Relu => pairs.for_each(|((out, value), bias)| {
                    *out = (value + bias).max(0.0);
                }),
            }
        });
    out
}

/// In-place layer norm of one row.
fn normalize_row(row: &mut [f32], norm: &Norm, eps: f32) {
    #[expect(clippy::cast_precision_loss, reason = "a row width")]
    let width = row.len() as f32;
    let mean = lanes(row, 0.0, identity, add) / width;
    for value in row.iter_mut() {
        *value -= mean;
    }
    let variance = lanes(row, 0.0, |value| value * value, add) / width;
    let inverse = 1.0 / (variance + eps).sqrt();
    for ((value, weight), bias) in row.iter_mut().zip(&norm.weight).zip(&norm.bias) {
        *value = *value * inverse * weight + bias;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        let mut worst = 0f32;
        for step in 0..=87_000 {
            #[expect(clippy::cast_precision_loss, reason = "test grid")]
            let x = -(step as f32) / 1000.0;
            let (ours, exact) = (exp(x), x.exp());
            worst = worst.max(((ours - exact) / exact).abs());
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert!((exp(0.0) - 1.0).abs() < 1e-7);
        assert!(exp(-1000.0) < 1e-37);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn erf_is_within_a_few_ulp_of_libm() {
        let mut worst = 0f64;
        for step in -6000..=6000 {
            let x = f64::from(step) / 1000.0;
            #[expect(clippy::cast_possible_truncation, reason = "test grid")]
            let ours = f64::from(erf(x as f32));
            worst = worst.max((ours - libm_erf(x)).abs());
        }
        assert!(worst < 1e-6, "absolute error {worst}");
    }

    /// erf in f64 by its Taylor series (|x| <= 3) or its continued fraction, for the test.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // 1 - erfc(x); erfc(3) is 2.2e-5, erfc(6) is 2e-17, so a few terms of the
            // asymptotic series are exact enough.
            let t = 1.0 / (x * x);
            let erfc = (-x * x).exp() / (x.abs() * std::f64::consts::PI.sqrt())
                * (1.0 - 0.5 * t + 0.75 * t * t - 1.875 * t * t * t);
            return x.signum() * (1.0 - erfc);
        }
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            let n = f64::from(n);
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let mut row = vec![1.0, 3.0, 2.0, -50.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let exact: Vec<f32> = [1f32, 3.0, 2.0, -50.0]
            .iter()
            .map(|x| (x - 3.0).exp())
            .collect();
        let total: f32 = exact.iter().sum();
        for (ours, exact) in row.iter().zip(&exact) {
            assert!((ours - exact / total).abs() < 1e-7);
        }
    }
}
