//! A look at training data before any training: what the Data view (and `flm info`-style
//! tools) show so a user can judge size and tokenization before spending minutes on a run.

use std::path::Path;

use super::DataError;
use super::corpus::{CorpusStats, TokenCounts, load_text};
use super::tasks::BuiltinTask;
use super::tokenizer::{TextTokenizer, TokenizerKind};
use crate::rng::stream_rng;

/// The tokenizer a run on this data would train, and what it makes of the text.
#[derive(Debug, Clone)]
pub struct DataPreview {
    /// `builtin:<task>` or the file's path, as a run's config stores it.
    pub source: String,
    /// One sentence on what the data is.
    pub description: String,
    pub tokenizer: TextTokenizer,
    pub stats: CorpusStats,
    /// The first few hundred characters, as the model will see them after decoding.
    pub excerpt: String,
}

/// Sequences generated to describe a built-in task: enough for stable frequencies.
const TASK_PREVIEW_SEQUENCES: usize = 256;
const EXCERPT_CHARS: usize = 400;

/// Previews `source` (`builtin:<task>` or a text file) with the tokenizer a run would use.
/// Built-in tasks always use their own character tokenizer, whatever `kind` says.
pub fn preview_data(
    source: &str,
    kind: TokenizerKind,
    vocab_size: usize,
) -> Result<DataPreview, DataError> {
    match BuiltinTask::parse(source) {
        Some(task) => Ok(preview_task(task?)),
        None => preview_file(Path::new(source), kind, vocab_size),
    }
}

fn preview_task(task: BuiltinTask) -> DataPreview {
    let tokenizer = task.tokenizer();
    let seq_len = BuiltinTask::DEFAULT_SEQ_LEN;
    let mut rng = stream_rng(0, 0);
    let ids = task.batch(&tokenizer, &mut rng, TASK_PREVIEW_SEQUENCES, seq_len);
    let text: String = ids
        .chunks(seq_len)
        .map(|sequence| tokenizer.decode(sequence) + "\n")
        .collect();
    DataPreview {
        source: format!("builtin:{}", task.name()),
        description: format!(
            "{} (generated on the fly; {TASK_PREVIEW_SEQUENCES} example sequences of {seq_len} tokens below)",
            task.description()
        ),
        stats: CorpusStats::compute(&text, &ids, &tokenizer),
        excerpt: excerpt(&text),
        tokenizer,
    }
}

fn preview_file(
    path: &Path,
    kind: TokenizerKind,
    vocab_size: usize,
) -> Result<DataPreview, DataError> {
    let text = load_text(path)?;
    let tokenizer = TextTokenizer::train(kind, &text, vocab_size)?;
    // Counted piece by piece: a big file's ids would outweigh the text itself.
    let mut counts = TokenCounts::new(tokenizer.vocab_size());
    tokenizer.encode_in_pieces(&text, |ids| {
        counts.add(ids);
        Ok(())
    })?;
    Ok(DataPreview {
        source: path.display().to_string(),
        description: format!(
            "text file, {kind} tokenizer with {} tokens",
            tokenizer.vocab_size()
        ),
        stats: CorpusStats::of_text(&text).with_tokens(&counts, &tokenizer),
        excerpt: excerpt(&text),
        tokenizer,
    })
}

fn excerpt(text: &str) -> String {
    text.chars().take(EXCERPT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{sonnets_path, unique_temp_dir};

    #[test]
    fn builtin_repeat_preview_counts_the_generated_letters() {
        let preview = preview_data("builtin:repeat", TokenizerKind::Bpe, 2048).unwrap();
        assert_eq!(preview.source, "builtin:repeat");
        assert_eq!(preview.tokenizer.kind(), TokenizerKind::Char);
        let seq_len = BuiltinTask::DEFAULT_SEQ_LEN as u64;
        assert_eq!(
            preview.stats.tokens,
            TASK_PREVIEW_SEQUENCES as u64 * seq_len
        );
        assert_eq!(preview.stats.lines, TASK_PREVIEW_SEQUENCES as u64);
        // Every line is one letter repeated.
        let first = preview.excerpt.lines().next().unwrap();
        assert_eq!(first.chars().count() as u64, seq_len);
        assert!(first.chars().all(|c| c == first.chars().next().unwrap()));
    }

    #[test]
    fn text_preview_trains_the_requested_tokenizer() {
        let path = sonnets_path();
        let preview = preview_data(path.to_str().unwrap(), TokenizerKind::Bpe, 512).unwrap();
        assert!(preview.tokenizer.vocab_size() <= 512);
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert_eq!(preview.stats.bytes, bytes);
        assert!(
            preview.stats.bytes_per_token > 1.5,
            "BPE should compress: {}",
            preview.stats.bytes_per_token
        );
        assert!(preview.excerpt.chars().count() <= EXCERPT_CHARS);
    }

    #[test]
    fn a_binary_file_is_refused_with_its_reason() {
        let path = unique_temp_dir("preview-binary").join("image.bin");
        std::fs::write(&path, [0u8, 159, 146, 150, 0, 0, 1, 2]).unwrap();
        let error = preview_data(path.to_str().unwrap(), TokenizerKind::Bpe, 512).unwrap_err();
        assert!(matches!(error, DataError::Binary { .. }), "{error}");
    }
}
