//! Built-in synthetic tasks: generated data (no files needed) with an exact
//! validity check, so a model's samples can be scored objectively.
//!
//! Both tasks use [`BuiltinTask::tokenizer`]: a char tokenizer over 'a'..='z'
//! whose vocabulary is 3 specials + `<unk>` + 26 letters, so V = 30 and the
//! letters are ids 4..=29 in alphabetical order.

use rand::Rng;

use super::DataError;
use super::tokenizer::TextTokenizer;

/// Spec strings naming a built-in task start with this, e.g. `builtin:repeat`.
const SPEC_PREFIX: &str = "builtin:";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltinTask {
    /// One letter repeated: every position depends on the same hidden choice.
    Repeat,
    /// Random letters in sorted order: validity is a global property.
    Sorted,
}

impl BuiltinTask {
    pub const ALL: [BuiltinTask; 2] = [BuiltinTask::Repeat, BuiltinTask::Sorted];
    pub const DEFAULT_SEQ_LEN: usize = 32;

    /// `Some` when `spec` names a built-in task (`builtin:NAME`), valid or
    /// not; `None` when it is something else, such as a file path.
    pub fn parse(spec: &str) -> Option<Result<Self, DataError>> {
        let name = spec.trim().strip_prefix(SPEC_PREFIX)?;
        let task = Self::ALL.into_iter().find(|task| task.name() == name);
        Some(task.ok_or_else(|| DataError::UnknownTask {
            name: name.to_string(),
            valid: Self::valid_specs(),
        }))
    }

