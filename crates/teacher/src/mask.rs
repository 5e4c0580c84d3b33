//! The additive attention masks of the calibrated language model.
//!
//! The release's calibration adds [`CALIBRATION_PENALTY`] to a score wherever the query's
//! and the key's token types differ (language vs time series). Decoders (GPT-2, LLaMA) add
//! it to the causal mask; encoders (BERT) to nothing, every token seeing every other, so
//! their padding keys are blocked explicitly.

use burn::tensor::{Bool, Device, Tensor};

/// Additive penalty between a language and a time-series token.
pub const CALIBRATION_PENALTY: f64 = -100.0;

/// Additive score of a key a query must not see (after it, or padding): vanishes in an f32
/// softmax.
pub const BLOCKED: f64 = -1.0e9;

/// The additive attention mask [b, 1, queries, keys] of calibrated causal attention.
///
/// `query_types` [b, q] and `key_types` [b, k] are 0.0 / 1.0 (language / time-series); the
/// queries are the LAST q of the k key positions (a whole prompt when q = k, or the suffix
/// after a cached prefix). Scores get −100 where the two types differ (a tensor op, no host
/// loop), [`BLOCKED`] where the key comes after the query, and `key_penalty` [b, k] (e.g.
/// [`BLOCKED`] on a cached prefix's padding) when given.
///
/// Padding tokens sit after a prompt's real tokens, so the causal part hides them from every
/// real query whatever their type: padding cannot change a real token's state.
pub fn calibrated_mask(
    query_types: Tensor<2>,
    key_types: Tensor<2>,
    key_penalty: Option<Tensor<2>>,
) -> Tensor<4> {
    let [b, q] = query_types.dims();
    let [_, k] = key_types.dims();
    let device = query_types.device();
    calibration(query_types, key_types, key_penalty)
        .mask_fill(future_keys(q, k, &device).expand([b, q, k]), BLOCKED)
        .unsqueeze_dim(1)
}

/// The additive mask [b, 1, t, t] of calibrated bidirectional attention (encoders): the
/// calibration of [`calibrated_mask`] without the causal part; `key_penalty` [b, t] must
/// block the padding keys, which nothing else hides here.
pub fn calibrated_bidirectional_mask(
    types: Tensor<2>,
    key_penalty: Option<Tensor<2>>,
) -> Tensor<4> {
    calibration(types.clone(), types, key_penalty).unsqueeze_dim(1)
}

/// The plain causal mask [1, 1, t, t] (Hugging Face's `GPT2Model`, no calibration).
pub fn causal_mask(t: usize, device: &Device) -> Tensor<4> {
    Tensor::<2>::zeros([t, t], device)
        .mask_fill(future_keys(t, t, device).squeeze_dim(0), BLOCKED)
        .reshape([1, 1, t, t])
}

/// −100 where the types differ, plus the key penalty: [b, q, k].
fn calibration(
    query_types: Tensor<2>,
    key_types: Tensor<2>,
    key_penalty: Option<Tensor<2>>,
) -> Tensor<3> {
    let differ = (query_types.unsqueeze_dim::<3>(2) - key_types.unsqueeze_dim::<3>(1)).abs();
    let mask = differ * CALIBRATION_PENALTY;
    match key_penalty {
        Some(penalty) => mask + penalty.unsqueeze_dim(1),
        None => mask,
    }
}

/// [1, q, k], true where key j comes after query i, the queries being the last q of the k
/// positions.
fn future_keys(q: usize, k: usize, device: &Device) -> Tensor<3, Bool> {
    Tensor::<2, Bool>::tril_mask([q, k], (k - q) as i64, device).unsqueeze_dim(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn types(codes: &[f32]) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(codes.to_vec(), [1, codes.len()]),
            &Device::flex(),
        )
    }

    #[test]
    fn mask_is_calibrated_and_causal() {
        let t = types(&[0.0, 1.0, 1.0]);
        let mask = calibrated_mask(t.clone(), t, None);
        assert_eq!(mask.dims(), [1, 1, 3, 3]);
        let m = mask.try_into_vec_as::<f32>().unwrap();
        let expected = [0.0, -1e9, -1e9, -100.0, 0.0, -1e9, -100.0, 0.0, 0.0];
        assert_eq!(m, expected);
    }

    #[test]
    fn bidirectional_mask_is_calibrated_only() {
        let penalty = types(&[0.0, 0.0, BLOCKED as f32]);
        let m = calibrated_bidirectional_mask(types(&[0.0, 1.0, 0.0]), Some(penalty))
            .try_into_vec_as::<f32>()
            .unwrap();
        let expected = [
            0.0,
            -100.0,
            -1e9,
            -100.0,
            0.0,
            -1e9 - 100.0,
            0.0,
            -100.0,
            -1e9,
        ];
        assert_eq!(m, expected);
    }

    #[test]
    fn plain_mask_is_only_causal() {
        let m = causal_mask(2, &Device::flex())
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(m, [0.0, -1e9, 0.0, 0.0]);
    }
}
