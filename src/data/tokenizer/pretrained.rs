//! Tokenizers made elsewhere ([`TokenizerKind::Pretrained`]): any Hugging Face
//! `tokenizer.json`, such as bert-base-uncased's WordPiece (the paper's LM1B models) or GPT-2's
//! byte-level BPE (its OpenWebText models). flm uses them as they are: encoding and decoding are
//! the file's own, and the special tokens are those its `added_tokens` mark `special`
//! (`[CLS]`, `[SEP]`, `[PAD]`, `<|endoftext|>`), wherever their ids are. Unlike flm's own kinds,
//! `decode(encode(x))` need not give `x` back (bert-base-uncased lower-cases, for one).

use std::collections::HashSet;
use std::path::Path;

use tokenizers::{AddedToken, ModelWrapper, Tokenizer};

use super::{REPLACEMENT, TextTokenizer, TokenizerKind};
use crate::data::DataError;

/// What decoding needs to know about a pretrained tokenizer's ids.
#[derive(Debug, Clone)]
pub(super) struct Specials {
    /// Ids of the tokens marked special, the unknown token excepted: skipped by `decode`.
    special: HashSet<u32>,
    /// One past the largest id: the vocabulary size V a model over these ids has.
    pub(super) vocab_size: usize,
}

impl Specials {
    pub(super) fn of(tokenizer: &Tokenizer) -> Self {
        let mut special: HashSet<u32> = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| id)
            .collect();
        let unknown_token = match tokenizer.get_model() {
            ModelWrapper::WordPiece(model) => Some(model.unk_token.clone()),
            ModelWrapper::WordLevel(model) => Some(model.unk_token.clone()),
            ModelWrapper::BPE(model) => model.unk_token.clone(),
            // Unigram keeps its unknown id private.
            ModelWrapper::Unigram(_) => None,
        };
        // bert-base-uncased marks `[UNK]` special, but it stands for text: decoding keeps it
        // in place (as `[UNK]`) rather than dropping it like `[CLS]`.
        if let Some(id) = unknown_token.and_then(|token| tokenizer.token_to_id(&token)) {
            special.remove(&id);
        }
        let vocab_size = tokenizer
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1);
        Self {
            special,
            vocab_size,
        }
    }
}

impl TextTokenizer {
    /// Loads a Hugging Face `tokenizer.json` as a [`TokenizerKind::Pretrained`] tokenizer.
    pub fn load_pretrained(path: &Path) -> Result<Self, DataError> {
        let bytes = super::read_tokenizer_file(path)?;
        let unreadable = |reason: String| DataError::UnreadablePretrainedTokenizer {
            path: path.to_path_buf(),
            reason,
        };
        let inner = super::parse_tokenizer(&bytes).map_err(unreadable)?;
        if inner.get_vocab_size(true) < TokenizerKind::Pretrained.min_vocab_size() {
            return Err(unreadable("its vocabulary is empty".to_string()));
        }
        Self::from_parts(inner, TokenizerKind::Pretrained)
    }

    /// This tokenizer with `token` added as a special token at the next free id, as the
    /// paper's data loader adds `[PAD]` to tokenizers without a padding token (GPT-2), which
    /// makes its models' vocabulary one larger than the tokenizer file. `None` when the token
    /// exists already or this is not a pretrained tokenizer.
    pub fn with_added_special_token(&self, token: &str) -> Option<Result<Self, DataError>> {
        if self.kind != TokenizerKind::Pretrained || self.inner.token_to_id(token).is_some() {
            return None;
        }
        let mut inner = self.inner.clone();
        inner.add_special_tokens(&[AddedToken::from(token, true)]);
        Some(Self::from_parts(inner, TokenizerKind::Pretrained))
    }
}

/// `TextTokenizer::decode` for pretrained tokenizers: runs of ordinary ids are decoded
/// together by the tokenizer's own decoder (which joins `##` pieces and byte-level symbols),
/// special ids are dropped, and a line break marks where they separated two runs of text.
/// The unknown token stays as its own text (`[UNK]`); ids outside the vocabulary become U+FFFD.
pub(super) fn decode(tokenizer: &TextTokenizer, specials: &Specials, ids: &[u32]) -> String {
    let mut text = String::new();
    let mut run = Vec::new();
    let mut pending_break = false;
    let push = |text: &mut String, piece: &str, pending_break: &mut bool| {
        if piece.is_empty() {
            return;
        }
        if *pending_break && !text.is_empty() {
            text.push('\n');
        }
        *pending_break = false;
        text.push_str(piece);
    };
    let flush = |run: &mut Vec<u32>, text: &mut String, pending_break: &mut bool| {
        if run.is_empty() {
            return;
        }
        let piece = tokenizer
            .inner
            .decode(run, false)
            .unwrap_or_else(|_| REPLACEMENT.to_string());
        push(text, &piece, pending_break);
        run.clear();
    };
    for &id in ids {
        if specials.special.contains(&id) {
            flush(&mut run, &mut text, &mut pending_break);
            pending_break = true;
        } else if (id as usize) < specials.vocab_size {
            run.push(id);
        } else {
            flush(&mut run, &mut text, &mut pending_break);
            push(&mut text, &REPLACEMENT.to_string(), &mut pending_break);
        }
    }
    flush(&mut run, &mut text, &mut pending_break);
    text
}

