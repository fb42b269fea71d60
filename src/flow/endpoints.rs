//! Teacher endpoints for the one-step jump (DESIGN §6a): the frozen teacher's K-step Euler
//! sample from a noise ε is the target of the student's `δ̂_{0,1}(ε)`.
//!
//! ε does not depend on the data, so an endpoint can be computed ahead and used more than
//! once. The pool keeps the most recent endpoints (noise as a seed, the target as its top-k
//! per position) and tops itself up with `1/reuse` fresh ones per row used: `reuse = 1`
//! computes every target on the spot, larger values trade fresh noise for teacher calls.

use std::collections::VecDeque;

use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::sampler::{euler_endpoint, euler_pairs};
use super::schedule::Schedule;
use crate::kernels::KernelPath;
use crate::model::Dit;
use crate::rng::counter_normals;

/// Candidates kept per position of a stored target; the rest of its (tiny) mass is dropped
/// and the kept part renormalized.
const STORED_TOP_K: usize = 16;
/// Endpoints a pool holds, as a multiple of the rows it serves per step.
const POOL_BATCHES: usize = 64;
/// The noise seed of pooled endpoints: their own counter space (one counter per endpoint).
const POOL_NOISE_SEED: u64 = 0x0e9d_7017_5eed;

/// One stored endpoint: which noise it starts from, and the teacher's distribution.
struct Endpoint {
    key: u64,
    /// Per position, `STORED_TOP_K` (or V) ids and probabilities.
    ids: Vec<u32>,
    probs: Vec<f32>,
}

/// Recent teacher endpoints, refreshed as they are used.
pub struct EndpointPool {
    reuse: usize,
    teacher_steps: usize,
    /// Rows read off each fresh trajectory: the jump `(0, K)`, then random grid pairs.
    pairs_per_trajectory: usize,
    entries: VecDeque<Endpoint>,
    /// Endpoints computed so far.
    computed: u64,
    /// Fresh endpoints owed (fractional) for the rows used so far.
    credit: f64,
}

/// Inputs and targets for the teacher rows of one batch, both (rows, L, V), with each row's
/// times: `(0, 1)` for the one-step jump, grid points of the teacher's trajectory otherwise.
pub struct EndpointRows {
    pub noise: Tensor<3>,
    pub targets: Tensor<3>,
    pub tau_s: Vec<f64>,
    pub tau_t: Vec<f64>,
}

impl EndpointPool {
    pub fn new(reuse: usize, teacher_steps: usize, pairs_per_trajectory: usize) -> Self {
        Self {
            reuse: reuse.max(1),
            teacher_steps,
            pairs_per_trajectory: pairs_per_trajectory.max(1),
            entries: VecDeque::new(),
            computed: 0,
            credit: 0.0,
        }
    }

