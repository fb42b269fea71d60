//! Turning text files into training data: tokenize once, cache the ids in the
//! run directory, split off validation data and pack fixed-length sequences.

use std::path::Path;

use rand::Rng;

use super::corpus::{CorpusStats, TokenCounts, check_long_enough, load_text};
use super::tokenizer::{TextTokenizer, TokenizerKind};
use super::words::Lexicon;
use super::{DataError, token_cache};

/// File names inside a run directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TRAIN_CACHE_FILE: &str = "tokens-train.bin";
pub const VALID_CACHE_FILE: &str = "tokens-valid.bin";

/// Share of the training tokens held out when no validation file is given.
const HELD_OUT_PERCENT: usize = 5;

/// Token ids cut into equal, non-overlapping sequences stored back to back,
/// so a batch is a few slice copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedSequences {
    seq_len: usize,
    /// Always a multiple of `seq_len` long.
    ids: Vec<u32>,
}

impl PackedSequences {
    /// Non-overlapping windows of `seq_len` tokens; the incomplete tail is dropped.
    pub fn pack(tokens: &[u32], seq_len: usize) -> Self {
        Self::from_flat(tokens.to_vec(), seq_len)
    }

    /// Like [`PackedSequences::pack`] but reuses the buffer (no copy of big corpora).
    pub fn from_flat(mut ids: Vec<u32>, seq_len: usize) -> Self {
        let kept = ids.len().checked_div(seq_len).unwrap_or(0) * seq_len;
        ids.truncate(kept);
        Self { seq_len, ids }
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.ids.len().checked_div(self.seq_len).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// All sequences back to back.
    pub fn as_flat(&self) -> &[u32] {
        &self.ids
    }

    /// Sequence `i`. Panics if `i >= len()`, like slice indexing.
    pub fn sequence(&self, i: usize) -> &[u32] {
        &self.ids[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// A reproducible random batch: `batch_size` random sequence indices drawn
    /// from `rng`, flattened (batch_size * seq_len ids). Empty if the set is.
    pub fn random_batch(&self, rng: &mut impl Rng, batch_size: usize) -> Vec<u32> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut batch = Vec::with_capacity(batch_size * self.seq_len);
        for _ in 0..batch_size {
            let index = rng.random_range(0..self.len());
            batch.extend_from_slice(self.sequence(index));
        }
        batch
    }

    /// Deterministic batches covering the set in order (for validation), at
    /// most `max_batches`. The last batch may hold fewer than `batch_size`
    /// sequences, so that every sequence is covered.
    pub fn ordered_batches(&self, batch_size: usize, max_batches: usize) -> Vec<Vec<u32>> {
        if batch_size == 0 || self.is_empty() {
            return Vec::new();
        }
        self.ids
            .chunks(batch_size * self.seq_len)
            .take(max_batches)
            .map(<[u32]>::to_vec)
            .collect()
    }
}

/// Everything training needs from a text corpus.
#[derive(Debug, Clone)]
pub struct TextDataset {
    pub tokenizer: TextTokenizer,
    pub train: PackedSequences,
    pub valid: PackedSequences,
    /// Statistics of the whole training file (before the validation split).
    pub stats: CorpusStats,
    /// The words of the training file, to tell real words from soup in samples.
    pub lexicon: Lexicon,
}

/// What to prepare: the user's choices from the CLI or GUI.
#[derive(Debug, Clone, Copy)]
pub struct TextDatasetSpec<'a> {
    pub train_path: &'a Path,
    pub valid_path: Option<&'a Path>,
    pub tokenizer_kind: TokenizerKind,
    /// Upper bound; a BPE trained on little text may end up smaller.
    pub vocab_size: usize,
    pub seq_len: usize,
}

/// Loads and tokenizes text into `run_dir`. The tokenizer is trained once and
/// saved as `tokenizer.json` (an existing one is reused, so resuming never
/// retrains). Token ids of each source file are cached in `tokens-train.bin`
/// and `tokens-valid.bin`, keyed by tokenizer fingerprint and the source's
/// length and content hash; a stale or corrupt cache is silently rebuilt.
/// Validation data is the valid file when given, else the last 5% of the
/// training tokens; each side needs at least one full sequence.
pub fn prepare_text_dataset(
    spec: &TextDatasetSpec,
    run_dir: &Path,
) -> Result<TextDataset, DataError> {
    if spec.seq_len == 0 {
        return Err(DataError::ZeroSeqLen);
    }
    crate::limits::check_seq_len("the sequence length", spec.seq_len)
        .map_err(DataError::TooLarge)?;
    crate::limits::check_vocab("the vocabulary size", spec.vocab_size)
        .map_err(DataError::TooLarge)?;
    std::fs::create_dir_all(run_dir).map_err(|source| DataError::Write {
        path: run_dir.to_path_buf(),
        error: source,
    })?;
    let (tokenizer, train_ids, stats, lexicon) = tokenize_training_file(spec, run_dir)?;
    let (train_ids, valid_ids) = match spec.valid_path {
        Some(valid_path) => {
            let cache_path = run_dir.join(VALID_CACHE_FILE);
            let valid_ids = token_cache::ids_of(&tokenizer, load_text(valid_path)?, &cache_path)?;
            (train_ids, valid_ids)
        }
        None => hold_out_tail(train_ids, spec.seq_len)?,
    };
    check_long_enough(train_ids.len(), spec.seq_len, "training text")?;
    check_long_enough(valid_ids.len(), spec.seq_len, "validation text")?;
    Ok(TextDataset {
        tokenizer,
        train: PackedSequences::from_flat(train_ids, spec.seq_len),
        valid: PackedSequences::from_flat(valid_ids, spec.seq_len),
        stats,
        lexicon,
    })
}

/// Loads the training text, gets its tokenizer and ids, and computes its statistics and word
/// list. The text is dropped before the ids are read, so only one of them (the ids, up to 4×
/// larger) is ever in memory in full.
fn tokenize_training_file(
    spec: &TextDatasetSpec,
    run_dir: &Path,
) -> Result<(TextTokenizer, Vec<u32>, CorpusStats, Lexicon), DataError> {
    let text = load_text(spec.train_path)?;
    let tokenizer = load_or_train_tokenizer(spec, &text, run_dir)?;
    let lexicon = Lexicon::from_text(&text);
    let text_stats = CorpusStats::of_text(&text);
    let ids = token_cache::ids_of(&tokenizer, text, &run_dir.join(TRAIN_CACHE_FILE))?;
    let mut counts = TokenCounts::new(tokenizer.vocab_size());
    counts.add(&ids);
    let stats = text_stats.with_tokens(&counts, &tokenizer);
    Ok((tokenizer, ids, stats, lexicon))
}

/// Reuses the run's tokenizer when there is one: a model trained with it
/// would be meaningless under a retrained one.
fn load_or_train_tokenizer(
    spec: &TextDatasetSpec,
    text: &str,
    run_dir: &Path,
) -> Result<TextTokenizer, DataError> {
    let path = run_dir.join(TOKENIZER_FILE);
    if path.exists() {
        let tokenizer = TextTokenizer::load(&path)?;
        if tokenizer.kind() != spec.tokenizer_kind {
            return Err(DataError::TokenizerMismatch {
                path,
                expected: spec.tokenizer_kind,
                found: tokenizer.kind(),
            });
        }
        return Ok(tokenizer);
    }
    let tokenizer = TextTokenizer::train(spec.tokenizer_kind, text, spec.vocab_size)?;
    tokenizer.save(&path)?;
    Ok(tokenizer)
}

/// Splits the last 5% of the tokens (at least one sequence) off for validation.
fn hold_out_tail(mut ids: Vec<u32>, seq_len: usize) -> Result<(Vec<u32>, Vec<u32>), DataError> {
    let needed = 2 * seq_len;
    if ids.len() < needed {
        return Err(DataError::TooShort {
            tokens: ids.len(),
            needed,
            what: "training text (with no validation file, 5% of it is held out for validation)"
                .to_string(),
        });
    }
    let held_out = (ids.len() * HELD_OUT_PERCENT).div_ceil(100).max(seq_len);
    let valid = ids.split_off(ids.len() - held_out);
    Ok((ids, valid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{sonnets_path, unique_temp_dir};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::path::PathBuf;

    fn spec<'a>(train_path: &'a Path, valid_path: Option<&'a Path>) -> TextDatasetSpec<'a> {
        TextDatasetSpec {
            train_path,
            valid_path,
            tokenizer_kind: TokenizerKind::Bpe,
            vocab_size: 400,
            seq_len: 64,
        }
    }

    fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn pack_drops_the_incomplete_tail() {
        let tokens: Vec<u32> = (0..10).collect();
        let packed = PackedSequences::pack(&tokens, 3);
        assert_eq!(packed.len(), 3);
        assert_eq!(packed.seq_len(), 3);
        assert_eq!(packed.sequence(0), &[0, 1, 2]);
        assert_eq!(packed.sequence(2), &[6, 7, 8]);
        assert_eq!(packed.as_flat().len(), 9);
    }

    #[test]
    fn packing_too_few_tokens_or_zero_length_is_empty() {
        assert!(PackedSequences::pack(&[1, 2], 3).is_empty());
        assert!(PackedSequences::pack(&[1, 2], 0).is_empty());
        let empty = PackedSequences::from_flat(Vec::new(), 4);
        assert!(
            empty
                .random_batch(&mut ChaCha8Rng::seed_from_u64(0), 8)
                .is_empty()
        );
        assert!(empty.ordered_batches(8, 10).is_empty());
    }

    #[test]
    fn random_batches_have_the_right_shape_and_repeat_per_seed() {
        let tokens: Vec<u32> = (0..1000).collect();
        let packed = PackedSequences::pack(&tokens, 10);
        let batch = |seed| packed.random_batch(&mut ChaCha8Rng::seed_from_u64(seed), 4);
        let first = batch(7);
        assert_eq!(first.len(), 40);
        assert_eq!(first, batch(7));
        assert_ne!(first, batch(8));
        // Every row is one whole packed sequence.
        for row in first.chunks(10) {
            assert_eq!(row[0] % 10, 0);
            assert!(row.windows(2).all(|w| w[1] == w[0] + 1));
        }
    }

    #[test]
    fn ordered_batches_cover_the_set_in_order() {
        let tokens: Vec<u32> = (0..50).collect();
        let packed = PackedSequences::pack(&tokens, 5); // 10 sequences
        let batches = packed.ordered_batches(4, 100);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [20, 20, 10]);
        assert_eq!(batches.concat(), tokens);
        assert_eq!(packed.ordered_batches(4, 2).len(), 2);
    }

    #[test]
    fn holds_out_the_last_five_percent_of_tokens() {
        let dir = unique_temp_dir("ds-split");
        let sonnets = sonnets_path();
        let spec = spec(&sonnets, None);
        let dataset = prepare_text_dataset(&spec, &dir).unwrap();
        let total = dataset.stats.tokens as usize;
        let held_out = (total * 5).div_ceil(100);
        assert_eq!(dataset.valid.len(), held_out / 64);
        assert_eq!(dataset.train.len(), (total - held_out) / 64);
        assert!(!dataset.valid.is_empty() && dataset.train.len() > dataset.valid.len());
        assert_eq!(dataset.train.seq_len(), 64);
    }

    #[test]
    fn validation_file_is_used_when_given() {
        let dir = unique_temp_dir("ds-valid");
        let text = load_text(&sonnets_path()).unwrap();
        let (train_part, valid_part) = text.split_at(text.len() * 4 / 5);
        let train_path = write_file(&dir, "train.txt", train_part);
        let valid_path = write_file(&dir, "valid.txt", valid_part);
        let spec = spec(&train_path, Some(&valid_path));
        let dataset = prepare_text_dataset(&spec, &dir.join("run")).unwrap();
        let valid_ids = dataset.tokenizer.encode(valid_part).unwrap();
        assert_eq!(dataset.valid.len(), valid_ids.len() / 64);
        assert_eq!(dataset.valid.sequence(0), &valid_ids[..64]);
        assert_eq!(dataset.train.len(), dataset.stats.tokens as usize / 64);
        assert!(dir.join("run").join(VALID_CACHE_FILE).exists());
    }

    #[test]
    fn second_prepare_reuses_tokenizer_and_cache() {
        let dir = unique_temp_dir("ds-reuse");
        let sonnets = sonnets_path();
        let spec = spec(&sonnets, None);
        let first = prepare_text_dataset(&spec, &dir).unwrap();
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let modified = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        let tokenizer_time = modified(&tokenizer_path);
        let cache_time = modified(&dir.join(TRAIN_CACHE_FILE));
        // A different vocab size would give a different tokenizer if retrained.
        let resumed_spec = TextDatasetSpec {
            vocab_size: 300,
            ..spec
        };
        let second = prepare_text_dataset(&resumed_spec, &dir).unwrap();
        assert_eq!(
            second.tokenizer.fingerprint(),
            first.tokenizer.fingerprint()
        );
        assert_eq!(modified(&tokenizer_path), tokenizer_time);
        assert_eq!(modified(&dir.join(TRAIN_CACHE_FILE)), cache_time);
        assert_eq!(second.train, first.train);
        assert_eq!(second.valid, first.valid);
    }

    #[test]
    fn corrupt_cache_is_silently_rebuilt() {
        let dir = unique_temp_dir("ds-corrupt");
        let sonnets = sonnets_path();
        let spec = spec(&sonnets, None);
        let first = prepare_text_dataset(&spec, &dir).unwrap();
        let cache = dir.join(TRAIN_CACHE_FILE);
        let mut bytes = std::fs::read(&cache).unwrap();
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&cache, &bytes).unwrap();
        let second = prepare_text_dataset(&spec, &dir).unwrap();
        assert_eq!(second.train, first.train);
        let rebuilt = std::fs::read(&cache).unwrap();
        assert_eq!(
            rebuilt.len(),
            token_cache::HEADER_BYTES + 4 * first.stats.tokens as usize
        );
    }

    #[test]
    fn changed_source_text_invalidates_the_cache() {
        let dir = unique_temp_dir("ds-stale");
        let text = load_text(&sonnets_path()).unwrap();
        let train_path = write_file(&dir, "train.txt", &text);
        let spec = spec(&train_path, None);
        let first = prepare_text_dataset(&spec, &dir.join("run")).unwrap();
        write_file(&dir, "train.txt", &text.replace("love", "hate"));
        let second = prepare_text_dataset(&spec, &dir.join("run")).unwrap();
        assert_ne!(second.train, first.train);
        assert_eq!(
            second.tokenizer.fingerprint(),
            first.tokenizer.fingerprint()
        );
    }

    #[test]
    fn too_short_text_is_reported() {
        let dir = unique_temp_dir("ds-short");
        let train_path = write_file(&dir, "train.txt", "just a few words\n");
        let mut spec = spec(&train_path, None);
        spec.tokenizer_kind = TokenizerKind::Char;
        let err = prepare_text_dataset(&spec, &dir.join("run")).unwrap_err();
        assert!(
            matches!(err, DataError::TooShort { needed: 128, .. }),
            "{err}"
        );
    }

    #[test]
    fn too_short_validation_file_is_reported() {
        let dir = unique_temp_dir("ds-short-valid");
        let valid_path = write_file(&dir, "valid.txt", "tiny\n");
        let sonnets = sonnets_path();
        let spec = spec(&sonnets, Some(&valid_path));
        match prepare_text_dataset(&spec, &dir.join("run")) {
            Err(DataError::TooShort { what, .. }) => assert_eq!(what, "validation text"),
            other => panic!("expected TooShort, got {other:?}"),
        }
    }

    #[test]
    fn resuming_with_another_tokenizer_kind_is_an_error() {
        let dir = unique_temp_dir("ds-kind");
        let sonnets = sonnets_path();
        let spec = spec(&sonnets, None);
        prepare_text_dataset(&spec, &dir).unwrap();
        let char_spec = TextDatasetSpec {
            tokenizer_kind: TokenizerKind::Char,
            ..spec
        };
        assert!(matches!(
            prepare_text_dataset(&char_spec, &dir),
            Err(DataError::TokenizerMismatch { .. })
        ));
    }

    #[test]
    fn zero_sequence_length_is_rejected() {
        let dir = unique_temp_dir("ds-zero");
        let sonnets = sonnets_path();
        let mut spec = spec(&sonnets, None);
        spec.seq_len = 0;
        assert!(matches!(
            prepare_text_dataset(&spec, &dir),
            Err(DataError::ZeroSeqLen)
        ));
    }
}
