//! Scoring with the autoregressive reference model (DESIGN §9; the network is
//! `model::causal`): exact held-out perplexity and gen-PPL of samples, with nothing
//! downloaded.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::Dit;
use crate::model::causal::next_token_logits;

/// Negative log-likelihood (nats) of the tokens from position `from` on of every sequence,
/// given all tokens before them, under the reference model, summed per sequence, in batches
/// of `batch`. All sequences must have length `seq_len` (what the model was trained on).
pub fn sequence_nll(
    model: &Dit,
    sequences: &[Vec<u32>],
    seq_len: usize,
    batch: usize,
    from: usize,
) -> Vec<f64> {
    assert!(from < seq_len, "scoring starts inside the sequence");
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
            .narrow(1, from, seq_len - from)
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
    conditional_perplexity(model, sequences, seq_len, batch, 0)
}

/// Perplexity of the tokens from position `from` on, each given everything before it: how
/// likely the continuations of prompts that fill positions `..from` are.
pub fn conditional_perplexity(
    model: &Dit,
    sequences: &[Vec<u32>],
    seq_len: usize,
    batch: usize,
    from: usize,
) -> f64 {
    let nll: f64 = sequence_nll(model, sequences, seq_len, batch, from)
        .iter()
        .sum();
    let tokens = (sequences.len() * (seq_len - from)).max(1);
    (nll / tokens as f64).exp()
}
