//! Property tests of the loaders a user's files reach (issue 17): `config.json`,
//! `tokenizer.json`, safetensors weights, the token cache and the official-checkpoint
//! importer. Random bytes and randomly mutated valid files must give `Ok` or a readable
//! error, never a panic. Few cases each, so CI spends seconds; `PROPTEST_CASES=N` runs more
//! (the long runs are reported in issue 17's closing note).

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

/// A directory of its own for each test thread, reused by its cases (which run one after
/// another), so long runs with `PROPTEST_CASES` do not litter the temp dir.
fn case_dir() -> PathBuf {
    thread_local! {
        static DIR: PathBuf = {
            let dir = std::env::temp_dir().join(format!(
                "flm-robustness-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ).replace(['(', ')'], ""));
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };
    }
    DIR.with(PathBuf::clone)
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

/// The token cache of a few ids, as `flm train` writes it.
fn token_cache_bytes() -> Vec<u8> {
    let path = case_dir().join("tokens.bin");
    crate::data::token_cache::write(&path, cache_key(), &[4, 5, 6, 7, 8, 9, 4, 5]).unwrap();
    std::fs::read(path).unwrap()
}

fn cache_key() -> crate::data::token_cache::CacheKey {
    crate::data::token_cache::CacheKey {
        tokenizer_fingerprint: 7,
        source_len: 8,
        source_hash: 9,
    }
}

/// Whatever the bytes, a cache read is `None` or ids that fill the file exactly.
fn load_token_cache_from(bytes: &[u8]) {
    let path = case_dir().join("tokens.bin");
    std::fs::write(&path, bytes).unwrap();
    if let Some(ids) = crate::data::token_cache::read(&path, cache_key()) {
        assert_eq!(
            crate::data::token_cache::HEADER_BYTES + 4 * ids.len(),
            bytes.len()
        );
    }
}

/// A Lightning checkpoint written by the paper's code (`tests/fixtures/official-dit`).
fn official_checkpoint_bytes() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/official-dit/flm.ckpt"
    ))
    .unwrap()
}

/// Opens the file as `flm import` does and reads every tensor it names.
fn import_official_from(bytes: &[u8]) {
    use crate::import::source::OfficialSource;
    let file = case_dir().join("model.ckpt");
    std::fs::write(&file, bytes).unwrap();
    if let Ok(source) = OfficialSource::open(&file, crate::train::WeightSet::Ema, None) {
        for name in source.tensors.keys() {
            let _ = source.read(name);
        }
    }
}

/// 48 cases per property unless `PROPTEST_CASES` says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn token_cache_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load_token_cache_from(&bytes);
    }

    #[test]
    fn token_cache_never_panics_when_mutated(bytes in mutated(token_cache_bytes())) {
        load_token_cache_from(&bytes);
    }

    #[test]
    fn official_checkpoint_import_never_panics_when_mutated(bytes in mutated(official_checkpoint_bytes())) {
        import_official_from(&bytes);
    }

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
