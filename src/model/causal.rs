//! The autoregressive reference model (DESIGN §9): the same DiT with causal attention and a
//! constant time, trained with next-token cross-entropy. `eval` scores samples with it.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::Dit;
use crate::data::TextTokenizer;

/// The time fed to the reference model: it has no noise level, so any constant does.
pub const REFERENCE_TIME: f32 = 1.0;

/// Inputs for next-token prediction: each row shifted right by one behind `<bos>`, so the
/// causal model predicts token i from tokens `< i`. `tokens` is B·L ids.
pub fn shifted_inputs(
    tokens: &[u32],
    batch: usize,
    seq_len: usize,
    device: &Device,
) -> Tensor<2, Int> {
    let ids: Vec<i64> = tokens
        .chunks(seq_len)
        .flat_map(|row| {
            std::iter::once(TextTokenizer::BOS_ID as i64)
                .chain(row[..seq_len - 1].iter().map(|&t| t as i64))
        })
        .collect();
    Tensor::from_data(TensorData::new(ids, [batch, seq_len]), device)
}

/// Logits (B, L, V) of the reference model for B·L `tokens`.
pub fn next_token_logits(model: &Dit, tokens: &[u32], seq_len: usize) -> Tensor<3> {
    let device = model.embedding.val().device();
    let batch = tokens.len() / seq_len;
    let inputs = shifted_inputs(tokens, batch, seq_len, &device);
    model.forward_tokens(inputs, Tensor::full([batch], REFERENCE_TIME, &device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;

    #[test]
    fn inputs_are_shifted_behind_bos() {
        let device = crate::device::cpu_device();
        let ids = shifted_inputs(&[5, 6, 7, 8, 9, 10], 2, 3, &device);
        let ids: Vec<i64> = ids.into_data().convert::<i64>().try_into_vec().unwrap();
        assert_eq!(ids, vec![1, 5, 6, 1, 8, 9]);
    }

    #[test]
    fn a_causal_model_never_looks_ahead() {
        // Changing the last token must not change the logits of any earlier position.
        let device = crate::device::cpu_device();
        let config = ModelConfig {
            causal: true,
            ..crate::model::tests_support::small_config(13, 6)
        };
        let model = crate::model::tests_support::perturbed(Dit::new(&config, 1, &device), 2);
        let a = next_token_logits(&model, &[3, 4, 5, 6, 7, 8], 6);
        let b = next_token_logits(&model, &[3, 4, 5, 6, 7, 12], 6);
        let (a, b): (Vec<f32>, Vec<f32>) = (
            a.into_data().try_into_vec().unwrap(),
            b.into_data().try_into_vec().unwrap(),
        );
        // Logits at position i depend on tokens < i: positions 0..=5 see at most token 4.
        assert_eq!(a, b);
        let c = next_token_logits(&model, &[3, 4, 5, 6, 11, 8], 6);
        let c: Vec<f32> = c.into_data().try_into_vec().unwrap();
        assert_eq!(
            a[..5 * 13],
            c[..5 * 13],
            "positions up to 4 cannot see token 4"
        );
        assert_ne!(a[5 * 13..], c[5 * 13..], "position 5 sees token 4");
    }
}
