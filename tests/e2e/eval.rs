//! Evaluation: the autoregressive reference model and the metric suite on real text.

use flm::data::{PackedSequences, TextTokenizer, load_text};
use flm::device::cpu_device;
use flm::eval::reference::{conditional_perplexity, perplexity};
use flm::eval::report::{HeldOut, SampleMetrics, Yardstick};
use flm::train::{NewModelKind, load_model};

use crate::common::*;

/// A micro reference model trained on the sonnets, with what the tests look at.
struct Reference {
    model: flm::model::Dit,
    tokenizer: TextTokenizer,
    /// The corpus as sequences of the model's training length.
    sequences: Vec<Vec<u32>>,
    losses: Vec<(u64, f64)>,
}

fn reference_on_sonnets(name: &str) -> Reference {
    let out = temp_dir(name);
    let mut request = micro_request(&out, sonnets().to_str().unwrap());
    request.kind = NewModelKind::Autoregressive;
    request.steps = Some(60);
    let (_, events) = run_request(&request);
    let loaded = load_model(&out, &cpu_device()).expect("reference loads");
    let ids = loaded
        .tokenizer
        .encode(&load_text(&sonnets()).unwrap())
        .unwrap();
    let packed = PackedSequences::pack(&ids, 32);
    Reference {
        model: loaded.model,
        tokenizer: loaded.tokenizer,
        sequences: (0..packed.len())
            .map(|i| packed.sequence(i).to_vec())
            .collect(),
        losses: step_losses(&events),
    }
}

#[test]
fn reference_model_learns_and_prefers_real_text_to_shuffled_words() {
    let Reference {
        model,
        tokenizer,
        sequences,
        losses,
    } = reference_on_sonnets("ar-learns");
    let first = losses.first().unwrap().1;
    let last = losses.iter().rev().take(5).map(|(_, l)| l).sum::<f64>() / 5.0;
    assert!(last < first - 0.5, "loss did not go down: {first} → {last}");

    // The same words in a shuffled order, tokenized the same way.
    let text = load_text(&sonnets()).unwrap();
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let mut rng = flm::rng::stream_rng(3, 0);
    use rand::seq::SliceRandom;
    words.shuffle(&mut rng);
    let shuffled_ids = tokenizer.encode(&words.join(" ")).unwrap();
    let shuffled = PackedSequences::pack(&shuffled_ids, 32);
    let shuffled: Vec<Vec<u32>> = (0..64).map(|i| shuffled.sequence(i).to_vec()).collect();
    let real: Vec<Vec<u32>> = sequences.into_iter().take(64).collect();
    let (real_ppl, shuffled_ppl) = (
        perplexity(&model, &real, 32, 16),
        perplexity(&model, &shuffled, 32, 16),
    );
    assert!(
        real_ppl < shuffled_ppl,
        "real text {real_ppl:.2} should be likelier than shuffled words {shuffled_ppl:.2}"
    );

    // Continuations: the second half of each sequence is likelier after its own first half
    // than after another sequence's.
    assert_eq!(conditional_perplexity(&model, &real, 32, 16, 0), real_ppl);
    let mismatched: Vec<Vec<u32>> = (0..real.len())
        .map(|i| [&real[(i + 1) % real.len()][..16], &real[i][16..]].concat())
        .collect();
    let (own, other) = (
        conditional_perplexity(&model, &real, 32, 16, 16),
        conditional_perplexity(&model, &mismatched, 32, 16, 16),
    );
    assert!(
        own < other,
        "after its own prefix {own:.2}, after another {other:.2}"
    );
}

#[test]
fn degenerate_samples_fool_gen_ppl_but_not_the_distribution_metrics() {
    let Reference {
        model, sequences, ..
    } = reference_on_sonnets("ar-degenerate");
    let (held_out, real) = sequences.split_at(sequences.len() / 2);
    let held_out = HeldOut::new(held_out.to_vec(), 0);
    let real: Vec<Vec<u32>> = real.iter().take(64).cloned().collect();
    // A "sampler" gaming gen-PPL: it repeats whichever of the ten most frequent tokens the
    // reference model finds likeliest when repeated.
    let counts = flm::metrics::ngram_counts(&held_out.sequences, 1);
    let mut frequent: Vec<(&Vec<u32>, &usize)> = counts.iter().collect();
    frequent.sort_by_key(|(_, c)| std::cmp::Reverse(**c));
    let degenerate = frequent
        .iter()
        .take(10)
        .map(|(token, _)| vec![vec![token[0]; 32]; 64])
        .min_by(|a, b| perplexity(&model, a, 32, 16).total_cmp(&perplexity(&model, b, 32, 16)))
        .unwrap();

    let yardstick = Yardstick {
        held_out: &held_out,
        reference: Some((&model, 32)),
        task: None,
        words: None,
        scored_from: 0,
    };
    let good = SampleMetrics::compute(&real, yardstick);
    let bad = SampleMetrics::compute(&degenerate, yardstick);
    // gen-PPL alone rates the degenerate text about as well as real text…
    assert!(
        bad.gen_ppl.unwrap() < 1.25 * good.gen_ppl.unwrap(),
        "premise: repetition scores well under gen-PPL ({:?} vs {:?})",
        bad.gen_ppl,
        good.gen_ppl
    );
    // …every distribution metric sees through it.
    assert!(
        bad.js_unigram > good.js_unigram + 0.2,
        "{bad:?} vs {good:?}"
    );
    assert!(bad.js_bigram > good.js_bigram + 0.2, "{bad:?} vs {good:?}");
    assert!(bad.unigram_entropy < 0.01 && good.unigram_entropy > 2.0);
    assert!(bad.repetition > 0.9 && good.repetition < 0.2);
    assert!(bad.distinct[1] < good.distinct[1]);
}
