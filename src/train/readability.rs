//! How readable a text model's preview samples are, and what that says about where its
//! training stands. Early on a denoiser predicts the most frequent token everywhere, so its
//! samples are blank lines; then token soup; then words. Both front ends show the stage with
//! every preview, so nobody mistakes "too early" for "broken" (docs/first-minutes.md).

use serde::{Deserialize, Serialize};

use crate::data::Lexicon;
use crate::metrics::unigram_entropy;

/// Training tokens after which the default settings (BPE 2048, preset tiny, L = 128, batch
/// 16, the default decoding) wrote more than half real words in 32-step samples of
/// `tiny_sonnets.txt` (96 KB): 78% at step 100 (docs/first-minutes.md). With the run's own
/// throughput this turns into minutes on the machine at hand.
pub const TOKENS_TO_WORDS: f64 = 100.0 * 16.0 * 128.0;

/// What one preview's samples read like.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Readability {
    /// Share of the samples' words that occur in the training text; `None` when the samples
    /// hold no word at all (only spaces, newlines, punctuation).
    pub real_words: Option<f64>,
    /// Unigram entropy (nats) of the samples' tokens.
    pub entropy: f64,
    /// The same for as many held-out sequences as there are samples: the plug-in estimate
    /// is biased low on few tokens, so the data is measured on an equal footing.
    pub data_entropy: f64,
}

/// Where a text model's samples are on the way to language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Nearly every position holds the corpus's most frequent token (often a newline).
    MostFrequentToken,
    /// Varied tokens, few of them forming words of the text, or as varied as random tokens.
    TokenSoup,
    /// Words are appearing: a quarter to half of them are real.
    FormingWords,
    /// At least half of the words are words of the text.
    Words,
}

/// Below this share of the data's entropy the samples are one or two tokens repeated.
const COLLAPSED_ENTROPY_RATIO: f64 = 0.3;
/// Above this the samples are closer to random tokens than to the text. An untrained model
/// drawing BPE tokens lands here (1.34 on the sonnets) while 43% of its "words" are real,
/// because many BPE tokens are whole words: real words alone would call it readable.
const RANDOM_ENTROPY_RATIO: f64 = 1.2;

impl Readability {
    /// Measures samples (`texts` and their `tokens`) against the training text's `lexicon`
    /// and `held_out` sequences of the data (as many as there are samples).
    pub fn measure(
        texts: &[String],
        tokens: &[Vec<u32>],
        lexicon: &Lexicon,
        held_out: &[Vec<u32>],
    ) -> Self {
        Self {
            real_words: lexicon.real_word_share(texts),
            entropy: unigram_entropy(tokens),
            data_entropy: unigram_entropy(held_out),
        }
    }

    /// Sample entropy over the data's (0 when the data has none).
    pub fn entropy_ratio(&self) -> f64 {
        if self.data_entropy > 0.0 {
            self.entropy / self.data_entropy
        } else {
            0.0
        }
    }

    pub fn stage(&self) -> Stage {
        let real = self.real_words.unwrap_or(0.0);
        if self.real_words.is_none() || self.entropy_ratio() < COLLAPSED_ENTROPY_RATIO {
            Stage::MostFrequentToken
        } else if real < 0.25 || self.entropy_ratio() > RANDOM_ENTROPY_RATIO {
            Stage::TokenSoup
        } else if real < 0.5 {
            Stage::FormingWords
        } else {
            Stage::Words
        }
    }

    /// The numbers in one line: `real words 34%, entropy 3.10 of the data's 4.85 nats`.
    pub fn summary(&self) -> String {
        let real = self.real_words.map_or_else(
            || "no words at all".to_string(),
            |r| format!("real words {:.0}%", r * 100.0),
        );
        // + 0.0: one repeated token has entropy -0, which would print as "-0.00".
        format!(
            "{real}, entropy {:.2} of the data's {:.2} nats",
            self.entropy + 0.0,
            self.data_entropy
        )
    }

