// Fused sampler step: one workgroup per row (one position of one sample) of the logits.
//
// For row r with logits l (V values), the denoiser is D = softmax(l). The kernel writes
//   z_next = keep * z + moved * D + noise * xi          (Euler or flow-map step; see flow/)
// and, for the app's views, per-row statistics packed as
//   stats[r] = [entropy, max_prob, top_id_0 .. top_id_{k-1}, top_prob_0 .. top_prob_{k-1}]
// (ids stored as exact f32 integers; V < 2^24). xi is standard normal noise from the
// counter-based generator shared with the host (flow/noise.rs: `counter_normal`).
// Only the (rows x (2 + 2k)) statistics ever need to reach the CPU.

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> z_next: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
// rows, cols, k, bits(keep), bits(moved), bits(noise), seed_lo, seed_hi, counter_lo, counter_hi
@group(0) @binding(4) var<storage, read_write> params: array<u32>;

const WG: u32 = {{ workgroup_size_x }}u;
const K_MAX: u32 = 16u;
// The per-thread maximum of a thread that saw no element, and "no element" as an id.
const NONE: f32 = -3.4e38;
const NO_ID: u32 = 0xffffffffu;
// Whether the step adds noise (a compile-time choice: a branch costs as much as its body).
const WITH_NOISE: bool = {{ with_noise }};

var<workgroup> red_m: array<f32, {{ workgroup_size_x }}>;
var<workgroup> red_a: array<f32, {{ workgroup_size_x }}>;
var<workgroup> red_b: array<f32, {{ workgroup_size_x }}>;
var<workgroup> cand_val: array<f32, {{ candidates }}>;
var<workgroup> cand_id: array<u32, {{ candidates }}>;
var<workgroup> cand_count: atomic<u32>;
// The row's results, shared by the thread that computes them.
var<workgroup> wg_max: f32;
var<workgroup> wg_total: f32;
var<workgroup> wg_weighted: f32;
var<workgroup> wg_threshold: f32;
var<workgroup> wg_overflow: u32;

{{ counter_rng }}