    /// `rows` boundary rows: fresh endpoints for `rows / reuse` of them (at least enough to
    /// fill an empty pool), the rest drawn from the pool.
    pub fn take(
        &mut self,
        rows: usize,
        seq_len: usize,
        teacher: &Dit,
        schedule: &Schedule,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> EndpointRows {
        if self.pairs_per_trajectory > 1 {
            return self.take_trajectory_pairs(rows, seq_len, teacher, schedule, rng, device);
        }
        let vocab = teacher.vocab_size();
        self.credit += rows as f64 / self.reuse as f64;
        let mut fresh = self.credit.floor() as usize;
        fresh = fresh.max(rows.saturating_sub(self.entries.len()));
        self.credit = (self.credit - fresh as f64).max(0.0);
        if fresh > 0 {
            // Keys from the batch's stream: a resumed run draws new noise, not the first
            // batches' again.
            let keys: Vec<u64> = (0..fresh).map(|_| rng.random::<u64>()).collect();
            self.add_fresh(&keys, seq_len, teacher, schedule, device);
        }
        let capacity = (POOL_BATCHES * rows).max(rows);
        while self.entries.len() > capacity {
            self.entries.pop_front();
        }
        // The newest `fresh` entries are always used (each is computed to be used), the rest
        // of the rows come from anywhere in the pool.
        let len = self.entries.len();
        let picked: Vec<usize> = (0..rows)
            .map(|i| {
                if i < fresh.min(rows) {
                    len - 1 - i
                } else {
                    rng.random_range(0..len)
                }
            })
            .collect();
        let mut noise = Vec::with_capacity(rows * seq_len * vocab);
        let mut targets = vec![0f32; rows * seq_len * vocab];
        for (row, &index) in picked.iter().enumerate() {
            let entry = &self.entries[index];
            noise.extend(counter_normals(POOL_NOISE_SEED, entry.key, seq_len * vocab));
            let k = entry.ids.len() / seq_len;
            for position in 0..seq_len {
                let base = (row * seq_len + position) * vocab;
                let span = position * k..(position + 1) * k;
                for (&id, &p) in entry.ids[span.clone()].iter().zip(&entry.probs[span]) {
                    targets[base + id as usize] = p;
                }
            }
        }
        let shape = [rows, seq_len, vocab];
        EndpointRows {
            noise: Tensor::from_data(TensorData::new(noise, shape), device),
            targets: Tensor::from_data(TensorData::new(targets, shape), device),
            tau_s: vec![0.0; rows],
            tau_t: vec![1.0; rows],
        }
    }

    /// `rows` rows from `ceil(rows / P)` fresh trajectories: each gives its jump `(0, K)` and
    /// `P − 1` random pairs `i < j` of its grid (never pooled: they need the whole path).
    fn take_trajectory_pairs(
        &mut self,
        rows: usize,
        seq_len: usize,
        teacher: &Dit,
        schedule: &Schedule,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> EndpointRows {
        let vocab = teacher.vocab_size();
        let steps = self.teacher_steps;
        let per = self.pairs_per_trajectory;
        let trajectories = rows.div_ceil(per);
        let keys: Vec<u64> = (0..trajectories).map(|_| rng.random::<u64>()).collect();
        self.computed += trajectories as u64;
        let noise: Vec<f32> = keys
            .iter()
            .flat_map(|&key| counter_normals(POOL_NOISE_SEED, key, seq_len * vocab))
            .collect();
        let noise = Tensor::<3>::from_data(
            TensorData::new(noise, [trajectories, seq_len, vocab]),
            device,
        );
        let slots: Vec<Vec<(usize, usize)>> = (0..per)
            .map(|slot| {
                (0..trajectories)
                    .map(|_| {
                        if slot == 0 {
                            (0, steps)
                        } else {
                            let i = rng.random_range(0..steps);
                            (i, rng.random_range(i + 1..=steps))
                        }
                    })
                    .collect()
            })
            .collect();
        let read = euler_pairs(teacher, noise, schedule, steps, &slots, KernelPath::Auto);
        let tau = |index: usize| index as f64 / steps as f64;
        let times: Vec<(f64, f64)> = slots
            .iter()
            .flatten()
            .map(|&(i, j)| (tau(i), tau(j)))
            .take(rows)
            .collect();
        let stack = |parts: Vec<Tensor<3>>| Tensor::cat(parts, 0).narrow(0, 0, rows);
        EndpointRows {
            noise: stack(read.inputs),
            targets: stack(read.targets),
            tau_s: times.iter().map(|t| t.0).collect(),
            tau_t: times.iter().map(|t| t.1).collect(),
        }
    }

    /// Runs the teacher from `count` new noises and stores the results.
    fn add_fresh(
        &mut self,
        keys: &[u64],
        seq_len: usize,
        teacher: &Dit,
        schedule: &Schedule,
        device: &Device,
    ) {
        let vocab = teacher.vocab_size();
        let count = keys.len();
        self.computed += count as u64;
        let noise: Vec<f32> = keys
            .iter()
            .flat_map(|&key| counter_normals(POOL_NOISE_SEED, key, seq_len * vocab))
            .collect();
        let noise = Tensor::<3>::from_data(TensorData::new(noise, [count, seq_len, vocab]), device);
        let endpoint = euler_endpoint(
            teacher,
            noise,
            schedule,
            self.teacher_steps,
            KernelPath::Auto,
        );
        let k = STORED_TOP_K.min(vocab);
        let (probs, ids) = endpoint.topk_with_indices(k, 2);
        let probs: Vec<f32> = probs
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .expect("probabilities");
        let ids: Vec<i64> = ids
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .expect("ids");
        let per_row = seq_len * k;
        for (row, &key) in keys.iter().enumerate() {
            let span = row * per_row..(row + 1) * per_row;
            let mut row_probs = probs[span.clone()].to_vec();
            for position in row_probs.chunks_mut(k) {
                let kept: f32 = position.iter().sum();
                position.iter_mut().for_each(|p| *p /= kept.max(1e-30));
            }
            self.entries.push_back(Endpoint {
                key,
                ids: ids[span].iter().map(|&id| id as u32).collect(),
                probs: row_probs,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests_support::teacher;
    use crate::rng::stream_rng;

    #[test]
    fn pooled_targets_are_the_teachers_endpoints_from_the_pooled_noise() {
        let device = crate::device::cpu_device();
        let (vocab, seq_len) = (13, 5);
        let teacher = teacher(vocab, seq_len);
        let schedule = Schedule::new(vocab).unwrap();
        let mut pool = EndpointPool::new(4, 3, 1);
        let rows = pool.take(
            6,
            seq_len,
            &teacher,
            &schedule,
            &mut stream_rng(1, 0),
            &device,
        );
        // Recomputed from the returned noise: the same distributions (k = 13 keeps all).
        let again = euler_endpoint(&teacher, rows.noise, &schedule, 3, KernelPath::Auto);
        let gap: f32 = (again - rows.targets).abs().max().into_scalar();
        assert!(gap < 1e-5, "{gap}");
    }

    #[test]
    fn reuse_sets_how_many_fresh_endpoints_each_step_computes() {
        let device = crate::device::cpu_device();
        let (vocab, seq_len) = (9, 4);
        let teacher = teacher(vocab, seq_len);
        let schedule = Schedule::new(vocab).unwrap();
        let mut rng = stream_rng(2, 0);
        let mut fresh_only = EndpointPool::new(1, 2, 1);
        let mut reused = EndpointPool::new(4, 2, 1);
        for _ in 0..8 {
            fresh_only.take(4, seq_len, &teacher, &schedule, &mut rng, &device);
            reused.take(4, seq_len, &teacher, &schedule, &mut rng, &device);
        }
        assert_eq!(fresh_only.computed, 32);
        // The first step fills the pool (4), then one fresh endpoint per step of 4 rows.
        assert_eq!(reused.computed, 4 + 7);
    }

    #[test]
    fn trajectory_pairs_are_exact_flow_map_jumps_of_the_teacher() {
        use crate::flow::flow_map::flow_map;
        let device = crate::device::cpu_device();
        let (vocab, seq_len, steps) = (11, 4, 6);
        let teacher = teacher(vocab, seq_len);
        let schedule = Schedule::new(vocab).unwrap();
        let noise = Tensor::<3>::from_data(
            TensorData::new(
                counter_normals(5, 1, 2 * seq_len * vocab),
                [2, seq_len, vocab],
            ),
            &device,
        );
        // Slot 0: the jump; slot 1: (i, j); slot 2: (j, j + 1), whose input is z_j.
        let slots = vec![
            vec![(0, steps); 2],
            vec![(1, 4), (0, 3)],
            vec![(4, 5), (3, 4)],
        ];
        let read = euler_pairs(
            &teacher,
            noise.clone(),
            &schedule,
            steps,
            &slots,
            KernelPath::Auto,
        );
        let endpoint = euler_endpoint(&teacher, noise, &schedule, steps, KernelPath::Auto);
        let gap: f32 = (read.targets[0].clone() - endpoint)
            .abs()
            .max()
            .into_scalar();
        assert!(gap < 1e-5, "the (0, K) target is the endpoint ({gap})");
        let grid = schedule.uniform_grid(steps);
        let gamma = |i: usize| grid[i].1;
        let landed = flow_map(
            read.inputs[1].clone(),
            read.targets[1].clone(),
            &[gamma(1), gamma(0)],
            &[gamma(4), gamma(3)],
        );
        let gap: f32 = (landed - read.inputs[2].clone()).abs().max().into_scalar();
        assert!(gap < 1e-4, "X(z_i) lands on z_j ({gap})");
        let values: Vec<f32> = read.targets[1].clone().into_data().try_into_vec().unwrap();
        assert!(values.iter().all(|&p| p >= -1e-6));
        for row in values.chunks(vocab) {
            let sum: f32 = row.iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-4,
                "targets are distributions ({sum})"
            );
        }
    }

    #[test]
    fn trajectory_rows_come_with_their_grid_times() {
        let device = crate::device::cpu_device();
        let (vocab, seq_len) = (9, 3);
        let teacher = teacher(vocab, seq_len);
        let schedule = Schedule::new(vocab).unwrap();
        let mut pool = EndpointPool::new(1, 8, 3);
        let rows = pool.take(
            7,
            seq_len,
            &teacher,
            &schedule,
            &mut stream_rng(3, 0),
            &device,
        );
        assert_eq!(rows.noise.dims(), [7, seq_len, vocab]);
        assert_eq!(rows.tau_s.len(), 7);
        // Three trajectories: their jumps first.
        assert_eq!(
            (&rows.tau_s[..3], &rows.tau_t[..3]),
            (&[0.0; 3][..], &[1.0; 3][..])
        );
        for (s, t) in rows.tau_s.iter().zip(&rows.tau_t) {
            assert!(
                s < t && (s * 8.0).fract() == 0.0 && (t * 8.0).fract() == 0.0,
                "{s} {t}"
            );
        }
    }
}
