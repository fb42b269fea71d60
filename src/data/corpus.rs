//! Reading a user's text file, with errors that say exactly what is wrong with
//! it, and the corpus statistics the GUI shows.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::DataError;
use super::tokenizer::TextTokenizer;

/// How much of the file start is inspected for control bytes: enough to
/// recognise binary formats without scanning a huge file twice.
const BINARY_SNIFF_BYTES: usize = 64 * 1024;
/// Text files contain very few control bytes; binary files contain many.
const MAX_CONTROL_FRACTION: f64 = 0.30;
/// How many of the most frequent tokens `CorpusStats` reports.
const TOP_TOKEN_COUNT: usize = 20;

/// Reads a UTF-8 text file into memory exactly once (no second copy, since
/// corpora may be hundreds of MB) and rejects anything that is not usable text.
pub fn load_text(path: &Path) -> Result<String, DataError> {
    let bytes = read_whole_file(path)?;
    if bytes.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    if looks_utf16(&bytes) {
        return Err(DataError::Utf16 {
            path: path.to_path_buf(),
        });
    }
    if looks_binary(&bytes) {
        return Err(DataError::Binary {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|err| invalid_utf8_error(path, &err))?;
    if text.trim().is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

/// Fails unless there is at least one full training sequence of `seq_len`
/// tokens, because a model cannot learn from (or be validated on) less.
pub fn check_long_enough(tokens: usize, seq_len: usize, what: &str) -> Result<(), DataError> {
    if tokens >= seq_len {
        return Ok(());
    }
    Err(DataError::TooShort {
        tokens,
        needed: seq_len,
        what: what.to_string(),
    })
}

/// Reads the file into a buffer sized from its metadata, so it is allocated once.
fn read_whole_file(path: &Path) -> Result<Vec<u8>, DataError> {
    let io_error = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => DataError::NotFound {
            path: path.to_path_buf(),
        },
        _ => DataError::Io {
            path: path.to_path_buf(),
            error: source,
        },
    };
    check_regular_file(path)?;
    let mut file = File::open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    let size_hint = usize::try_from(metadata.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(size_hint);
    file.read_to_end(&mut bytes).map_err(io_error)?;
    Ok(bytes)
}

/// Refuses anything but a regular file (following symlinks) *before* opening it: opening a
/// FIFO blocks until a writer appears, and a device such as `/dev/zero` never ends.
pub fn check_regular_file(path: &Path) -> Result<(), DataError> {
    let metadata = std::fs::metadata(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => DataError::NotFound {
            path: path.to_path_buf(),
        },
        _ => DataError::Io {
            path: path.to_path_buf(),
            error,
        },
    })?;
    let file_type = metadata.file_type();
    if file_type.is_file() {
        return Ok(());
    }
    if file_type.is_dir() {
        return Err(DataError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    #[cfg(unix)]
    let kind = {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            "a named pipe (FIFO)"
        } else if file_type.is_char_device() || file_type.is_block_device() {
            "a device"
        } else if file_type.is_socket() {
            "a socket"
        } else {
            "a special file"
        }
    };
    #[cfg(not(unix))]
    let kind = "a special file";
    Err(DataError::NotRegularFile {
        path: path.to_path_buf(),
        kind,
    })
}

/// UTF-16 text: a byte-order mark, or (without one) NUL bytes at every other position of
/// the start, as ASCII text in UTF-16 has.
fn looks_utf16(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return true;
    }
    let head = &bytes[..bytes.len().min(BINARY_SNIFF_BYTES) & !1];
    if head.len() < 4 {
        return false;
    }
    let pairs = head.len() / 2;
    let zeros_at = |parity: usize| {
        head.iter()
            .skip(parity)
            .step_by(2)
            .filter(|&&b| b == 0)
            .count()
    };
    let (even, odd) = (zeros_at(0), zeros_at(1));
    // Little-endian ASCII has NULs at odd offsets, big-endian at even ones; nearly all of them.
    let mostly = |count: usize| count as f64 >= 0.9 * pairs as f64;
    (mostly(odd) && even == 0) || (mostly(even) && odd == 0)
}

/// NUL bytes never occur in text; a high share of other control bytes near
/// the start means a binary format (images, archives, office documents).
fn looks_binary(bytes: &[u8]) -> bool {
    if bytes.contains(&0) {
        return true;
    }
    let head = &bytes[..bytes.len().min(BINARY_SNIFF_BYTES)];
    let control_count = head.iter().filter(|&&b| is_suspicious_control(b)).count();
    control_count as f64 > MAX_CONTROL_FRACTION * head.len() as f64
}

/// Control bytes that do not appear in ordinary text (tab, newline, carriage
/// return and form feed do).
fn is_suspicious_control(byte: u8) -> bool {
    (byte < 0x20 && !matches!(byte, b'\t' | b'\n' | b'\r' | 0x0c)) || byte == 0x7f
}

/// Locates the first invalid byte as line and column, which is what a user
/// needs to find it in an editor.
fn invalid_utf8_error(path: &Path, err: &std::string::FromUtf8Error) -> DataError {
    let byte_offset = err.utf8_error().valid_up_to();
    let valid_prefix = &err.as_bytes()[..byte_offset];
    let line_start = valid_prefix
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    let line = valid_prefix.iter().filter(|&&b| b == b'\n').count() + 1;
    // The prefix is valid UTF-8 by definition of `valid_up_to`.
    let column =
        std::str::from_utf8(&valid_prefix[line_start..]).map_or(0, |s| s.chars().count()) + 1;
    DataError::InvalidUtf8 {
        path: path.to_path_buf(),
        line,
        column,
        byte_offset,
    }
}

/// Facts about a training corpus, shown to the user before training so they
/// can judge its size and how well the tokenizer compresses it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CorpusStats {
    pub bytes: u64,
    pub chars: u64,
    pub lines: u64,
    pub tokens: u64,
    pub bytes_per_token: f64,
    /// The most frequent tokens as (display text, count), most frequent first.
    pub top_tokens: Vec<(String, u64)>,
}

impl CorpusStats {
    /// Computes the statistics of `text`, whose tokenization is `ids`.
    pub fn compute(text: &str, ids: &[u32], tokenizer: &TextTokenizer) -> Self {
        let mut counts = TokenCounts::new(tokenizer.vocab_size());
        counts.add(ids);
        Self::of_text(text).with_tokens(&counts, tokenizer)
    }

    /// The facts of the text alone; the token facts come from [`Self::with_tokens`]. Split so
    /// a big corpus can be measured and dropped before its ids are loaded.
    pub fn of_text(text: &str) -> Self {
        Self {
            bytes: text.len() as u64,
            chars: text.chars().count() as u64,
            lines: count_lines(text),
            tokens: 0,
            bytes_per_token: 0.0,
            top_tokens: Vec::new(),
        }
    }

    /// Adds the token count, compression and most frequent tokens.
    pub fn with_tokens(self, counts: &TokenCounts, tokenizer: &TextTokenizer) -> Self {
        let tokens = counts.total;
        Self {
            tokens,
            bytes_per_token: if tokens == 0 {
                0.0
            } else {
                self.bytes as f64 / tokens as f64
            },
            top_tokens: counts.most_frequent(tokenizer, TOP_TOKEN_COUNT),
            ..self
        }
    }
}

/// How often each id occurs, gathered piece by piece.
#[derive(Debug, Clone)]
pub struct TokenCounts {
    counts: Vec<u64>,
    total: u64,
}

impl TokenCounts {
    pub fn new(vocab_size: usize) -> Self {
        Self {
            counts: vec![0; vocab_size],
            total: 0,
        }
    }

    pub fn add(&mut self, ids: &[u32]) {
        self.total += ids.len() as u64;
        for &id in ids {
            if let Some(count) = self.counts.get_mut(id as usize) {
                *count += 1;
            }
        }
    }

    /// The `limit` most frequent ids (ties broken by id, for stable output).
    fn most_frequent(&self, tokenizer: &TextTokenizer, limit: usize) -> Vec<(String, u64)> {
        let mut ranked: Vec<(u32, u64)> = (0u32..)
            .zip(self.counts.iter().copied())
            .filter(|&(_, count)| count > 0)
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
            .into_iter()
            .take(limit)
            .map(|(id, count)| (tokenizer.token_text(id), count))
            .collect()
    }
}

/// Counts lines the way editors do: a final line without '\n' still counts.
fn count_lines(text: &str) -> u64 {
    let newlines = text.bytes().filter(|&b| b == b'\n').count() as u64;
    let unterminated_last_line = !text.is_empty() && !text.ends_with('\n');
    newlines + u64::from(unterminated_last_line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{sonnets_path, unique_temp_dir};
    use crate::data::tokenizer::TokenizerKind;
    use std::path::PathBuf;

    fn write_temp_file(label: &str, contents: &[u8]) -> PathBuf {
        let path = unique_temp_dir(label).join("input.txt");
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn loads_valid_utf8_text_unchanged() {
        let text = "Ünïcödé, emoji 🦀, CRLF\r\n\ttabs\x0c and form feeds\n";
        let path = write_temp_file("valid", text.as_bytes());
        assert_eq!(load_text(&path).unwrap(), text);
    }

    #[test]
    fn loads_the_real_sonnets_corpus() {
        let text = load_text(&sonnets_path()).unwrap();
        assert!(text.len() > 90_000);
    }

    #[test]
    fn missing_file_is_not_found() {
        let path = unique_temp_dir("missing").join("nope.txt");
        assert!(matches!(load_text(&path), Err(DataError::NotFound { .. })));
    }

    #[test]
    fn directory_is_rejected() {
        let dir = unique_temp_dir("dir");
        let err = load_text(&dir).unwrap_err();
        assert!(matches!(err, DataError::IsDirectory { .. }), "{err}");
    }

    #[test]
    fn empty_file_is_rejected() {
        let path = write_temp_file("empty", b"");
        assert!(matches!(load_text(&path), Err(DataError::Empty { .. })));
    }

    #[test]
    fn whitespace_only_file_is_rejected() {
        let path = write_temp_file("blank", b" \n\t\r\n  \n");
        assert!(matches!(load_text(&path), Err(DataError::Empty { .. })));
    }

    #[test]
    fn nul_byte_means_binary() {
        let path = write_temp_file("nul", b"mostly text\0but not quite");
        assert!(matches!(load_text(&path), Err(DataError::Binary { .. })));
    }

    #[test]
    fn many_control_bytes_mean_binary() {
        let mut bytes = b"header text ".repeat(10);
        bytes.extend(std::iter::repeat_n(0x01u8, 200));
        let path = write_temp_file("ctrl", &bytes);
        assert!(matches!(load_text(&path), Err(DataError::Binary { .. })));
    }

    #[test]
    fn few_control_bytes_are_still_text() {
        let mut bytes = b"plain text line\n".repeat(20);
        bytes.push(0x1b); // a stray ESC, e.g. from a terminal log
        let path = write_temp_file("fewctrl", &bytes);
        assert!(load_text(&path).is_ok());
    }

    #[test]
    fn invalid_utf8_reports_line_column_and_offset() {
        let bytes = b"first line\nsecond \xc3\xa9t\xff rest\n";
        let path = write_temp_file("badutf8", bytes);
        match load_text(&path) {
            Err(DataError::InvalidUtf8 {
                line,
                column,
                byte_offset,
                ..
            }) => {
                assert_eq!(byte_offset, 21);
                assert_eq!(line, 2);
                assert_eq!(column, 10); // "second ét" is 9 chars, then the bad byte
            }
            other => panic!("expected InvalidUtf8, got {other:?}"),
        }
    }

    #[test]
    fn error_messages_carry_a_hint() {
        let path = unique_temp_dir("hint").join("nope.txt");
        let message = load_text(&path).unwrap_err().to_string();
        assert!(
            message.contains("nope.txt") && message.contains("hint:"),
            "{message}"
        );
    }

    #[test]
    fn check_long_enough_needs_one_full_sequence() {
        assert!(check_long_enough(32, 32, "training text").is_ok());
        match check_long_enough(31, 32, "training text") {
            Err(DataError::TooShort {
                tokens,
                needed,
                what,
            }) => {
                assert_eq!((tokens, needed, what.as_str()), (31, 32, "training text"));
            }
            other => panic!("expected TooShort, got {other:?}"),
        }
    }

    #[test]
    fn stats_count_bytes_chars_lines_and_top_tokens() {
        let text = "aab\nbé\nb";
        let tokenizer = TextTokenizer::train(TokenizerKind::Char, text, 64).unwrap();
        let ids = tokenizer.encode(text).unwrap();
        let stats = CorpusStats::compute(text, &ids, &tokenizer);
        assert_eq!(stats.bytes, 9);
        assert_eq!(stats.chars, 8);
        assert_eq!(stats.lines, 3);
        assert_eq!(stats.tokens, 8);
        assert!((stats.bytes_per_token - 9.0 / 8.0).abs() < 1e-12);
        assert_eq!(stats.top_tokens[0], ("b".to_string(), 3));
        assert_eq!(stats.top_tokens[1], ("\n".to_string(), 2));
        assert_eq!(stats.top_tokens[2], ("a".to_string(), 2));
    }

    #[test]
    fn stats_report_at_most_twenty_tokens() {
        let text = load_text(&sonnets_path()).unwrap();
        let tokenizer = TextTokenizer::train(TokenizerKind::Char, &text, 200).unwrap();
        let ids = tokenizer.encode(&text).unwrap();
        let stats = CorpusStats::compute(&text, &ids, &tokenizer);
        assert_eq!(stats.top_tokens.len(), 20);
        assert!(stats.top_tokens.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}
