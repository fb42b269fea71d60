//! Scoring with the autoregressive reference model (DESIGN §9; the network is
//! `model::causal`): exact held-out perplexity and gen-PPL of samples, with nothing
//! downloaded.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::Dit;
use crate::model::causal::next_token_logits;

/// Negative log-likelihood (nats) of every token of every sequence under the reference
/// model, summed per sequence, in batches of `batch`. All sequences must have length
/// `seq_len` (what the model was trained on).
pub fn sequence_nll(model: &Dit, sequences: &[Vec<u32>], seq_len: usize, batch: usize) -> Vec<f64> {
    let mut totals = Vec::with_capacity(sequences.len());
    for group in sequences.chunks(batch.max(1)) {
        let tokens: Vec<u32> = group.iter().flatten().copied().collect();
        let device = model.embedding.val().device();
        let logits = next_token_logits(model, &tokens, seq_len);
        let targets: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let targets =
            Tensor::<2, Int>::from_data(TensorData::new(targets, [group.len(), seq_len]), &device);
        let picked = log_softmax(logits, 2).gather(2, targets.unsqueeze_dim::<3>(2));
        let per_sequence: Vec<f32> = picked
            .sum_dim(1)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .expect("float log-likelihoods");
        totals.extend(per_sequence.iter().map(|&v| -(v as f64)));
    }
    totals
}

/// Perplexity `exp(mean NLL per token)` of equal-length sequences.
pub fn perplexity(model: &Dit, sequences: &[Vec<u32>], seq_len: usize, batch: usize) -> f64 {
    let nll: f64 = sequence_nll(model, sequences, seq_len, batch).iter().sum();
    let tokens = (sequences.len() * seq_len).max(1);
    (nll / tokens as f64).exp()
}