/// `TextTokenizer::token_text` for pretrained tokenizers: specials show as their names,
/// other tokens as their text (a byte-level `Ġthe` as ` the`).
pub(super) fn token_text(tokenizer: &TextTokenizer, specials: &Specials, id: u32) -> String {
    if (id as usize) >= specials.vocab_size {
        return REPLACEMENT.to_string();
    }
    if specials.special.contains(&id) {
        return tokenizer
            .inner
            .id_to_token(id)
            .unwrap_or_else(|| REPLACEMENT.to_string());
    }
    tokenizer
        .inner
        .decode(&[id], false)
        .unwrap_or_else(|_| REPLACEMENT.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tokenizers")
            .join(name)
    }

    fn wordpiece() -> TextTokenizer {
        TextTokenizer::load_pretrained(&fixture("wordpiece.json")).unwrap()
    }

    fn byte_level() -> TextTokenizer {
        TextTokenizer::load_pretrained(&fixture("byte_level_bpe.json")).unwrap()
    }

    fn ids(tokenizer: &TextTokenizer, tokens: &[&str]) -> Vec<u32> {
        tokens
            .iter()
            .map(|t| tokenizer.token_to_id(t).unwrap_or_else(|| panic!("no {t}")))
            .collect()
    }

    #[test]
    fn wordpiece_sizes_and_specials_come_from_the_file() {
        let tokenizer = wordpiece();
        assert_eq!(tokenizer.kind(), TokenizerKind::Pretrained);
        assert_eq!(tokenizer.vocab_size(), 40);
        assert_eq!(tokenizer.token_text(2), "[CLS]");
        assert_eq!(tokenizer.token_text(39), "b");
    }

    #[test]
    fn wordpiece_decodes_to_readable_sentences() {
        let tokenizer = wordpiece();
        let sample = ids(
            &tokenizer,
            &[
                "[CLS]", "the", "cat", "play", "##ing", "on", "the", "mat", ".", "[SEP]", "[CLS]",
                "hello", "world", "!", "[SEP]", "[PAD]", "[PAD]",
            ],
        );
        assert_eq!(
            tokenizer.decode(&sample),
            "the cat playing on the mat.\nhello world!"
        );
    }

    #[test]
    fn wordpiece_encodes_lowercased_words_into_pieces_without_specials() {
        let tokenizer = wordpiece();
        let encoded = tokenizer.encode("The dog jumped.").unwrap();
        assert_eq!(
            encoded,
            ids(&tokenizer, &["the", "dog", "jump", "##ed", "."])
        );
        assert_eq!(tokenizer.decode(&encoded), "the dog jumped.");
    }

    #[test]
    fn unknown_tokens_stay_and_out_of_range_ids_show_as_replacement_characters() {
        let tokenizer = wordpiece();
        let sample = [ids(&tokenizer, &["the", "[UNK]", "cat"]), vec![40, 7]].concat();
        assert_eq!(tokenizer.decode(&sample), "the [UNK] cat\u{FFFD}cat");
        assert_eq!(tokenizer.token_text(1), "[UNK]");
        assert_eq!(tokenizer.token_text(40), "\u{FFFD}");
    }

    #[test]
    fn byte_level_bpe_round_trips_and_splits_documents_at_end_of_text() {
        let tokenizer = byte_level();
        assert_eq!(tokenizer.vocab_size(), 46);
        let text = "hello world, the café!";
        let encoded = tokenizer.encode(text).unwrap();
        assert_eq!(tokenizer.decode(&encoded), text);
        assert!(encoded.contains(&tokenizer.token_to_id("Ġworld").unwrap()));
        let eot = tokenizer.token_to_id("<|endoftext|>").unwrap();
        let two = [encoded.clone(), vec![eot], encoded, vec![eot, eot]].concat();
        assert_eq!(tokenizer.decode(&two), format!("{text}\n{text}"));
        let the = tokenizer.token_to_id("Ġthe").unwrap();
        assert_eq!(tokenizer.token_text(the), " the");
    }

    #[test]
    fn a_missing_pad_token_is_added_at_the_next_id() {
        let tokenizer = byte_level();
        let padded = tokenizer
            .with_added_special_token("[PAD]")
            .unwrap()
            .unwrap();
        assert_eq!(padded.vocab_size(), 47);
        assert_eq!(padded.token_to_id("[PAD]"), Some(46));
        let text = "hello world";
        let mut encoded = padded.encode(text).unwrap();
        encoded.push(46);
        assert_eq!(padded.decode(&encoded), text);
        // WordPiece has its own [PAD] already.
        assert!(wordpiece().with_added_special_token("[PAD]").is_none());
    }

    #[test]
    fn flm_tokenizers_load_unchanged_through_load_as() {
        let dir = crate::data::test_util::unique_temp_dir("tok-load-as");
        let path = dir.join("tokenizer.json");
        TextTokenizer::from_alphabet(&['a', 'b'])
            .unwrap()
            .save(&path)
            .unwrap();
        let loaded = TextTokenizer::load_as(TokenizerKind::Char, &path).unwrap();
        assert_eq!(loaded.kind(), TokenizerKind::Char);
        // flm's own loader still refuses foreign files.
        assert!(matches!(
            TextTokenizer::load(&fixture("wordpiece.json")),
            Err(DataError::CorruptTokenizer { .. })
        ));
        assert!(matches!(
            TextTokenizer::load_as(TokenizerKind::Pretrained, &dir.join("missing.json")),
            Err(DataError::NotFound { .. })
        ));
        std::fs::write(dir.join("junk.json"), "{\"model\": 3}").unwrap();
        let error = TextTokenizer::load_pretrained(&dir.join("junk.json")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("hint: pass the `tokenizer.json`")
        );
    }

    #[test]
    fn pretrained_is_not_a_kind_flm_trains() {
        assert!("pretrained".parse::<TokenizerKind>().is_err());
        assert!(TextTokenizer::train(TokenizerKind::Pretrained, "some text", 100).is_err());
        assert_eq!(
            serde_json::to_string(&TokenizerKind::Pretrained).unwrap(),
            "\"pretrained\""
        );
    }
}
