//! The tokenizers: training, round trips, reserved ids, saving and loading.

use super::*;
use crate::data::test_util::{sonnets_path, unique_temp_dir};

const UNICODE_SAMPLE: &str = "Ünïcödé, emoji 🦀, CRLF\r\n, tabs\t and  double  spaces";

fn sonnets() -> String {
    crate::data::corpus::load_text(&sonnets_path()).unwrap()
}

fn sample_texts() -> Vec<String> {
    vec![
        "The quick brown fox jumps over the lazy dog. It was not amused.".to_string(),
        UNICODE_SAMPLE.to_string(),
        "  \n\t leading and trailing whitespace \t\n  ".to_string(),
        "a literal <eos> and <pad> in user text must survive".to_string(),
    ]
}

/// A ~300 KB text with lines of varied length, crossing many chunk ends.
fn large_text() -> String {
    let base = sonnets();
    let mut text = String::new();
    while text.len() < 300_000 {
        text.push_str(&base);
        text.push_str(UNICODE_SAMPLE);
    }
    text
}

fn training_text() -> String {
    let mut text = sonnets();
    for sample in sample_texts() {
        text.push_str(&sample);
    }
    text
}

fn assert_round_trips(tokenizer: &TextTokenizer, text: &str) {
    let ids = tokenizer.encode(text).unwrap();
    assert_eq!(tokenizer.decode(&ids), text, "kind {}", tokenizer.kind());
}

#[test]
fn bpe_round_trips_exactly() {
    let tokenizer = TextTokenizer::train(TokenizerKind::Bpe, &sonnets(), 512).unwrap();
    for text in sample_texts() {
        assert_round_trips(&tokenizer, &text);
    }
    assert_round_trips(&tokenizer, &large_text());
}

#[test]
fn char_round_trips_exactly() {
    let tokenizer = TextTokenizer::train(TokenizerKind::Char, &training_text(), 1000).unwrap();
    for text in sample_texts() {
        assert_round_trips(&tokenizer, &text);
    }
    assert_round_trips(&tokenizer, &large_text());
}

#[test]
fn char_encoding_gives_one_id_per_char_across_chunks() {
    let text = large_text();
    let tokenizer = TextTokenizer::train(TokenizerKind::Char, &text, 1000).unwrap();
    let ids = tokenizer.encode(&text).unwrap();
    assert_eq!(ids.len(), text.chars().count());
}

#[test]
fn bpe_compresses_text() {
    let text = sonnets();
    let tokenizer = TextTokenizer::train(TokenizerKind::Bpe, &text, 1024).unwrap();
    let ids = tokenizer.encode(&text).unwrap();
    assert!(ids.len() * 2 < text.len(), "{} ids", ids.len());
    assert!(tokenizer.vocab_size() <= 1024);
}

#[test]
fn specials_have_fixed_ids_for_both_kinds() {
    for kind in [TokenizerKind::Bpe, TokenizerKind::Char] {
        let tokenizer = TextTokenizer::train(kind, &sonnets(), 300).unwrap();
        for (id, name) in (0u32..).zip(TextTokenizer::SPECIAL_TOKENS) {
            assert_eq!(tokenizer.token_to_id(name), Some(id));
            assert_eq!(tokenizer.token_text(id), name);
        }
    }
}

#[test]
fn literal_special_text_is_not_a_special_token() {
    let tokenizer = TextTokenizer::train(TokenizerKind::Bpe, &sonnets(), 400).unwrap();
    let ids = tokenizer.encode("<eos>").unwrap();
    assert!(ids.iter().all(|&id| id > TextTokenizer::EOS_ID));
}

#[test]
fn decode_skips_specials_and_replaces_unknown_ids() {
    let tokenizer = TextTokenizer::from_alphabet(&['a', 'b']).unwrap();
    let a = tokenizer.token_to_id("a").unwrap();
    let b = tokenizer.token_to_id("b").unwrap();
    let ids = [
        TextTokenizer::BOS_ID,
        a,
        999,
        b,
        TextTokenizer::UNK_ID,
        TextTokenizer::EOS_ID,
    ];
    assert_eq!(tokenizer.decode(&ids), "a\u{FFFD}b\u{FFFD}");
}

#[test]
fn char_tokenizer_drops_rarest_chars_to_unk() {
    let tokenizer = TextTokenizer::train(TokenizerKind::Char, "aaaabbbc", 6).unwrap();
    assert_eq!(tokenizer.vocab_size(), 6);
    let ids = tokenizer.encode("abc").unwrap();
    assert_eq!(ids[2], TextTokenizer::UNK_ID);
    assert_eq!(tokenizer.decode(&ids), "ab\u{FFFD}");
}

#[test]
fn char_vocab_is_ordered_by_frequency_then_char() {
    let tokenizer = TextTokenizer::train(TokenizerKind::Char, "ccbbba", 100).unwrap();
    let order: Vec<String> = (4..7).map(|id| tokenizer.token_text(id)).collect();
    assert_eq!(order, ["b", "c", "a"]);
}

#[test]
fn from_alphabet_keeps_the_given_order() {
    let tokenizer = TextTokenizer::from_alphabet(&['z', 'a', 'é']).unwrap();
    assert_eq!(tokenizer.vocab_size(), 7);
    assert_eq!(tokenizer.encode("zaé").unwrap(), vec![4, 5, 6]);
}

