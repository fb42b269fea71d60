//! Size limits, in one place, checked before anything is allocated.
//!
//! Every size a user can type (a flag, a field of a hand-edited `config.json`) ends up as the
//! length of some buffer; an absurd one must be refused with a sentence, not with an aborted
//! allocation or a machine swapping to death. The bounds are far above anything flm trains
//! (the largest preset is d = 384 with 8 blocks; the paper's models are d = 768, 12 blocks,
//! L = 1024, V ≈ 50k) and well below what would overflow the shape arithmetic.
//!
//! Beyond the per-field bounds, [`check_memory`] compares an estimate of the model and its
//! activations with the memory the machine has available, so a config that is legal field by
//! field but too big as a whole (d = 8192 with 128 blocks is 10¹¹ parameters) is refused too.

use crate::model::ModelConfig;

/// Longest sequence L: attention scores are B·heads·L² floats per block, so L = 8192 is
/// already 256 MiB per head and sequence; the paper trains at L ≤ 1024.
pub const MAX_SEQ_LEN: usize = 8192;
/// Largest vocabulary V: every position carries a V-wide distribution (the inputs are B×L×V),
/// and the BPE trainer reserves V entries up front. 262144 = 2¹⁸ covers every common
/// tokenizer (GPT-2's 50257, Gemma's 256000).
pub const MAX_VOCAB: usize = 262_144;
/// Widest model d (also the bound for the conditioning width and the time features): one
/// d×4d MLP weight at d = 8192 is 1 GiB.
pub const MAX_WIDTH: usize = 8192;
/// Most transformer blocks: 128 is far beyond any model flm can train in reasonable time.
pub const MAX_BLOCKS: usize = 128;
/// Most attention heads (at most one per pair of channels, for rotary embeddings).
pub const MAX_HEADS: usize = 1024;
/// Largest batch: sequences per step (and validation batches per evaluation); the input
/// tensor alone is B×L×V floats.
pub const MAX_BATCH: usize = 65_536;

fn bound(name: &str, value: usize, max: usize, why: &str) -> Result<(), String> {
    if value > max {
        return Err(format!(
            "{name} = {value} is too large: the limit is {max} ({why})"
        ));
    }
    Ok(())
}

/// L ≤ [`MAX_SEQ_LEN`].
pub fn check_seq_len(name: &str, value: usize) -> Result<(), String> {
    bound(
        name,
        value,
        MAX_SEQ_LEN,
        "attention memory grows with the square of the sequence length",
    )
}

/// V ≤ [`MAX_VOCAB`].
pub fn check_vocab(name: &str, value: usize) -> Result<(), String> {
    bound(
        name,
        value,
        MAX_VOCAB,
        "every position holds a distribution over the whole vocabulary",
    )
}

/// B ≤ [`MAX_BATCH`].
pub fn check_batch(name: &str, value: usize) -> Result<(), String> {
    bound(
        name,
        value,
        MAX_BATCH,
        "each step holds batch × sequence length × vocabulary floats",
    )
}

/// Every shape field of a model config against its bound.
pub fn check_model(config: &ModelConfig) -> Result<(), String> {
    check_vocab("vocab_size", config.vocab_size)?;
    check_seq_len("seq_len", config.seq_len)?;
    let width_why = "a single weight matrix of that width takes gigabytes";
    bound("d_model", config.d_model, MAX_WIDTH, width_why)?;
    bound("cond_dim", config.cond_dim, MAX_WIDTH, width_why)?;
    bound("time_features", config.time_features, MAX_WIDTH, width_why)?;
    bound(
        "n_blocks",
        config.n_blocks,
        MAX_BLOCKS,
        "far deeper than flm can train in reasonable time",
    )?;
    bound(
        "n_heads",
        config.n_heads,
        MAX_HEADS,
        "each head needs at least two channels",
    )
}

/// A number as the user typed it, within `1..=max`; for clap's `value_parser`.
fn parse_bounded(
    text: &str,
    name: &str,
    check: fn(&str, usize) -> Result<(), String>,
) -> Result<usize, String> {
    let value: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    if value == 0 {
        return Err("must be at least 1".into());
    }
    check(name, value)?;
    Ok(value)
}

