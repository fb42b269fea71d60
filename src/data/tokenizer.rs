//! Two tokenizers, both real `tokenizers::Tokenizer`s saved as `tokenizer.json`:
//! a byte-level BPE trained on the user's text, and a character tokenizer.
//! A third kind, [`TokenizerKind::Pretrained`], wraps a tokenizer made elsewhere (a Hugging
//! Face `tokenizer.json`, as models imported from the paper's code need); see [`pretrained`].
//!
//! What follows holds for flm's own two kinds.
//!
//! Id layout (both kinds): 0 `<pad>`, 1 `<bos>`, 2 `<eos>`; the char kind adds
//! 3 `<unk>` and then one id per character. The specials live in the model's
//! vocabulary but are *not* registered as "added tokens", so a literal
//! `<eos>` typed in the user's text is encoded as ordinary text and
//! `decode(encode(x)) == x` holds for every input.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, DecoderWrapper, ModelWrapper, PreTokenizerWrapper, Tokenizer};

use super::{DataError, fnv1a64, write_atomically};

mod pretrained;

/// Target size of the pieces large texts are cut into, so `encode_batch` can
/// spread them over threads and the char model never sees one giant "word".
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks encoded per `encode_batch` call, per thread: enough to keep every thread busy, few
/// enough to bound the memory held in `Encoding`s. Those are ~80 bytes per token (offsets,
/// token strings, masks), so 32 chunks of 64 KiB held ~160 MB while the ids took 8 MB.
const CHUNKS_PER_THREAD: usize = 2;
/// The char tokenizer's stand-in for characters outside its vocabulary.
const UNK_TOKEN: &str = "<unk>";
/// Specials plus `<unk>`: the ids a char tokenizer uses before its characters.
const CHAR_RESERVED_IDS: usize = 4;
/// What undecodable ids turn into, as everywhere in Unicode-land.
const REPLACEMENT: char = '\u{FFFD}';

/// Which tokenizer a run uses; stored in configs, so it (de)serializes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// Byte-level BPE: short sequences, needs enough text to learn merges.
    Bpe,
    /// One token per character: tiny vocabulary, works on any amount of text.
    Char,
    /// A Hugging Face `tokenizer.json` made elsewhere (bert-base-uncased's WordPiece, GPT-2's
    /// byte-level BPE, ...), used as is, with its own special tokens: what models imported
    /// from the paper's code use. flm never trains one.
    Pretrained,
}

impl TokenizerKind {
    /// The smallest vocabulary this kind can work with.
    pub fn min_vocab_size(self) -> usize {
        match self {
            // Every byte must be representable, plus the specials.
            TokenizerKind::Bpe => 256 + TextTokenizer::SPECIAL_TOKENS.len(),
            // Specials, `<unk>` and at least one real character.
            TokenizerKind::Char => CHAR_RESERVED_IDS + 1,
            // Never trained; any file with two tokens is a tokenizer.
            TokenizerKind::Pretrained => 2,
        }
    }
}

impl FromStr for TokenizerKind {
    type Err = DataError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "bpe" => Ok(TokenizerKind::Bpe),
            "char" => Ok(TokenizerKind::Char),
            _ => Err(DataError::UnknownTokenizerKind {
                name: name.to_string(),
            }),
        }
    }
}

impl fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenizerKind::Bpe => "bpe",
            TokenizerKind::Char => "char",
            TokenizerKind::Pretrained => "pretrained",
        })
    }
}

/// A trained tokenizer plus what flm needs to know about it.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    kind: TokenizerKind,
    /// Cached because serializing the tokenizer is not free.
    fingerprint: u64,
    /// Cached because `get_vocab_size(true)` builds the whole vocabulary map,
    /// and `decode` asks for it once per id.
    vocab_size: usize,
    /// The special and unknown tokens of a [`TokenizerKind::Pretrained`] tokenizer (flm's
    /// own kinds have theirs at fixed ids).
    pretrained: Option<pretrained::Specials>,
}

impl fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("kind", &self.kind)
            .field("vocab_size", &self.vocab_size())
            .field("fingerprint", &format_args!("{:016x}", self.fingerprint))
            .finish()
    }
}

