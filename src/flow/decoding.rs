//! The last step of sampling (DESIGN §5a): from the final distribution per position to a
//! token. Argmax is the paper's choice; drawing from the distribution (sharpened or flattened
//! by a temperature, cut to its nucleus `top_p`) keeps an early model, whose every position
//! favours the most frequent token, from writing that token everywhere.

use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::rng::stream_rng;

/// How the final distribution becomes tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", tag = "mode")]
pub enum Decoding {
    /// The most likely token at every position.
    #[default]
    Argmax,
    /// A draw from `p^(1/temperature)`, renormalized, restricted to the smallest set of most
    /// likely tokens whose mass reaches `top_p`.
    Draw { temperature: f64, top_p: f64 },
}

impl Decoding {
    /// What text models get unless the person chooses: a draw at T = 0.8 within the top 0.9
    /// of the mass. Argmax turns a young model into its most frequent tokens (entropy a third
    /// of the data's after 3 minutes on a sonnet file), while this draw keeps the entropy
    /// within 10% of the data's with the lowest bigram divergence (docs/first-minutes.md).
    pub const TEXT_DEFAULT: Decoding = Decoding::Draw {
        temperature: 0.8,
        top_p: 0.9,
    };

    /// The default for a model trained on a built-in task (`task`) or on text: argmax on
    /// tasks, whose validity is judged on the most likely sequence (and the paper's choice),
    /// the draw on text.
    pub fn default_for(task: bool) -> Self {
        if task {
            Decoding::Argmax
        } else {
            Self::TEXT_DEFAULT
        }
    }
}

/// Temperatures below this are argmax in all but name, and would overflow `p^(1/T)`.
pub const MIN_TEMPERATURE: f64 = 1e-3;

impl Decoding {
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Decoding::Argmax => Ok(()),
            Decoding::Draw { temperature, top_p } => {
                if !(temperature.is_finite() && (MIN_TEMPERATURE..=10.0).contains(&temperature)) {
                    return Err(format!(
                        "the temperature must be in [{MIN_TEMPERATURE}, 10], got {temperature}"
                    ));
                }
                if !(top_p > 0.0 && top_p <= 1.0) {
                    return Err(format!("top-p must be in (0, 1], got {top_p}"));
                }
                Ok(())
            }
        }
    }

    /// A short description for logs and reports ("argmax", "T=0.8 p=0.95").
    pub fn describe(&self) -> String {
        match self {
            Decoding::Argmax => "argmax".into(),
            Decoding::Draw { temperature, top_p } => format!("T={temperature} p={top_p}"),
        }
    }
}

/// Tokens (B rows of L ids) from final distributions `probs` (B, L, V). Draws use the stream
/// `(seed, stream)` of a dedicated counter range, one uniform per position, so a seed
/// reproduces its samples and argmax runs draw nothing.
pub fn decode(probs: Tensor<3>, decoding: Decoding, seed: u64, stream: u64) -> Vec<Vec<u32>> {
    match decoding {
        Decoding::Argmax => argmax_tokens(probs),
        Decoding::Draw { temperature, top_p } => {
            draw_tokens(probs, temperature.max(MIN_TEMPERATURE), top_p, seed, stream)
        }
    }
}

/// Per-row argmax of (B, L, V), read back as token ids.
pub fn argmax_tokens(z: Tensor<3>) -> Vec<Vec<u32>> {
    let [batch, len, _] = z.dims();
    let ids = z.argmax(2).reshape([batch * len]);
    read_ids(ids.float(), len)
}

/// Inverse-CDF draws over the nucleus, computed on the device: only B·L uniforms go up and
/// B·L ids come back, whatever V is.
fn draw_tokens(
    probs: Tensor<3>,
    temperature: f64,
    top_p: f64,
    seed: u64,
    stream: u64,
) -> Vec<Vec<u32>> {
    let [batch, len, vocab] = probs.dims();
    let device = probs.device();
    // p^(1/T), renormalized: the softmax of log p / T.
    let tempered = burn::tensor::activation::softmax(probs.clamp_min(1e-30).log() / temperature, 2);
    let (sorted, order) = tempered.sort_descending_with_indices(2);
    let cumulative = sorted.clone().cumsum(2);
    // A token is in the nucleus when the mass before it is below top_p (the first always is).
    let before = cumulative.clone() - sorted.clone();
    let kept = sorted.mask_fill(before.greater_equal_elem(top_p), 0.0);
    let kept_cumulative = kept.clone().cumsum(2);
    let total = kept_cumulative.clone().narrow(2, vocab - 1, 1); // (B, L, 1)
    let uniforms = uniforms(batch * len, seed, stream, &device).reshape([batch, len, 1]);
    let threshold = total * uniforms;
    // Index (in sorted order) of the first token whose cumulative mass passes the threshold.
    let rank = kept_cumulative
        .lower_equal(threshold)
        .int()
        .sum_dim(2)
        .clamp_max(vocab as i64 - 1);
    let ids = order.gather(2, rank).reshape([batch * len]);
    read_ids(ids.float(), len)
}

