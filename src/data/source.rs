//! Where training batches come from: a tokenized text corpus or a built-in task that
//! generates fresh sequences for every batch.

use rand::Rng;

use super::dataset::TextDataset;
use super::tasks::BuiltinTask;
use super::tokenizer::TextTokenizer;
use super::words::Lexicon;
use crate::rng::stream_rng;

/// Training and validation data for one run.
pub enum DataSource {
    Text(TextDataset),
    Task {
        task: BuiltinTask,
        tokenizer: TextTokenizer,
        seq_len: usize,
    },
}

/// Validation batches for built-in tasks come from this fixed stream of the run's seed.
const VALID_STREAM: u64 = u64::MAX - 1;

impl DataSource {
    pub fn tokenizer(&self) -> &TextTokenizer {
        match self {
            DataSource::Text(dataset) => &dataset.tokenizer,
            DataSource::Task { tokenizer, .. } => tokenizer,
        }
    }

    pub fn seq_len(&self) -> usize {
        match self {
            DataSource::Text(dataset) => dataset.train.seq_len(),
            DataSource::Task { seq_len, .. } => *seq_len,
        }
    }

    /// The words of the training text (text corpora only).
    pub fn lexicon(&self) -> Option<&Lexicon> {
        match self {
            DataSource::Text(dataset) => Some(&dataset.lexicon),
            DataSource::Task { .. } => None,
        }
    }

    pub fn task(&self) -> Option<BuiltinTask> {
        match self {
            DataSource::Text(_) => None,
            DataSource::Task { task, .. } => Some(*task),
        }
    }

    /// A training batch (B·L token ids) drawn with `rng`.
    pub fn train_batch(&self, rng: &mut impl Rng, batch_size: usize) -> Vec<u32> {
        match self {
            DataSource::Text(dataset) => dataset.train.random_batch(rng, batch_size),
            DataSource::Task {
                task,
                tokenizer,
                seq_len,
            } => task.batch(tokenizer, rng, batch_size, *seq_len),
        }
    }

    /// The same validation batches every time they are asked for.
    pub fn valid_batches(&self, seed: u64, batch_size: usize, max_batches: usize) -> Vec<Vec<u32>> {
        match self {
            DataSource::Text(dataset) => dataset.valid.ordered_batches(batch_size, max_batches),
            DataSource::Task {
                task,
                tokenizer,
                seq_len,
            } => {
                let mut rng = stream_rng(seed, VALID_STREAM);
                (0..max_batches)
                    .map(|_| task.batch(tokenizer, &mut rng, batch_size, *seq_len))
                    .collect()
            }
        }
    }

    /// Whether `ids` is a correct sequence, for built-in tasks.
    pub fn is_valid(&self, ids: &[u32]) -> Option<bool> {
        match self {
            DataSource::Text(_) => None,
            DataSource::Task {
                task, tokenizer, ..
            } => Some(task.is_valid(tokenizer, ids)),
        }
    }
}