impl TextTokenizer {
    /// Always ids 0, 1 and 2, whatever the kind, so models can rely on them.
    pub const SPECIAL_TOKENS: [&'static str; 3] = ["<pad>", "<bos>", "<eos>"];
    pub const PAD_ID: u32 = 0;
    pub const BOS_ID: u32 = 1;
    pub const EOS_ID: u32 = 2;
    /// Only char tokenizers have it.
    pub const UNK_ID: u32 = 3;

    /// Learns a tokenizer of `kind` with at most `vocab_size` tokens from `text`.
    pub fn train(kind: TokenizerKind, text: &str, vocab_size: usize) -> Result<Self, DataError> {
        crate::limits::check_vocab("the vocabulary size", vocab_size)
            .map_err(DataError::TooLarge)?;
        let minimum = kind.min_vocab_size();
        if vocab_size < minimum {
            return Err(DataError::VocabTooSmall {
                kind,
                requested: vocab_size,
                minimum,
            });
        }
        match kind {
            TokenizerKind::Pretrained => Err(DataError::UnknownTokenizerKind {
                name: kind.to_string(),
            }),
            TokenizerKind::Bpe => train_byte_level_bpe(text, vocab_size),
            TokenizerKind::Char => {
                let mut alphabet = chars_by_frequency(text);
                alphabet.truncate(vocab_size - CHAR_RESERVED_IDS);
                build_char_tokenizer(&alphabet)
            }
        }
    }

    /// A char tokenizer with a fixed vocabulary: the specials, `<unk>`, then
    /// `chars` in the given order (ids 4, 5, ...), so ids are predictable.
    pub fn from_alphabet(chars: &[char]) -> Result<Self, DataError> {
        if chars.is_empty() {
            return Err(DataError::InvalidAlphabet {
                reason: "it is empty".to_string(),
            });
        }
        let mut seen = HashSet::new();
        if let Some(duplicate) = chars.iter().find(|&&c| !seen.insert(c)) {
            return Err(DataError::InvalidAlphabet {
                reason: format!("{duplicate:?} appears more than once"),
            });
        }
        build_char_tokenizer(chars)
    }

    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// Number of token ids, specials included: the model's vocabulary size V.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Id of one exact token string (e.g. `"a"` for a char tokenizer).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes without adding specials. Large texts are cut into chunks at
    /// line ends and encoded in parallel; the ids still decode to `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        self.encode_in_pieces(text, |piece| {
            ids.extend_from_slice(piece);
            Ok(())
        })?;
        Ok(ids)
    }

    /// Encodes like [`Self::encode`] but hands the ids to `sink` piece by piece, in order, so
    /// a big corpus can be counted or written out without ever holding all of its ids.
    pub fn encode_in_pieces(
        &self,
        text: &str,
        mut sink: impl FnMut(&[u32]) -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        let chunks = split_into_chunks(text, CHUNK_BYTES);
        let per_batch = CHUNKS_PER_THREAD * rayon::current_num_threads().clamp(1, 16);
        for batch in chunks.chunks(per_batch) {
            let encodings = self
                .inner
                .encode_batch_fast(batch.to_vec(), false)
                .map_err(|err| DataError::Tokenizer(err.to_string()))?;
            for encoding in &encodings {
                sink(encoding.get_ids())?;
            }
        }
        Ok(())
    }

    /// Turns ids back into text. Specials are skipped; `<unk>` and ids outside
    /// the vocabulary become U+FFFD, because generated ids must always display.
    /// A pretrained tokenizer also skips its special tokens, and puts a line break where
    /// they separated two pieces of text (`[SEP] [CLS]`, `<|endoftext|>`).
    pub fn decode(&self, ids: &[u32]) -> String {
        if let Some(specials) = &self.pretrained {
            return pretrained::decode(self, specials, ids);
        }
        let mut text = String::new();
        let mut run = Vec::new();
        for &id in ids {
            if self.is_special(id) {
                continue;
            }
            if self.is_decodable(id) {
                run.push(id);
            } else {
                self.decode_run_into(&mut run, &mut text);
                text.push(REPLACEMENT);
            }
        }
        self.decode_run_into(&mut run, &mut text);
        text
    }

    /// What one token looks like to a person (byte-level symbols such as `Ġ`
    /// become real spaces); specials and `<unk>` show as their names.
    pub fn token_text(&self, id: u32) -> String {
        if let Some(specials) = &self.pretrained {
            return pretrained::token_text(self, specials, id);
        }
        if let Some(special) = Self::SPECIAL_TOKENS.get(id as usize) {
            return (*special).to_string();
        }
        if self.kind == TokenizerKind::Char && id == Self::UNK_ID {
            return UNK_TOKEN.to_string();
        }
        if !self.is_decodable(id) {
            return REPLACEMENT.to_string();
        }
        self.inner
            .decode(&[id], false)
            .unwrap_or_else(|_| REPLACEMENT.to_string())
    }

    /// Writes `tokenizer.json` atomically, so an interrupted save never leaves
    /// a run with a broken tokenizer.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let json = self
            .inner
            .to_string(true)
            .map_err(|err| DataError::Tokenizer(err.to_string()))?;
        write_atomically(path, json.as_bytes())
    }

    /// Loads a tokenizer saved by [`TextTokenizer::save`]; the kind is
    /// recognised from its decoder (byte-level for BPE, fuse for char).
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let bytes = read_tokenizer_file(path)?;
        let corrupt = |reason: String| DataError::CorruptTokenizer {
            path: path.to_path_buf(),
            reason,
        };
        let inner = parse_tokenizer(&bytes).map_err(corrupt)?;
        let kind = detect_kind(&inner).map_err(corrupt)?;
        check_reserved_ids(&inner, kind).map_err(corrupt)?;
        Self::from_parts(inner, kind)
    }

    /// Loads a run's tokenizer of `kind`: flm's own kinds as [`TextTokenizer::load`] does
    /// (the kind is recognised from the file), a pretrained one with
    /// [`TextTokenizer::load_pretrained`].
    pub fn load_as(kind: TokenizerKind, path: &Path) -> Result<Self, DataError> {
        match kind {
            TokenizerKind::Pretrained => Self::load_pretrained(path),
            TokenizerKind::Bpe | TokenizerKind::Char => Self::load(path),
        }
    }

    /// A stable hash of the tokenizer's JSON, stored next to caches and models
    /// so they are never used with a different tokenizer.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn from_parts(inner: Tokenizer, kind: TokenizerKind) -> Result<Self, DataError> {
        let json = inner
            .to_string(false)
            .map_err(|err| DataError::Tokenizer(err.to_string()))?;
        let pretrained =
            (kind == TokenizerKind::Pretrained).then(|| pretrained::Specials::of(&inner));
        Ok(Self {
            fingerprint: fnv1a64(json.as_bytes()),
            vocab_size: match &pretrained {
                Some(specials) => specials.vocab_size,
                None => inner.get_vocab_size(true),
            },
            inner,
            kind,
            pretrained,
        })
    }

    fn is_special(&self, id: u32) -> bool {
        (id as usize) < Self::SPECIAL_TOKENS.len()
    }

    /// True for ids that stand for real text.
    fn is_decodable(&self, id: u32) -> bool {
        let is_unk = self.kind == TokenizerKind::Char && id == Self::UNK_ID;
        !is_unk && !self.is_special(id) && (id as usize) < self.vocab_size()
    }

    /// Decodes a run of text ids together (byte-level tokens may each hold
    /// part of one character) and empties the run.
    fn decode_run_into(&self, run: &mut Vec<u32>, text: &mut String) {
        if run.is_empty() {
            return;
        }
        match self.inner.decode(run, false) {
            Ok(piece) => text.push_str(&piece),
            Err(_) => text.push(REPLACEMENT),
        }
        run.clear();
    }
}

