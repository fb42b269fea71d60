//! Words, and how many of a sample's words the training text contains: the plainest sign that
//! a young model writes language rather than token soup, readable long before gen-PPL means
//! anything and without a reference model.

use std::collections::HashSet;

/// Runs longer than this are not words anyone reads (base64, hashes); they are skipped so a
/// pathological file cannot blow up the lexicon with one huge entry.
const MAX_WORD_CHARS: usize = 48;

/// The words of `text`: maximal runs of alphabetic characters, lowercased. "Don't" gives
/// "don" and "t" — the same split applies to the corpus and the samples, so it cancels out.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty() && w.chars().count() <= MAX_WORD_CHARS)
        .map(str::to_lowercase)
}

/// The set of words a corpus uses.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    words: HashSet<Box<str>>,
}

impl Lexicon {
    pub fn from_text(text: &str) -> Self {
        let mut lexicon = Self::default();
        lexicon.extend(text);
        lexicon
    }

    /// Adds the words of `text`.
    pub fn extend(&mut self, text: &str) {
        self.words.extend(words(text).map(String::into_boxed_str));
    }

    /// Distinct words known.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn contains(&self, word: &str) -> bool {
        self.words.contains(&*word.to_lowercase())
    }

    /// Share of the words of `texts` (counted with repeats) that the lexicon holds; `None`
    /// when the texts hold no word at all (only spaces, newlines or punctuation).
    pub fn real_word_share<S: AsRef<str>>(&self, texts: &[S]) -> Option<f64> {
        let (mut known, mut total) = (0usize, 0usize);
        for text in texts {
            for word in words(text.as_ref()) {
                total += 1;
                known += usize::from(self.words.contains(word.as_str()));
            }
        }
        (total > 0).then(|| known as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_alphabetic_runs() {
        let found: Vec<String> =
            words("Shall I compare thee, to a summer's day?\n42 Ünder").collect();
        assert_eq!(
            found,
            [
                "shall", "i", "compare", "thee", "to", "a", "summer", "s", "day", "ünder"
            ]
        );
        assert_eq!(words(" \n\n,.;  12 ").count(), 0);
    }

    #[test]
    fn overlong_runs_are_not_words() {
        let long = "a".repeat(MAX_WORD_CHARS + 1);
        assert_eq!(
            words(&format!("ok {long} fine")).collect::<Vec<_>>(),
            ["ok", "fine"]
        );
    }

    #[test]
    fn real_word_share_counts_repeats_and_ignores_case() {
        let lexicon = Lexicon::from_text("The cat sat on the mat.");
        assert_eq!(lexicon.len(), 5);
        assert!(lexicon.contains("CAT"));
        // the, cat, xq, the, zzz: 3 of 5 words are real.
        let share = lexicon.real_word_share(&["The cat xq", "the zzz"]).unwrap();
        assert!((share - 0.6).abs() < 1e-12, "{share}");
        assert_eq!(lexicon.real_word_share(&["mat"]), Some(1.0));
    }

    #[test]
    fn texts_without_words_have_no_share() {
        let lexicon = Lexicon::from_text("words here");
        assert_eq!(lexicon.real_word_share(&["\n\n\n", "  ,. "]), None);
        let empty: [&str; 0] = [];
        assert_eq!(lexicon.real_word_share(&empty), None);
    }
}