/// `count` uniforms in [0, 1) from the decoding stream of `(seed, stream)`.
fn uniforms(count: usize, seed: u64, stream: u64, device: &Device) -> Tensor<1> {
    // Far from the sampler's noise streams (small numbers and the top bit).
    let mut rng = stream_rng(seed, (1 << 62) | stream);
    let values: Vec<f32> = (0..count).map(|_| rng.random::<f32>()).collect();
    Tensor::from_data(TensorData::new(values, [count]), device)
}

fn read_ids(ids: Tensor<1>, len: usize) -> Vec<Vec<u32>> {
    let ids: Vec<f32> = ids
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("token ids");
    ids.chunks(len.max(1))
        .map(|row| row.iter().map(|&id| id as u32).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use burn::tensor::activation::softmax;

    #[test]
    fn text_draws_by_default_and_tasks_take_the_argmax() {
        assert_eq!(Decoding::default_for(true), Decoding::Argmax);
        let text = Decoding::default_for(false);
        assert!(
            matches!(text, Decoding::Draw { temperature, top_p } if temperature < 1.0 && top_p < 1.0)
        );
        text.validate().unwrap();
    }

    fn random_probs(shape: [usize; 3], seed: u64, device: &Device) -> Tensor<3> {
        let values = crate::rng::standard_normal(&mut stream_rng(seed, 0), shape.iter().product());
        softmax(
            Tensor::<3>::from_data(TensorData::new(values, shape), device) * 2.0,
            2,
        )
    }

    #[test]
    fn a_near_zero_temperature_is_argmax() {
        let device = crate::device::cpu_device();
        let probs = random_probs([3, 7, 11], 1, &device);
        let argmax = decode(probs.clone(), Decoding::Argmax, 0, 0);
        let cold = Decoding::Draw {
            temperature: MIN_TEMPERATURE,
            top_p: 1.0,
        };
        for seed in 0..4 {
            assert_eq!(decode(probs.clone(), cold, seed, 0), argmax);
        }
    }

    #[test]
    fn draws_are_reproducible_per_seed_and_differ_across_seeds() {
        let device = crate::device::cpu_device();
        let probs = random_probs([4, 16, 9], 2, &device);
        let warm = Decoding::Draw {
            temperature: 1.0,
            top_p: 1.0,
        };
        let a = decode(probs.clone(), warm, 5, 0);
        assert_eq!(a, decode(probs.clone(), warm, 5, 0));
        assert_ne!(a, decode(probs.clone(), warm, 6, 0));
        assert_ne!(a, decode(probs, warm, 5, 1));
    }

    #[test]
    fn draws_follow_the_distribution_and_stay_in_the_nucleus() {
        // One row, distribution (0.5, 0.3, 0.15, 0.05): at top_p = 0.7 only the first two
        // tokens may appear, in the ratio 5 : 3.
        let device = crate::device::cpu_device();
        let rows = 4000;
        let row = [0.5f32, 0.3, 0.15, 0.05];
        let values: Vec<f32> = (0..rows).flat_map(|_| row).collect();
        let probs = Tensor::<3>::from_data(TensorData::new(values, [1, rows, 4]), &device);
        let full = decode(
            probs.clone(),
            Decoding::Draw {
                temperature: 1.0,
                top_p: 1.0,
            },
            9,
            0,
        );
        let share =
            |ids: &[u32], id: u32| ids.iter().filter(|&&x| x == id).count() as f64 / rows as f64;
        for (id, p) in row.iter().enumerate() {
            let got = share(&full[0], id as u32);
            assert!((got - *p as f64).abs() < 0.03, "token {id}: {got} vs {p}");
        }
        let nucleus = decode(
            probs,
            Decoding::Draw {
                temperature: 1.0,
                top_p: 0.7,
            },
            9,
            0,
        );
        assert!(
            nucleus[0].iter().all(|&id| id < 2),
            "a token outside the nucleus"
        );
        let first = share(&nucleus[0], 0);
        assert!((first - 0.625).abs() < 0.03, "{first}");
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Decoding::Argmax.validate().is_ok());
        let draw = |temperature, top_p| Decoding::Draw { temperature, top_p }.validate();
        assert!(draw(1.0, 0.9).is_ok());
        assert!(draw(0.0, 0.9).is_err());
        assert!(draw(f64::NAN, 0.9).is_err());
        assert!(draw(1.0, 0.0).is_err());
        assert!(draw(1.0, 1.5).is_err());
    }
}
