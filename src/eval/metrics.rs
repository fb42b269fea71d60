//! Simple, exact metrics over token sequences.

use std::collections::HashMap;

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
    let mut counts: HashMap<u32, usize> = HashMap::new();
    let mut total = 0usize;
    for id in sequences.iter().flatten() {
        *counts.entry(*id).or_default() += 1;
        total += 1;
    }
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
    fn fraction_counts_matches() {
        assert_eq!(fraction(&[1, 2, 3, 4], |&x| x % 2 == 0), 0.5);
        assert_eq!(fraction::<u8>(&[], |_| true), 0.0);
    }
}
