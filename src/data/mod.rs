//! Everything between a user's text file and batches of token ids: loading,
//! tokenizing, caching, packing and the built-in synthetic tasks.

pub mod corpus;
pub mod dataset;
pub mod preview;
pub mod source;
pub mod tasks;
pub(crate) mod token_cache;
pub mod tokenizer;
pub mod words;

use std::path::PathBuf;

pub use corpus::{CorpusStats, check_long_enough, load_text};
pub use dataset::{PackedSequences, TextDataset, TextDatasetSpec, prepare_text_dataset};
pub use preview::{DataPreview, preview_data};
pub use source::DataSource;
pub use tasks::BuiltinTask;
pub use tokenizer::{TextTokenizer, TokenizerKind};
pub use words::Lexicon;

/// The one error type of the data pipeline. Every message says what went wrong
/// and what the user can do about it, because these reach the CLI and GUI as is.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "file not found: {path}\n  hint: check the path, or use a built-in task such as `builtin:repeat`"
    )]
    NotFound { path: PathBuf },

    // The OS error is in the message and not a `source`, so a cause chain does not print it
    // twice.
    #[error(
        "cannot read {path}: {error}\n  hint: check that the file is readable by you and not locked by another program"
    )]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error(
        "cannot write {path}: {error}\n  hint: check that the disk has free space and the folder is writable"
    )]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error(
        "{path} is {kind}, not a regular file\n  hint: pass the path of a single UTF-8 `.txt` file (flm reads the whole file, so it must be an ordinary file of finite size)"
    )]
    NotRegularFile { path: PathBuf, kind: &'static str },

    #[error(
        "{path} looks like UTF-16 text, not UTF-8\n  hint: convert it to UTF-8, e.g. `iconv -f UTF-16 -t UTF-8 in.txt > out.txt`"
    )]
    Utf16 { path: PathBuf },

    #[error(
        "{path} is a directory, not a text file\n  hint: pass the path of a single UTF-8 `.txt` file"
    )]
    IsDirectory { path: PathBuf },

    #[error("{path} is empty (or only whitespace)\n  hint: give a file with some text in it")]
    Empty { path: PathBuf },

    #[error(
        "{path} looks like a binary file, not text\n  hint: export it as plain UTF-8 text (.txt) first"
    )]
    Binary { path: PathBuf },

    #[error(
        "{path} is not valid UTF-8 at line {line}, column {column} (byte offset {byte_offset})\n  hint: re-save the file as UTF-8 (most editors offer \"Save with encoding\")"
    )]
    InvalidUtf8 {
        path: PathBuf,
        line: usize,
        column: usize,
        byte_offset: usize,
    },

    #[error(
        "the {what} has only {tokens} tokens, but at least {needed} are needed\n  hint: use more text, or a shorter sequence length"
    )]
    TooShort {
        tokens: usize,
        needed: usize,
        what: String,
    },

    #[error(
        "tokenizer error: {0}\n  hint: this is likely a bug in flm; please report it with the input that caused it"
    )]
    Tokenizer(String),

    #[error("unknown built-in task `{name}`\n  hint: valid tasks are: {valid}")]
    UnknownTask { name: String, valid: String },

    #[error("unknown tokenizer kind `{name}`\n  hint: use `bpe` or `char`")]
    UnknownTokenizerKind { name: String },

    #[error(
        "vocabulary size {requested} is too small for a {kind} tokenizer\n  hint: use a vocabulary size of at least {minimum}"
    )]
    VocabTooSmall {
        kind: TokenizerKind,
        requested: usize,
        minimum: usize,
    },

    #[error(
        "invalid alphabet: {reason}\n  hint: give each character once, and at least one character"
    )]
    InvalidAlphabet { reason: String },

    /// A size beyond [`crate::limits`]; the message names the limit and why.
    #[error("{0}")]
    TooLarge(String),

    #[error(
        "sequence length must be at least 1\n  hint: pass a positive sequence length, e.g. 128"
    )]
    ZeroSeqLen,

    #[error(
        "{path} is not a usable flm tokenizer: {reason}\n  hint: delete it to train a new tokenizer (cached tokens and models made with it become unusable)"
    )]
    CorruptTokenizer { path: PathBuf, reason: String },

    #[error(
        "{path} is not a readable Hugging Face tokenizer: {reason}\n  hint: pass the `tokenizer.json` of the model's tokenizer from the Hugging Face hub (e.g. bert-base-uncased's or gpt2's)"
    )]
    UnreadablePretrainedTokenizer { path: PathBuf, reason: String },

    #[error(
        "{path} is a {found} tokenizer, but a {expected} tokenizer was requested\n  hint: use a new run directory, or request `{found}` to resume this run"
    )]
    TokenizerMismatch {
        path: PathBuf,
        expected: TokenizerKind,
        found: TokenizerKind,
    },
}

/// 64-bit FNV-1a: tiny, dependency-free and stable across platforms and Rust
/// versions (unlike `std`'s hashers), so it can be written into files.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// Writes `contents` to `path` via a temporary file in the same directory and
/// a rename, so a crash never leaves a half-written file behind.
pub(crate) fn write_atomically(path: &std::path::Path, contents: &[u8]) -> Result<(), DataError> {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp_path = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let io_error = |error| DataError::Write {
        path: path.to_path_buf(),
        error,
    };
    std::fs::write(&tmp_path, contents).map_err(io_error)?;
    std::fs::rename(&tmp_path, path).map_err(|source| {
        // Best effort: the rename error is the one worth reporting.
        let _ = std::fs::remove_file(&tmp_path);
        io_error(source)
    })
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh, empty directory under the system temp dir, unique per call.
    pub fn unique_temp_dir(label: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "flm-data-test-{label}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The small real corpus the tests use (`tests/fixtures/README.md` says where it is from).
    pub fn sonnets_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_sonnets.txt")
    }

    #[test]
    fn fnv1a64_matches_reference_values() {
        assert_eq!(super::fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