/// `--seq-len`: a positive L ≤ [`MAX_SEQ_LEN`].
pub fn parse_seq_len(text: &str) -> Result<usize, String> {
    parse_bounded(text, "L", check_seq_len)
}

/// `--vocab`: a positive V ≤ [`MAX_VOCAB`].
pub fn parse_vocab(text: &str) -> Result<usize, String> {
    parse_bounded(text, "V", check_vocab)
}

/// `--batch`: a positive B ≤ [`MAX_BATCH`].
pub fn parse_batch(text: &str) -> Result<usize, String> {
    parse_bounded(text, "the batch", check_batch)
}

/// What a model will be used for, which sets how many copies of it memory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Sampling, evaluation, forward passes, import: the weights (and, while loading, the
    /// file's bytes), one block's activations at a time.
    Inference,
    /// Training: online weights, EMA, gradients and two AdamW moments, plus the activations
    /// of every block kept for the backward pass.
    Training,
}

/// Estimated bytes a model of `config` needs for `batch` sequences (f64: no overflow for any
/// config, however absurd).
pub fn estimate_bytes(config: &ModelConfig, batch: usize, usage: Use) -> f64 {
    let params = config.num_params_f64();
    let (b, l, v, d, h, n) = (
        batch.max(1) as f64,
        config.seq_len as f64,
        config.vocab_size as f64,
        config.d_model as f64,
        config.n_heads as f64,
        config.n_blocks as f64,
    );
    // Per block: ~16 d-wide activations per position and the attention scores.
    let block = b * l * d * 16.0 + b * h * l * l * 2.0;
    // Inputs, logits and their softmax: a few V-wide tensors per position.
    let ends = b * l * v * 4.0;
    let floats = match usage {
        Use::Inference => params * 2.0 + block + ends,
        Use::Training => params * 5.0 + block * n + ends * 2.0,
    };
    floats * 4.0
}

/// The memory this machine has available now, when the platform tells (Linux: `MemAvailable`
/// of `/proc/meminfo`).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Refuses a model whose estimated memory (weights and activations, see [`estimate_bytes`])
/// exceeds what the machine has available.
pub fn check_memory(config: &ModelConfig, batch: usize, usage: Use) -> Result<(), String> {
    let Some(available) = available_memory() else {
        return Ok(());
    };
    let needed = estimate_bytes(config, batch, usage);
    if needed > available as f64 {
        let gib = |bytes: f64| bytes / (1u64 << 30) as f64;
        return Err(format!(
            "this model needs about {:.1} GiB for {} ({:.3e} parameters, d={}, {} blocks, \
             L={}, V={}, batch {}), but only {:.1} GiB of memory is available\n  hint: use a \
             smaller model, sequence length, vocabulary or batch",
            gib(needed),
            match usage {
                Use::Inference => "inference",
                Use::Training => "training",
            },
            config.num_params_f64(),
            config.d_model,
            config.n_blocks,
            config.seq_len,
            config.vocab_size,
            batch,
            gib(available as f64),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelPreset;

    #[test]
    fn flags_parse_within_their_bounds() {
        assert_eq!(parse_seq_len("128"), Ok(128));
        assert_eq!(parse_seq_len("8192"), Ok(8192));
        let error = parse_seq_len("100000000").unwrap_err();
        assert!(
            error.contains("8192") && error.contains("attention"),
            "{error}"
        );
        assert!(parse_vocab("4000000000").unwrap_err().contains("262144"));
        assert!(parse_batch("1000000000").unwrap_err().contains("65536"));
        assert!(parse_batch("0").is_err());
        assert!(parse_batch("ten").is_err());
    }

    #[test]
    fn presets_fit_and_giants_do_not() {
        let tiny = ModelConfig::from_preset(ModelPreset::Tiny, 2048, 128);
        assert!(estimate_bytes(&tiny, 16, Use::Training) < 1e9);
        let giant = ModelConfig {
            d_model: 8192,
            n_blocks: 128,
            ..tiny
        };
        check_model(&giant).unwrap();
        assert!(estimate_bytes(&giant, 1, Use::Inference) > 5e11);
    }
}