#[test]
fn from_alphabet_rejects_duplicates_and_empty() {
    assert!(matches!(
        TextTokenizer::from_alphabet(&['a', 'b', 'a']),
        Err(DataError::InvalidAlphabet { .. })
    ));
    assert!(matches!(
        TextTokenizer::from_alphabet(&[]),
        Err(DataError::InvalidAlphabet { .. })
    ));
}

#[test]
fn bpe_vocab_below_bytes_plus_specials_is_rejected() {
    match TextTokenizer::train(TokenizerKind::Bpe, "some text", 258) {
        Err(DataError::VocabTooSmall { minimum, .. }) => assert_eq!(minimum, 259),
        other => panic!("expected VocabTooSmall, got {other:?}"),
    }
}

#[test]
fn token_text_shows_real_spaces_for_byte_level_tokens() {
    let tokenizer = TextTokenizer::train(TokenizerKind::Bpe, &sonnets(), 600).unwrap();
    let ids = tokenizer.encode(" the").unwrap();
    assert_eq!(ids.len(), 1, "' the' should be one token in Shakespeare");
    assert_eq!(tokenizer.token_text(ids[0]), " the");
}

#[test]
fn save_and_load_preserve_kind_ids_and_fingerprint() {
    let dir = unique_temp_dir("tok-save");
    for kind in [TokenizerKind::Bpe, TokenizerKind::Char] {
        let tokenizer = TextTokenizer::train(kind, &sonnets(), 400).unwrap();
        let path = dir.join(format!("{kind}.json"));
        tokenizer.save(&path).unwrap();
        let loaded = TextTokenizer::load(&path).unwrap();
        assert_eq!(loaded.kind(), kind);
        assert_eq!(loaded.vocab_size(), tokenizer.vocab_size());
        assert_eq!(loaded.fingerprint(), tokenizer.fingerprint());
        let text = "Shall I compare thee to a summer's day?\r\n";
        assert_eq!(
            loaded.encode(text).unwrap(),
            tokenizer.encode(text).unwrap()
        );
    }
}

#[test]
fn fingerprints_differ_between_tokenizers() {
    let small = TextTokenizer::train(TokenizerKind::Bpe, &sonnets(), 300).unwrap();
    let large = TextTokenizer::train(TokenizerKind::Bpe, &sonnets(), 400).unwrap();
    assert_ne!(small.fingerprint(), large.fingerprint());
}

#[test]
fn training_is_deterministic() {
    let first = TextTokenizer::train(TokenizerKind::Bpe, &sonnets(), 400).unwrap();
    let second = TextTokenizer::train(TokenizerKind::Bpe, &sonnets(), 400).unwrap();
    assert_eq!(first.fingerprint(), second.fingerprint());
}

#[test]
fn load_reports_missing_and_corrupt_files() {
    let dir = unique_temp_dir("tok-load");
    let missing = dir.join("tokenizer.json");
    assert!(matches!(
        TextTokenizer::load(&missing),
        Err(DataError::NotFound { .. })
    ));
    std::fs::write(&missing, "{ not json").unwrap();
    assert!(matches!(
        TextTokenizer::load(&missing),
        Err(DataError::CorruptTokenizer { .. })
    ));
}

#[test]
fn load_rejects_foreign_tokenizers() {
    let dir = unique_temp_dir("tok-foreign");
    let path = dir.join("tokenizer.json");
    let vocab: Vocab = [("x".to_string(), 0), ("y".to_string(), 1)]
        .into_iter()
        .collect();
    let model = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .build()
        .unwrap();
    let mut foreign = Tokenizer::new(model);
    foreign.with_decoder(Some(Fuse::new()));
    foreign.save(&path, false).unwrap();
    assert!(matches!(
        TextTokenizer::load(&path),
        Err(DataError::CorruptTokenizer { .. })
    ));
}

#[test]
fn kind_parses_and_displays() {
    assert_eq!("bpe".parse::<TokenizerKind>().unwrap(), TokenizerKind::Bpe);
    assert_eq!(
        "Char".parse::<TokenizerKind>().unwrap(),
        TokenizerKind::Char
    );
    assert!(matches!(
        "word".parse::<TokenizerKind>(),
        Err(DataError::UnknownTokenizerKind { .. })
    ));
    assert_eq!(TokenizerKind::Char.to_string(), "char");
    assert_eq!(
        serde_json::to_string(&TokenizerKind::Bpe).unwrap(),
        "\"bpe\""
    );
}

#[test]
fn chunks_end_at_newlines_and_rebuild_the_text() {
    let text = "line one\nline two\nline three\n".repeat(100);
    let chunks = split_into_chunks(&text, 64);
    assert!(chunks.len() > 10);
    assert!(chunks.iter().all(|c| c.ends_with('\n') && c.len() <= 64));
    assert_eq!(chunks.concat(), text);
}

#[test]
fn chunks_of_a_giant_line_split_on_char_boundaries() {
    let text = "é🦀".repeat(100);
    let chunks = split_into_chunks(&text, 7);
    assert_eq!(chunks.concat(), text);
    assert!(chunks.iter().all(|c| !c.is_empty()));
}