fn special_added_tokens() -> Vec<AddedToken> {
    TextTokenizer::SPECIAL_TOKENS
        .iter()
        .map(|token| AddedToken::from(*token, true))
        .collect()
}

/// Byte-level BPE without normalizer or prefix space: both would change the
/// text, and flm needs an exact round trip.
fn train_byte_level_bpe(text: &str, vocab_size: usize) -> Result<TextTokenizer, DataError> {
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .show_progress(false)
        .min_frequency(2)
        .vocab_size(vocab_size)
        .special_tokens(special_added_tokens())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut trainee = byte_level_tokenizer(BPE::default());
    trainee
        .train(
            &mut trainer,
            split_into_chunks(text, CHUNK_BYTES).into_iter(),
        )
        .map_err(|err| DataError::Tokenizer(err.to_string()))?;
    // Training registers the specials as added tokens; rebuilding from the
    // bare model keeps them plain vocabulary entries (see the module docs).
    let model = trainee.get_model().clone();
    TextTokenizer::from_parts(byte_level_tokenizer(model), TokenizerKind::Bpe)
}

fn byte_level_tokenizer(model: impl Into<ModelWrapper>) -> Tokenizer {
    let byte_level = ByteLevel::default().add_prefix_space(false);
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_pre_tokenizer(Some(byte_level))
        .with_post_processor(Some(byte_level))
        .with_decoder(Some(byte_level));
    tokenizer
}

