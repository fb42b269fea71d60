//! Simple, exact metrics over token sequences.

use std::collections::BTreeMap;

/// Fraction of `items` for which `check` holds (0 for an empty list).
pub fn fraction<T>(items: &[T], check: impl Fn(&T) -> bool) -> f64 {
    if items.is_empty() {
        return 0.0;
    }
    items.iter().filter(|item| check(item)).count() as f64 / items.len() as f64
}

/// Entropy (nats) of the unigram token distribution of `sequences`: collapse to a few tokens
/// shows up as a drop against held-out text.
pub fn unigram_entropy(sequences: &[Vec<u32>]) -> f64 {
    entropy(&ngram_counts(sequences, 1))
}

/// How often each n-gram occurs; n-grams never cross sequence boundaries. Ordered, so sums
/// over it (entropy, divergences) come out bit-identical run after run.
pub fn ngram_counts(sequences: &[Vec<u32>], n: usize) -> BTreeMap<Vec<u32>, usize> {
    let mut counts = BTreeMap::new();
    for sequence in sequences {
        for gram in sequence.windows(n.max(1)) {
            *counts.entry(gram.to_vec()).or_default() += 1;
        }
    }
    counts
}

/// Shannon entropy (nats) of the distribution given by `counts`.
pub fn entropy<K>(counts: &BTreeMap<K, usize>) -> f64 {
    let total: usize = counts.values().sum();
    if total == 0 {
        return 0.0;
    }
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.ln()
        })
        .sum()
}

/// Jensen–Shannon divergence (nats, between 0 and ln 2) of the distributions given by two
/// count tables: symmetric, finite even when one side has n-grams the other never produced.
pub fn js_divergence<K: Ord>(p: &BTreeMap<K, usize>, q: &BTreeMap<K, usize>) -> f64 {
    let (p_total, q_total) = (p.values().sum::<usize>(), q.values().sum::<usize>());
    if p_total == 0 || q_total == 0 {
        return if p_total == q_total {
            0.0
        } else {
            std::f64::consts::LN_2
        };
    }
    // Σ over the union of ½·p·ln(p/m) + ½·q·ln(q/m), m = (p+q)/2.
    let half_kl = |a: f64, b: f64| {
        if a > 0.0 {
            0.5 * a * (2.0 * a / (a + b)).ln()
        } else {
            0.0
        }
    };
    let mut total = 0.0;
    for (key, &count) in p {
        let a = count as f64 / p_total as f64;
        let b = q.get(key).map_or(0.0, |&c| c as f64 / q_total as f64);
        total += half_kl(a, b) + half_kl(b, a);
    }
    for (key, &count) in q {
        if !p.contains_key(key) {
            total += half_kl(count as f64 / q_total as f64, 0.0);
        }
    }
    total.clamp(0.0, std::f64::consts::LN_2)
}

/// distinct-n: unique n-grams over all n-grams of all sequences (1 = nothing repeats).
pub fn distinct_n(sequences: &[Vec<u32>], n: usize) -> f64 {
    let counts = ngram_counts(sequences, n);
    let total: usize = counts.values().sum();
    if total == 0 {
        return 0.0;
    }
    counts.len() as f64 / total as f64
}

/// Fraction of n-grams that already occurred earlier in the same sequence: loops such as
/// "the the the" score high, ordinary text (n = 4) near 0.
pub fn repetition_rate(sequences: &[Vec<u32>], n: usize) -> f64 {
    let (mut repeated, mut total) = (0usize, 0usize);
    for sequence in sequences {
        let mut seen = std::collections::BTreeSet::new();
        for gram in sequence.windows(n.max(1)) {
            total += 1;
            if !seen.insert(gram) {
                repeated += 1;
            }
        }
    }
    if total == 0 {
        0.0
    } else {
        repeated as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_uniform_tokens_is_log_count() {
        let seqs = vec![vec![0, 1, 2, 3], vec![3, 2, 1, 0]];
        assert!((unigram_entropy(&seqs) - 4f64.ln()).abs() < 1e-12);
        assert_eq!(unigram_entropy(&[vec![5, 5, 5]]), 0.0);
    }

    #[test]
    fn js_divergence_is_zero_for_identical_and_ln2_for_disjoint() {
        let a = ngram_counts(&[vec![1, 2, 3, 3]], 1);
        let scaled = ngram_counts(&[vec![1, 2, 3, 3, 1, 2, 3, 3]], 1);
        assert!(js_divergence(&a, &scaled).abs() < 1e-12);
        let b = ngram_counts(&[vec![7, 8, 9]], 1);
        assert!((js_divergence(&a, &b) - std::f64::consts::LN_2).abs() < 1e-12);
        // Symmetric, and strictly between the two for partial overlap.
        let c = ngram_counts(&[vec![1, 2, 9, 9]], 1);
        let (ac, ca) = (js_divergence(&a, &c), js_divergence(&c, &a));
        assert!((ac - ca).abs() < 1e-12);
        assert!(ac > 0.01 && ac < std::f64::consts::LN_2 - 0.01, "{ac}");
    }

    #[test]
    fn entropy_of_a_uniform_vocabulary_is_log_v() {
        let all: Vec<u32> = (0..50).collect();
        assert!((entropy(&ngram_counts(&[all], 1)) - 50f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn distinct_n_and_repetition_on_known_strings() {
        // "a b a b a b": bigrams ab ba ab ba ab → 2 distinct of 5.
        let abab = vec![vec![0, 1, 0, 1, 0, 1]];
        assert!((distinct_n(&abab, 1) - 2.0 / 6.0).abs() < 1e-12);
        assert!((distinct_n(&abab, 2) - 2.0 / 5.0).abs() < 1e-12);
        assert!((distinct_n(&abab, 3) - 2.0 / 4.0).abs() < 1e-12);
        assert!((repetition_rate(&abab, 2) - 3.0 / 5.0).abs() < 1e-12);
        let fresh = vec![vec![1, 2, 3, 4, 5]];
        assert_eq!(distinct_n(&fresh, 2), 1.0);
        assert_eq!(repetition_rate(&fresh, 2), 0.0);
        // n-grams never span two sequences.
        assert_eq!(ngram_counts(&[vec![1], vec![2]], 2).len(), 0);
    }

    #[test]
    fn fraction_counts_matches() {
        assert_eq!(fraction(&[1, 2, 3, 4], |&x| x % 2 == 0), 0.5);
        assert_eq!(fraction::<u8>(&[], |_| true), 0.0);
    }
}