    pub fn name(&self) -> &'static str {
        match self {
            BuiltinTask::Repeat => "repeat",
            BuiltinTask::Sorted => "sorted",
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            BuiltinTask::Repeat => {
                "one random letter repeated over the whole sequence (e.g. \"kkkk\"); a model that \
                 samples each position independently mixes letters, a flow map does not"
            }
            BuiltinTask::Sorted => {
                "random letters sorted ascending (e.g. \"aceeq\"); valid only if the whole \
                 sequence is in order"
            }
        }
    }

    /// The characters the task's sequences are made of.
    pub fn alphabet(&self) -> Vec<char> {
        ('a'..='z').collect()
    }

    /// The task's char tokenizer (V = 30, see the module docs).
    pub fn tokenizer(&self) -> TextTokenizer {
        TextTokenizer::from_alphabet(&self.alphabet())
            // Cannot fail: the alphabet is non-empty and has no duplicates.
            .expect("built-in alphabet is valid")
    }

    /// One sequence of `seq_len` token ids. Empty if `tokenizer` knows none of
    /// the task's letters (i.e. it is not this task's tokenizer).
    pub fn sample_ids(
        &self,
        tokenizer: &TextTokenizer,
        rng: &mut impl Rng,
        seq_len: usize,
    ) -> Vec<u32> {
        let letter_ids = self.letter_ids(tokenizer);
        if letter_ids.is_empty() {
            return Vec::new();
        }
        let mut pick = || letter_ids[rng.random_range(0..letter_ids.len())];
        match self {
            BuiltinTask::Repeat => vec![pick(); seq_len],
            BuiltinTask::Sorted => {
                // Sorting ranks (not ids) keeps the order alphabetical even for
                // a tokenizer whose ids are not in alphabet order.
                let mut ranks: Vec<usize> = (0..seq_len)
                    .map(|_| rng.random_range(0..letter_ids.len()))
                    .collect();
                ranks.sort_unstable();
                ranks.into_iter().map(|rank| letter_ids[rank]).collect()
            }
        }
    }

    /// `batch_size` independent sequences, flattened.
    pub fn batch(
        &self,
        tokenizer: &TextTokenizer,
        rng: &mut impl Rng,
        batch_size: usize,
        seq_len: usize,
    ) -> Vec<u32> {
        let mut ids = Vec::with_capacity(batch_size * seq_len);
        for _ in 0..batch_size {
            ids.extend(self.sample_ids(tokenizer, rng, seq_len));
        }
        ids
    }

    /// Exact check of one sequence: non-empty, letters only (no specials or
    /// `<unk>`), and one letter throughout (repeat) or never descending (sorted).
    pub fn is_valid(&self, tokenizer: &TextTokenizer, ids: &[u32]) -> bool {
        let Some(ranks) = self.letter_ranks(tokenizer, ids) else {
            return false;
        };
        match self {
            BuiltinTask::Repeat => ranks.windows(2).all(|pair| pair[0] == pair[1]),
            BuiltinTask::Sorted => ranks.windows(2).all(|pair| pair[0] <= pair[1]),
        }
    }

    /// [`BuiltinTask::is_valid`] plus the expected length.
    pub fn is_valid_sequence(
        &self,
        tokenizer: &TextTokenizer,
        ids: &[u32],
        seq_len: usize,
    ) -> bool {
        ids.len() == seq_len && self.is_valid(tokenizer, ids)
    }

    /// Share of the `seq_len`-long sequences in a flattened batch that are
    /// valid: the task's headline metric for generated samples.
    pub fn valid_fraction(
        &self,
        tokenizer: &TextTokenizer,
        flat_ids: &[u32],
        seq_len: usize,
    ) -> f64 {
        if seq_len == 0 || flat_ids.len() < seq_len {
            return 0.0;
        }
        let sequences = flat_ids.chunks_exact(seq_len);
        let total = sequences.len();
        let valid = sequences
            .filter(|ids| self.is_valid(tokenizer, ids))
            .count();
        valid as f64 / total as f64
    }

    /// Ids of the alphabet's letters, in alphabet order.
    fn letter_ids(&self, tokenizer: &TextTokenizer) -> Vec<u32> {
        self.alphabet()
            .iter()
            .filter_map(|c| tokenizer.token_to_id(c.encode_utf8(&mut [0; 4])))
            .collect()
    }

    /// Position of each id in the alphabet; `None` if any id is not a letter
    /// or the sequence is empty.
    fn letter_ranks(&self, tokenizer: &TextTokenizer, ids: &[u32]) -> Option<Vec<usize>> {
        if ids.is_empty() {
            return None;
        }
        let letter_ids = self.letter_ids(tokenizer);
        ids.iter()
            .map(|id| letter_ids.iter().position(|letter| letter == id))
            .collect()
    }

    fn valid_specs() -> String {
        Self::ALL
            .iter()
            .map(|task| format!("{SPEC_PREFIX}{}", task.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const SEQ_LEN: usize = BuiltinTask::DEFAULT_SEQ_LEN;

    fn letter(tokenizer: &TextTokenizer, c: char) -> u32 {
        tokenizer.token_to_id(&c.to_string()).unwrap()
    }

    fn ids_of(tokenizer: &TextTokenizer, text: &str) -> Vec<u32> {
        tokenizer.encode(text).unwrap()
    }

    #[test]
    fn parse_recognises_builtin_specs() {
        assert!(matches!(
            BuiltinTask::parse("builtin:repeat"),
            Some(Ok(BuiltinTask::Repeat))
        ));
        assert!(matches!(
            BuiltinTask::parse(" builtin:sorted "),
            Some(Ok(BuiltinTask::Sorted))
        ));
        assert!(BuiltinTask::parse("notes.txt").is_none());
        assert!(BuiltinTask::parse("repeat").is_none());
    }

    #[test]
    fn parse_lists_valid_names_for_unknown_tasks() {
        match BuiltinTask::parse("builtin:nope") {
            Some(Err(err @ DataError::UnknownTask { .. })) => {
                let message = err.to_string();
                assert!(message.contains("nope"), "{message}");
                assert!(
                    message.contains("builtin:repeat, builtin:sorted"),
                    "{message}"
                );
            }
            other => panic!("expected UnknownTask, got {other:?}"),
        }
    }

    #[test]
    fn task_tokenizer_has_thirty_ids_with_letters_in_order() {
        for task in BuiltinTask::ALL {
            let tokenizer = task.tokenizer();
            assert_eq!(tokenizer.vocab_size(), 30);
            assert_eq!(letter(&tokenizer, 'a'), 4);
            assert_eq!(letter(&tokenizer, 'z'), 29);
        }
    }

    #[test]
    fn names_and_serde_agree() {
        for task in BuiltinTask::ALL {
            let json = serde_json::to_string(&task).unwrap();
            assert_eq!(json, format!("\"{}\"", task.name()));
            assert!(!task.description().is_empty());
        }
    }

    #[test]
    fn generated_sequences_are_always_valid() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for task in BuiltinTask::ALL {
            let tokenizer = task.tokenizer();
            for _ in 0..500 {
                let ids = task.sample_ids(&tokenizer, &mut rng, SEQ_LEN);
                assert!(
                    task.is_valid_sequence(&tokenizer, &ids, SEQ_LEN),
                    "{task:?}: {ids:?}"
                );
            }
        }
    }

    #[test]
    fn uniform_random_sequences_are_almost_never_valid() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for task in BuiltinTask::ALL {
            let tokenizer = task.tokenizer();
            let vocab = tokenizer.vocab_size() as u32;
            let valid = (0..2000)
                .filter(|_| {
                    let ids: Vec<u32> = (0..SEQ_LEN).map(|_| rng.random_range(0..vocab)).collect();
                    task.is_valid(&tokenizer, &ids)
                })
                .count();
            assert_eq!(valid, 0, "{task:?}");
        }
    }

    #[test]
    fn repeat_rejects_mixed_letters_and_specials() {
        let task = BuiltinTask::Repeat;
        let tokenizer = task.tokenizer();
        assert!(task.is_valid(&tokenizer, &ids_of(&tokenizer, "kkkk")));
        assert!(!task.is_valid(&tokenizer, &ids_of(&tokenizer, "kkjk")));
        assert!(!task.is_valid(&tokenizer, &[TextTokenizer::PAD_ID; 4]));
        assert!(!task.is_valid(&tokenizer, &[TextTokenizer::UNK_ID; 4]));
        assert!(!task.is_valid(&tokenizer, &[]));
    }

    #[test]
    fn sorted_rejects_descending_pairs_and_non_letters() {
        let task = BuiltinTask::Sorted;
        let tokenizer = task.tokenizer();
        assert!(task.is_valid(&tokenizer, &ids_of(&tokenizer, "aabxz")));
        assert!(!task.is_valid(&tokenizer, &ids_of(&tokenizer, "abzx")));
        let mut with_eos = ids_of(&tokenizer, "abc");
        with_eos.push(TextTokenizer::EOS_ID);
        assert!(!task.is_valid(&tokenizer, &with_eos));
        assert!(!task.is_valid(&tokenizer, &[999, 999]));
    }

    #[test]
    fn wrong_length_is_rejected() {
        let task = BuiltinTask::Sorted;
        let tokenizer = task.tokenizer();
        let ids = ids_of(&tokenizer, "abc");
        assert!(task.is_valid_sequence(&tokenizer, &ids, 3));
        assert!(!task.is_valid_sequence(&tokenizer, &ids, 4));
    }

    #[test]
    fn batches_are_flat_and_reproducible_per_seed() {
        let task = BuiltinTask::Sorted;
        let tokenizer = task.tokenizer();
        let batch = |seed| task.batch(&tokenizer, &mut ChaCha8Rng::seed_from_u64(seed), 8, SEQ_LEN);
        let first = batch(3);
        assert_eq!(first.len(), 8 * SEQ_LEN);
        assert_eq!(first, batch(3));
        assert_ne!(first, batch(4));
        assert_eq!(task.valid_fraction(&tokenizer, &first, SEQ_LEN), 1.0);
    }

    #[test]
    fn valid_fraction_counts_sequences() {
        let task = BuiltinTask::Repeat;
        let tokenizer = task.tokenizer();
        let ids = ids_of(&tokenizer, "aaaabbbbabab");
        assert!((task.valid_fraction(&tokenizer, &ids, 4) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(task.valid_fraction(&tokenizer, &ids, 0), 0.0);
    }

    #[test]
    fn sample_decodes_to_letters() {
        let task = BuiltinTask::Repeat;
        let tokenizer = task.tokenizer();
        let ids = task.sample_ids(&tokenizer, &mut ChaCha8Rng::seed_from_u64(5), 6);
        let text = tokenizer.decode(&ids);
        assert_eq!(text.len(), 6);
        assert!(text.chars().all(|c| c == text.chars().next().unwrap()));
    }
}