    /// What the stage means, with an estimate of when words come: `tokens_seen` training
    /// tokens so far at `tokens_per_sec`.
    pub fn advice(&self, tokens_seen: f64, tokens_per_sec: f64) -> String {
        let wait = words_expected_in(tokens_seen, tokens_per_sec);
        match self.stage() {
            Stage::MostFrequentToken => {
                format!("still at the most-frequent-token stage; {wait}")
            }
            Stage::TokenSoup => format!("token soup, few real words yet; {wait}"),
            Stage::FormingWords => format!("words are forming; {wait}"),
            Stage::Words => {
                "most words are words of the text; sentences come with more training".to_string()
            }
        }
    }
}

/// "expect words after about N more minutes on this machine", from `TOKENS_TO_WORDS` and the
/// run's measured throughput; past that point, say that this text and setting need longer.
fn words_expected_in(tokens_seen: f64, tokens_per_sec: f64) -> String {
    let left = TOKENS_TO_WORDS - tokens_seen;
    if left <= 0.0 {
        return "this text or setting needs longer than the default on a small file; keep \
                training (docs/first-minutes.md)"
            .to_string();
    }
    if tokens_per_sec <= 0.0 || !tokens_per_sec.is_finite() {
        return "expect words after about 1 million training tokens".to_string();
    }
    let minutes = (left / tokens_per_sec / 60.0).ceil().max(1.0);
    format!("expect words in about {minutes:.0} more minutes on this machine")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readability(real_words: Option<f64>, entropy: f64) -> Readability {
        Readability {
            real_words,
            entropy,
            data_entropy: 4.0,
        }
    }

    #[test]
    fn measures_words_and_entropy_against_the_data() {
        let lexicon = Lexicon::from_text("the cat sat");
        let texts = ["the dog sat".to_string(), "\n".to_string()];
        let tokens = vec![vec![1, 2, 3], vec![4]];
        let held_out = vec![vec![1, 1], vec![2, 2]];
        let r = Readability::measure(&texts, &tokens, &lexicon, &held_out);
        assert!((r.real_words.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.entropy - 4f64.ln()).abs() < 1e-12);
        assert!((r.data_entropy - 2f64.ln()).abs() < 1e-12);
        assert!((r.entropy_ratio() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn stages_follow_words_and_entropy() {
        assert_eq!(readability(None, 2.0).stage(), Stage::MostFrequentToken);
        assert_eq!(
            readability(Some(0.9), 0.5).stage(),
            Stage::MostFrequentToken
        );
        assert_eq!(readability(Some(0.1), 3.0).stage(), Stage::TokenSoup);
        // Real-looking words at random-token entropy: an untrained model drawing BPE tokens.
        assert_eq!(readability(Some(0.6), 5.0).stage(), Stage::TokenSoup);
        assert_eq!(readability(Some(0.3), 3.0).stage(), Stage::FormingWords);
        assert_eq!(readability(Some(0.5), 3.0).stage(), Stage::Words);
    }

    #[test]
    fn the_wait_comes_from_the_measured_tokens_and_this_run_s_speed() {
        let early = readability(None, 0.0);
        // Half the tokens seen at 500 tokens/s: 102,400 left ≈ 3.4 → 4 minutes.
        let line = early.advice(TOKENS_TO_WORDS / 2.0, 500.0);
        assert!(
            line.starts_with("still at the most-frequent-token stage"),
            "{line}"
        );
        assert!(line.contains("about 4 more minutes"), "{line}");
        let late = readability(Some(0.1), 3.0).advice(TOKENS_TO_WORDS * 2.0, 1000.0);
        assert!(late.contains("needs longer"), "{late}");
        assert!(
            !readability(Some(0.6), 3.0)
                .advice(0.0, 1.0)
                .contains("minutes")
        );
    }

    #[test]
    fn summary_reads_as_percent_and_nats() {
        assert_eq!(
            readability(Some(0.342), 3.1).summary(),
            "real words 34%, entropy 3.10 of the data's 4.00 nats"
        );
        assert_eq!(
            readability(None, -0.0).summary(),
            "no words at all, entropy 0.00 of the data's 4.00 nats"
        );
    }
}