// Is (va, ia) ranked before (vb, ib)? Larger value first; ties broken by the smaller id.
fn before(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

@compute @workgroup_size({{ workgroup_size_x }}, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let t = lid.x;
    let row = wid.x + wid.y * groups.x;
    // The grid may have a few workgroups past the last row; they read and write nothing
    // (no early return: every invocation must reach the barriers).
    let in_range = row < params[0];
    let cols = select(0u, params[1], in_range);
    let k = select(0u, min(params[2], K_MAX), in_range);
    let keep = bitcast<f32>(params[3]);
    let moved = bitcast<f32>(params[4]);
    let noise = bitcast<f32>(params[5]);
    let base = row * cols;
    let out = row * (2u + 2u * k);
    if (t == 0u) {
        wg_threshold = NONE;
        wg_overflow = 0u;
        atomicStore(&cand_count, 0u);
    }

    // Software Vulkan (lavapipe) runs a workgroup's invocations as SIMD lanes and executes
    // every branch that any lane takes, with the others masked. So per-element work is
    // branch-free: a per-thread sorted top-16 list, which some lane updated at almost every
    // element, used to cost more than everything else together. Outside the rare fallback,
    // no barrier sits in a loop.

    // 1. Online softmax statistics per thread: running max m, S = Σ exp(l − m) and
    //    W = Σ exp(l − m)·(l − m), rescaled whenever the maximum grows.
    var m = NONE;
    var sum_e = 0.0;
    var sum_el = 0.0;
    for (var j = t; j < cols; j += WG) {
        let l = logits[base + j];
        // One exponential per element and no branch: e = exp(−|l − m|) either rescales the
        // sums (l is a new maximum) or is the new term.
        let d = l - m;
        let e = exp(-abs(d));
        let grew = d > 0.0;
        sum_el = select(sum_el + e * d, e * (sum_el - d * sum_e), grew);
        sum_e = select(sum_e + e, e * sum_e + 1.0, grew);
        m = max(m, l);
    }
    red_m[t] = m;
    red_a[t] = sum_e;
    red_b[t] = sum_el;
    workgroupBarrier();

    // 2. The top-k threshold: the k-th largest of the threads' maxima. Those k maxima are k
    //    distinct elements, so every element of the row's top k is at least this large, and
    //    typically only a few dozen elements of a row are.
    if (k > 0u) {
        var rank = 0u;
        for (var i = 0u; i < WG; i++) {
            let other = red_m[i];
            rank += select(0u, 1u, other > m || (other == m && i < t));
        }
        if (rank == k - 1u) {
            wg_threshold = m;
        }
    }
    if (t == 0u) {
        var all_m = red_m[0];
        for (var i = 1u; i < WG; i++) {
            all_m = max(all_m, red_m[i]);
        }
        var a = 0.0;
        var b = 0.0;
        for (var i = 0u; i < WG; i++) {
            if (red_a[i] > 0.0) {
                let shift = red_m[i] - all_m;
                let c = exp(shift);
                a += c * red_a[i];
                b += c * (red_b[i] + shift * red_a[i]);
            }
        }
        wg_max = all_m;
        wg_total = a;
        wg_weighted = b;
    }
    workgroupBarrier();
    m = wg_max;
    let total = wg_total;
    let weighted = wg_weighted;
    let threshold = wg_threshold;
    // A threshold from a thread without elements (V < k) admits every element.
    let admit_all = threshold <= NONE;
    let inv_total = 1.0 / total;

    // 3. The update of z. This thread's best six elements at or above the threshold are
    //    kept sorted in registers by a branch-free insertion: a thread visits its elements in
    //    increasing id order, so an equal value never displaces an earlier (smaller) id.
    var v0 = NONE; var v1 = NONE; var v2 = NONE; var v3 = NONE; var v4 = NONE; var v5 = NONE;
    var i0 = 0u; var i1 = 0u; var i2 = 0u; var i3 = 0u; var i4 = 0u; var i5 = 0u;
    var count = 0u;
    for (var j = t; j < cols; j += WG) {
        let l = logits[base + j];
        var next = keep * z[base + j] + moved * (exp(l - m) * inv_total);
        if (WITH_NOISE) {
            next += noise * counter_normal(params[6], params[7], params[8], params[9], base + j);
        }
        z_next[base + j] = next;
        let take = k > 0u && (l >= threshold || admit_all);
        let b0 = take && l > v0;
        let b1 = take && l > v1;
        let b2 = take && l > v2;
        let b3 = take && l > v3;
        let b4 = take && l > v4;
        let b5 = take && l > v5;
        v5 = select(v5, select(l, v4, b4), b5);
        i5 = select(i5, select(j, i4, b4), b5);
        v4 = select(v4, select(l, v3, b3), b4);
        i4 = select(i4, select(j, i3, b3), b4);
        v3 = select(v3, select(l, v2, b2), b3);
        i3 = select(i3, select(j, i2, b2), b3);
        v2 = select(v2, select(l, v1, b1), b2);
        i2 = select(i2, select(j, i1, b1), b2);
        v1 = select(v1, select(l, v0, b0), b1);
        i1 = select(i1, select(j, i0, b0), b1);
        v0 = select(v0, l, b0);
        i0 = select(i0, j, b0);
        count += select(0u, 1u, take);
    }
    let kept = min(count, 6u);
    if (kept > 0u) {
        let at = atomicAdd(&cand_count, kept);
        cand_val[at] = v0;
        cand_id[at] = i0;
        if (kept > 1u) { cand_val[at + 1u] = v1; cand_id[at + 1u] = i1; }
        if (kept > 2u) { cand_val[at + 2u] = v2; cand_id[at + 2u] = i2; }
        if (kept > 3u) { cand_val[at + 3u] = v3; cand_id[at + 3u] = i3; }
        if (kept > 4u) { cand_val[at + 4u] = v4; cand_id[at + 4u] = i4; }
        if (kept > 5u) { cand_val[at + 5u] = v5; cand_id[at + 5u] = i5; }
    }
    workgroupBarrier();
    let n = atomicLoad(&cand_count);
    if (t == 0u && in_range) {
        stats[out] = log(total) - weighted * inv_total;
        stats[out + 1u] = inv_total;
    }

    // 4. A thread that dropped candidates is exact only if its sixth is outside the top k.
    if (count > 6u) {
        var rank = 0u;
        for (var o = 0u; o < n; o++) {
            rank += select(0u, 1u, before(cand_val[o], cand_id[o], v5, i5));
        }
        if (rank < k) {
            wg_overflow = 1u;
        }
    }
    if (workgroupUniformLoad(&wg_overflow) != 0u) {
        top_k_by_scanning(t, base, cols, k, out, m, inv_total);
        return;
    }

    // 5. Each candidate's rank among the candidates is its place in the top k.
    for (var c = t; c < n; c += WG) {
        let v = cand_val[c];
        let id = cand_id[c];
        var rank = 0u;
        for (var o = 0u; o < n; o++) {
            rank += select(0u, 1u, before(cand_val[o], cand_id[o], v, id));
        }
        if (rank < k) {
            stats[out + 2u + rank] = f32(id);
            stats[out + 2u + k + rank] = exp(v - m) * inv_total;
        }
    }
    // Fewer than k tokens in the vocabulary.
    for (var r = n + t; r < k; r += WG) {
        stats[out + 2u + r] = 0.0;
        stats[out + 2u + k + r] = 0.0;
    }
}

// The exact fallback, for a row where one thread held more than six of the top k (rare):
// K_MAX rounds, each finding the best element ranked after the previous round's. Every thread
// scans its share of the row; the 64 winners are then reduced by every thread alike. (A serial
// scan by one thread would be simpler, but lavapipe caps a loop at 65,535 iterations.)
fn top_k_by_scanning(t: u32, base: u32, cols: u32, k: u32, out: u32, m: f32, inv_total: f32) {
    var prev_v = 0.0;
    var prev_i = NO_ID;
    for (var r = 0u; r < K_MAX; r++) {
        var best_v = NONE;
        var best_i = NO_ID;
        for (var j = t; j < cols; j += WG) {
            let l = logits[base + j];
            let better = (r == 0u || before(prev_v, prev_i, l, j))
                && (best_i == NO_ID || before(l, j, best_v, best_i));
            best_v = select(best_v, l, better);
            best_i = select(best_i, j, better);
        }
        red_m[t] = best_v;
        cand_id[t] = best_i;
        workgroupBarrier();
        var win_v = NONE;
        var win_i = NO_ID;
        for (var i = 0u; i < WG; i++) {
            let v = red_m[i];
            let id = cand_id[i];
            let better = id != NO_ID && (win_i == NO_ID || before(v, id, win_v, win_i));
            win_v = select(win_v, v, better);
            win_i = select(win_i, id, better);
        }
        if (t == 0u && r < k) {
            let found = win_i != NO_ID;
            stats[out + 2u + r] = select(0.0, f32(win_i), found);
            stats[out + 2u + k + r] = select(0.0, exp(win_v - m) * inv_total, found);
        }
        prev_v = win_v;
        prev_i = win_i;
        // Nobody overwrites the winners before everyone has read them.
        workgroupBarrier();
    }
}
