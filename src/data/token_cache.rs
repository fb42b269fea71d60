//! The token cache: the ids of one source file, kept in the run directory so that resuming
//! (or a second run on the same text) does not encode the text again.
//!
//! Memory is the design constraint. A corpus of N characters has up to N ids of 4 bytes, so
//! the ids outweigh the text by up to 4×. The cache is therefore written *while* encoding,
//! piece by piece, and read back straight into the one id vector training keeps; the text can
//! be dropped in between. A 600 MB character-level corpus used to hold the text, the ids and a
//! byte copy of them at once (9× the file); now the peak is about the ids alone.
//!
//! Layout: magic, then little-endian u64s (tokenizer fingerprint, source length, source hash,
//! token count), then the ids as little-endian u32s. A cache is written to a temporary file
//! and renamed into place, so a crash never leaves a half-written one behind.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::tokenizer::TextTokenizer;
use super::{DataError, fnv1a64};

/// Identifies flm token caches, with a version number for future formats.
const MAGIC: &[u8; 8] = b"FLMTOK1\0";
/// Magic, tokenizer fingerprint, source length, source hash, token count.
pub(crate) const HEADER_BYTES: usize = 8 + 4 * 8;
/// Where the token count sits in the header (patched once encoding is done).
const COUNT_OFFSET: u64 = 8 + 3 * 8;
/// Write buffer: large enough that a big corpus is written in few system calls.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// What a cache must match to be reused: same tokenizer, same source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheKey {
    pub tokenizer_fingerprint: u64,
    pub source_len: u64,
    pub source_hash: u64,
}

impl CacheKey {
    pub fn of(tokenizer: &TextTokenizer, text: &str) -> Self {
        Self {
            tokenizer_fingerprint: tokenizer.fingerprint(),
            source_len: text.len() as u64,
            source_hash: fnv1a64(text.as_bytes()),
        }
    }
}

/// The ids of `text`: from the cache at `path` when it is valid, else encoded into a fresh
/// cache first. Takes the text by value and drops it before the ids are read back, so the
/// two never share memory.
pub(crate) fn ids_of(
    tokenizer: &TextTokenizer,
    text: String,
    path: &Path,
) -> Result<Vec<u32>, DataError> {
    let key = CacheKey::of(tokenizer, &text);
    if token_count(path, key).is_none() {
        let mut writer = CacheWriter::create(path, key)?;
        tokenizer.encode_in_pieces(&text, |ids| writer.push(ids))?;
        writer.finish()?;
    }
    drop(text);
    crate::memory::release_freed_memory();
    read(path, key).ok_or_else(|| DataError::Io {
        path: path.to_path_buf(),
        error: std::io::Error::other(
            "the token cache just written could not be read back (was it changed meanwhile?)",
        ),
    })
}

/// The cached ids, or `None` when the cache is missing, stale or damaged (all of which just
/// mean "encode again"). Never allocates more than the file holds.
pub(crate) fn read(path: &Path, expected: CacheKey) -> Option<Vec<u32>> {
    let (mut file, count) = open_matching(path, expected)?;
    let mut ids = vec![0u32; count];
    file.read_exact(bytemuck::cast_slice_mut(&mut ids)).ok()?;
    if cfg!(target_endian = "big") {
        ids.iter_mut().for_each(|id| *id = u32::from_le(*id));
    }
    Some(ids)
}

/// Writes a whole cache at once (what [`ids_of`] does piece by piece).
#[cfg(test)]
pub(crate) fn write(path: &Path, key: CacheKey, ids: &[u32]) -> Result<(), DataError> {
    let mut writer = CacheWriter::create(path, key)?;
    writer.push(ids)?;
    writer.finish()
}

/// The number of ids of a valid cache for `expected` at `path`, if there is one.
fn token_count(path: &Path, expected: CacheKey) -> Option<usize> {
    open_matching(path, expected).map(|(_, count)| count)
}

/// The cache file positioned after its header, and its token count, when the header matches
/// `expected` and the file is exactly as long as the header says.
fn open_matching(path: &Path, expected: CacheKey) -> Option<(File, usize)> {
    let mut file = File::open(path).ok()?;
    let length = file.metadata().ok()?.len();
    let mut header = [0u8; HEADER_BYTES];
    file.read_exact(&mut header).ok()?;
    let (magic, fields) = header.split_at(MAGIC.len());
    if magic != MAGIC {
        return None;
    }
    let field = |i: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&fields[i * 8..(i + 1) * 8]);
        u64::from_le_bytes(word)
    };
    let found = CacheKey {
        tokenizer_fingerprint: field(0),
        source_len: field(1),
        source_hash: field(2),
    };
    let count = field(3);
    let body = count.checked_mul(4)?.checked_add(HEADER_BYTES as u64)?;
    if found != expected || body != length {
        return None;
    }
    Some((file, usize::try_from(count).ok()?))
}