/// Distinct characters, most frequent first (ties by char, for determinism).
fn chars_by_frequency(text: &str) -> Vec<char> {
    let mut counts: HashMap<char, u64> = HashMap::new();
    for c in text.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let mut ranked: Vec<(char, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.into_iter().map(|(c, _)| c).collect()
}

/// A BPE model without merges is exactly a char tokenizer, and it serializes
/// as a standard `tokenizer.json`. No pre-tokenizer: chunking keeps it fast.
fn build_char_tokenizer(alphabet: &[char]) -> Result<TextTokenizer, DataError> {
    let reserved = TextTokenizer::SPECIAL_TOKENS
        .iter()
        .copied()
        .chain([UNK_TOKEN])
        .map(str::to_string);
    let vocab: Vocab = reserved
        .chain(alphabet.iter().map(char::to_string))
        .zip(0u32..)
        .collect();
    let model = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .unk_token(UNK_TOKEN.to_string())
        .build()
        .map_err(|err| DataError::Tokenizer(err.to_string()))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_pre_tokenizer(None::<PreTokenizerWrapper>)
        .with_decoder(Some(Fuse::new()));
    TextTokenizer::from_parts(tokenizer, TokenizerKind::Char)
}

fn detect_kind(tokenizer: &Tokenizer) -> Result<TokenizerKind, String> {
    match tokenizer.get_decoder() {
        Some(DecoderWrapper::ByteLevel(_)) => Ok(TokenizerKind::Bpe),
        Some(DecoderWrapper::Fuse(_)) => Ok(TokenizerKind::Char),
        _ => Err("it was not made by flm (unrecognised decoder)".to_string()),
    }
}

/// flm's models assume the fixed id layout; a foreign tokenizer would
/// silently produce garbage, so it is rejected up front.
fn check_reserved_ids(tokenizer: &Tokenizer, kind: TokenizerKind) -> Result<(), String> {
    let mut reserved = TextTokenizer::SPECIAL_TOKENS.to_vec();
    if kind == TokenizerKind::Char {
        reserved.push(UNK_TOKEN);
    }
    for (expected_id, token) in (0u32..).zip(reserved) {
        if tokenizer.token_to_id(token) != Some(expected_id) {
            return Err(format!("token {token} is not at id {expected_id}"));
        }
    }
    Ok(())
}

/// Cuts `text` into pieces of about `target` bytes that end at a newline
/// (or, for a giant line, at a char boundary) and together equal `text`.
pub(crate) fn split_into_chunks(text: &str, target: usize) -> Vec<&str> {
    let mut chunks = Vec::with_capacity(text.len() / target.max(1) + 1);
    let mut rest = text;
    while !rest.is_empty() {
        let cut = chunk_end(rest, target);
        let (chunk, tail) = rest.split_at(cut);
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// Where the first chunk of `text` should end (always > 0 for non-empty text).
fn chunk_end(text: &str, target: usize) -> usize {
    if text.len() <= target {
        return text.len();
    }
    let window = &text.as_bytes()[..target];
    if let Some(newline) = window.iter().rposition(|&b| b == b'\n') {
        return newline + 1;
    }
    let mut end = target.max(1);
    while !text.is_char_boundary(end) {
        end += 1;
    }
    end
}

/// A tokenizer file's bytes; a missing file is [`DataError::NotFound`], so the message can
/// say which file to pass.
fn read_tokenizer_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DataError::NotFound {
            path: path.to_path_buf(),
        },
        _ => DataError::Io {
            path: path.to_path_buf(),
            error: source,
        },
    })
}

/// Parses a `tokenizer.json`, turning every failure into a reason: the syntax is checked
/// first, and a panic inside the `tokenizers` crate (its decoder deserializer unwraps on some
/// malformed files, found by the loader property tests) is caught rather than crashing flm.
pub(crate) fn parse_tokenizer(bytes: &[u8]) -> Result<Tokenizer, String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map_err(|err| format!("not valid JSON ({err})"))?;
    std::panic::catch_unwind(|| Tokenizer::from_bytes(bytes))
        .map_err(|_| "the tokenizers library could not read it".to_string())?
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests;
