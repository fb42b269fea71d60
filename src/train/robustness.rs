//! Property tests of the loaders a user's files reach (issue 17): `config.json`,
//! `tokenizer.json` and safetensors weights. Random bytes and randomly mutated valid files
//! must give `Ok` or a readable error, never a panic. Few cases each, so CI spends seconds.

use std::path::PathBuf;

use proptest::prelude::*;

use super::checkpoint::{RunDir, load_config, load_weights, model_bytes};
use super::config::{DataConfig, ModelKind, RunConfig, SCHEMA_VERSION, TrainConfig};
use crate::data::{TextTokenizer, TokenizerKind};
use crate::device::cpu_device;
use crate::model::{Dit, ModelConfig, ModelPreset};

fn micro_config() -> RunConfig {
    let model = ModelConfig {
        d_model: 16,
        n_blocks: 1,
        n_heads: 2,
        cond_dim: 8,
        time_features: 8,
        ..ModelConfig::from_preset(ModelPreset::Micro, 12, 8)
    };
    RunConfig {
        schema_version: SCHEMA_VERSION,
        kind: ModelKind::Flm,
        model,
        data: DataConfig {
            source: "builtin:repeat".into(),
            valid: None,
            tokenizer: TokenizerKind::Char,
            vocab_size: 12,
            seq_len: 8,
        },
        train: TrainConfig::default(),
        distill: None,
        imported_from: None,
        created_with: "flm test".into(),
    }
}

/// A directory of its own for each case (cases may run on several threads).
fn case_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "flm-robustness-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `valid` with some bytes overwritten, some removed and the end cut off.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    (
        proptest::collection::vec((0..len, any::<u8>()), 1..8),
        0..len,
        0..=len,
    )
        .prop_map(move |(writes, remove, cut)| {
            let mut bytes = valid.clone();
            for (at, byte) in writes {
                bytes[at] = byte;
            }
            bytes.remove(remove);
            bytes.truncate(cut);
            bytes
        })
}

/// A valid config.json with one number replaced by an arbitrary one (sizes included).
fn config_with_a_wild_number() -> impl Strategy<Value = Vec<u8>> {
    let fields = [
        "vocab_size",
        "seq_len",
        "d_model",
        "n_blocks",
        "n_heads",
        "cond_dim",
    ];
    (0..fields.len(), any::<u64>(), any::<bool>()).prop_map(move |(field, value, data)| {
        let mut json = serde_json::to_value(micro_config()).unwrap();
        let section = if data && field < 2 { "data" } else { "model" };
        json[section][fields[field]] = value.into();
        serde_json::to_vec(&json).unwrap()
    })
}

fn tokenizer_bytes() -> Vec<u8> {
    let dir = case_dir();
    let tokenizer = TextTokenizer::train(TokenizerKind::Char, "a small text", 64).unwrap();
    tokenizer.save(&dir.join("tokenizer.json")).unwrap();
    std::fs::read(dir.join("tokenizer.json")).unwrap()
}

fn weights_bytes() -> Vec<u8> {
    model_bytes(&Dit::new(&micro_config().model, 0, &cpu_device()))
}

fn load_config_from(bytes: &[u8]) {
    let dir = case_dir();
    std::fs::write(dir.join("config.json"), bytes).unwrap();
    let _ = load_config(&RunDir::new(&dir));
}

fn load_tokenizer_from(bytes: &[u8]) {
    let file = case_dir().join("tokenizer.json");
    std::fs::write(&file, bytes).unwrap();
    let _ = TextTokenizer::load(&file);
}

fn load_weights_from(bytes: &[u8]) {
    let file = case_dir().join("model.safetensors");
    std::fs::write(&file, bytes).unwrap();
    let _ = load_weights(&file, &micro_config(), &cpu_device());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn config_json_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load_config_from(&bytes);
    }

    #[test]
    fn config_json_never_panics_when_mutated(bytes in mutated(serde_json::to_vec(&micro_config()).unwrap())) {
        load_config_from(&bytes);
    }

    #[test]
    fn config_json_never_panics_on_wild_sizes(bytes in config_with_a_wild_number()) {
        load_config_from(&bytes);
    }

    #[test]
    fn tokenizer_json_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load_tokenizer_from(&bytes);
    }

    #[test]
    fn tokenizer_json_never_panics_when_mutated(bytes in mutated(tokenizer_bytes())) {
        load_tokenizer_from(&bytes);
    }

    #[test]
    fn safetensors_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load_weights_from(&bytes);
    }

    #[test]
    fn safetensors_never_panic_when_mutated(bytes in mutated(weights_bytes())) {
        load_weights_from(&bytes);
    }
}