/// A cache being written: ids go through a buffer into a temporary file, which `finish`
/// completes (token count in the header) and renames into place.
struct CacheWriter {
    out: BufWriter<File>,
    tmp_path: PathBuf,
    path: PathBuf,
    count: u64,
}

impl CacheWriter {
    fn create(path: &Path, key: CacheKey) -> Result<Self, DataError> {
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp_path = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp_path).map_err(|error| write_error(path, error))?;
        let mut writer = Self {
            out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            tmp_path,
            path: path.to_path_buf(),
            count: 0,
        };
        let mut header = Vec::with_capacity(HEADER_BYTES);
        header.extend_from_slice(MAGIC);
        for field in [
            key.tokenizer_fingerprint,
            key.source_len,
            key.source_hash,
            0,
        ] {
            header.extend_from_slice(&field.to_le_bytes());
        }
        writer.write(&header)?;
        Ok(writer)
    }

    fn push(&mut self, ids: &[u32]) -> Result<(), DataError> {
        if cfg!(target_endian = "little") {
            self.write(bytemuck::cast_slice(ids))?;
        } else {
            let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
            self.write(&bytes)?;
        }
        self.count += ids.len() as u64;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), DataError> {
        self.out
            .write_all(bytes)
            .map_err(|error| write_error(&self.path, error))
    }

    fn finish(mut self) -> Result<(), DataError> {
        let path = self.path.clone();
        let count = self.count;
        let result = (|| {
            self.out.flush()?;
            let file = self.out.get_mut();
            file.seek(SeekFrom::Start(COUNT_OFFSET))?;
            file.write_all(&count.to_le_bytes())?;
            std::fs::rename(&self.tmp_path, &path)
        })();
        result.map_err(|error| write_error(&path, error))
    }
}

impl Drop for CacheWriter {
    /// A cache that was not finished (an error, a panic) leaves no temporary file behind.
    fn drop(&mut self) {
        if self.tmp_path.exists() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

fn write_error(path: &Path, error: std::io::Error) -> DataError {
    DataError::Write {
        path: path.to_path_buf(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::unique_temp_dir;
    use crate::data::tokenizer::TokenizerKind;

    fn key() -> CacheKey {
        CacheKey {
            tokenizer_fingerprint: 1,
            source_len: 2,
            source_hash: 3,
        }
    }

    #[test]
    fn round_trips_and_rejects_other_keys() {
        let path = unique_temp_dir("cache-rt").join("cache.bin");
        write(&path, key(), &[5, 6, u32::MAX]).unwrap();
        assert_eq!(read(&path, key()), Some(vec![5, 6, u32::MAX]));
        let other = CacheKey {
            tokenizer_fingerprint: 9,
            ..key()
        };
        assert_eq!(read(&path, other), None);
        std::fs::write(&path, b"FLMTOK1\0short").unwrap();
        assert_eq!(read(&path, key()), None);
    }

    #[test]
    fn a_count_beyond_the_file_is_refused_without_allocating_it() {
        let path = unique_temp_dir("cache-count").join("cache.bin");
        write(&path, key(), &[1, 2, 3]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[COUNT_OFFSET as usize..HEADER_BYTES].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path, key()), None);
        bytes[COUNT_OFFSET as usize..HEADER_BYTES].copy_from_slice(&4u64.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path, key()), None);
    }

    #[test]
    fn ids_written_piece_by_piece_equal_one_encode() {
        let dir = unique_temp_dir("cache-pieces");
        // Several encoding batches: the pieces must come out in order.
        let text: String = (0..100_000)
            .map(|i| format!("line {i} of the text, {}\n", i % 7))
            .collect();
        assert!(text.len() > 2 << 20, "{} bytes", text.len());
        let tokenizer = TextTokenizer::train(TokenizerKind::Char, &text, 64).unwrap();
        let expected = tokenizer.encode(&text).unwrap();
        let path = dir.join("tokens.bin");
        let ids = ids_of(&tokenizer, text.clone(), &path).unwrap();
        assert_eq!(ids, expected);
        let written = std::fs::metadata(&path).unwrap().len();
        assert_eq!(written, (HEADER_BYTES + 4 * expected.len()) as u64);
        // The second call reads the cache: same ids, file untouched.
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(ids_of(&tokenizer, text, &path).unwrap(), expected);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name.to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn an_unwritable_place_is_a_write_error_and_leaves_nothing() {
        let dir = unique_temp_dir("cache-unwritable");
        let path = dir.join("missing-folder").join("tokens.bin");
        let tokenizer = TextTokenizer::train(TokenizerKind::Char, "abc abc\n", 16).unwrap();
        let error = ids_of(&tokenizer, "abc abc\n".to_string(), &path).unwrap_err();
        assert!(matches!(error, DataError::Write { .. }), "{error}");
    }
}
