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
// Merge groups of eight threads each (the workgroup size is a multiple of 8).
const GROUPS: u32 = {{ workgroup_size_x }}u / 8u;

var<workgroup> red_m: array<f32, {{ workgroup_size_x }}>;
var<workgroup> red_a: array<f32, {{ workgroup_size_x }}>;
var<workgroup> red_b: array<f32, {{ workgroup_size_x }}>;
var<workgroup> cand_val: array<f32, {{ candidates }}>;
var<workgroup> cand_id: array<u32, {{ candidates }}>;
var<workgroup> group_val: array<f32, {{ group_candidates }}>;
var<workgroup> group_id: array<u32, {{ group_candidates }}>;
// Values read from storage are not "uniform" to WGSL; staging them here makes loop bounds and
// the early exit uniform, as barriers require.
var<workgroup> wg_rows: u32;
var<workgroup> wg_k: u32;
var<workgroup> wg_max: f32;
var<workgroup> wg_total: f32;
var<workgroup> wg_weighted: f32;

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
    if (lid.x == 0u) {
        wg_rows = params[0];
        wg_k = min(params[2], K_MAX);
    }
    let rows = workgroupUniformLoad(&wg_rows);
    let k = workgroupUniformLoad(&wg_k);
    let cols = params[1];
    let keep = bitcast<f32>(params[3]);
    let moved = bitcast<f32>(params[4]);
    let noise = bitcast<f32>(params[5]);
    let row = wid.x + wid.y * groups.x;
    let t = lid.x;
    // Uniform control flow: a whole workgroup is either in range or not.
    if (row >= rows) {
        return;
    }
    let base = row * cols;

    // Barriers are the expensive part on software Vulkan (each one ends a phase that every
    // invocation runs through), so the workgroup reductions finish serially in thread 0: three
    // barriers per row. The logits are read twice: once for an online maximum/normaliser/
    // entropy, once for the update and the top-k.

    // 1. Online softmax statistics per thread: running max m, S = Σ exp(l − m) and
    //    W = Σ exp(l − m)·(l − m), rescaled whenever the maximum grows.
    var m = -3.4e38;
    var sum_e = 0.0;
    var sum_el = 0.0;
    for (var j = t; j < cols; j += WG) {
        let l = logits[base + j];
        if (l > m) {
            let c = exp(m - l);
            sum_el = c * (sum_el + (m - l) * sum_e);
            sum_e = c * sum_e + 1.0;
            m = l;
        } else {
            let d = l - m;
            let e = exp(d);
            sum_e += e;
            sum_el += e * d;
        }
    }
    red_m[t] = m;
    red_a[t] = sum_e;
    red_b[t] = sum_el;
    workgroupBarrier();
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
    m = workgroupUniformLoad(&wg_max);
    let total = workgroupUniformLoad(&wg_total);
    let weighted = workgroupUniformLoad(&wg_weighted);

    // 2. The update of z, and this thread's best 16 candidates, kept sorted by a fixed
    //    insertion network (constant indices, so the list lives in registers).
    var my_val: array<f32, 16>;
    var my_id: array<u32, 16>;
    for (var i = 0u; i < K_MAX; i++) {
        my_val[i] = -3.4e38;
        my_id[i] = 0xffffffffu;
    }
    for (var j = t; j < cols; j += WG) {
        let l = logits[base + j];
        let p = exp(l - m) / total;
        var next = keep * z[base + j] + moved * p;
        if (noise != 0.0) {
            next += noise * counter_normal(params[6], params[7], params[8], params[9], base + j);
        }
        z_next[base + j] = next;
        if (k > 0u && before(l, j, my_val[K_MAX - 1u], my_id[K_MAX - 1u])) {
            var cv = l;
            var ci = j;
            for (var i = 0u; i < K_MAX; i++) {
                if (before(cv, ci, my_val[i], my_id[i])) {
                    let sv = my_val[i];
                    let si = my_id[i];
                    my_val[i] = cv;
                    my_id[i] = ci;
                    cv = sv;
                    ci = si;
                }
            }
        }
    }
    for (var i = 0u; i < K_MAX; i++) {
        cand_val[t * K_MAX + i] = my_val[i];
        cand_id[t * K_MAX + i] = my_id[i];
    }
    workgroupBarrier();

    // 3. Two-level merge of the sorted lists: eight leaders each merge eight threads' lists
    //    into one (in parallel), then thread 0 merges the eight: k·8 + k·8 steps, not k·64.
    if (t < GROUPS) {
        var heads: array<u32, 8>;
        for (var i = 0u; i < 8u; i++) {
            heads[i] = 0u;
        }
        for (var r = 0u; r < k; r++) {
            var best = 0xffffffffu;
            var best_v = -3.4e38;
            var best_i = 0xffffffffu;
            for (var i = 0u; i < 8u; i++) {
                let owner = t * 8u + i;
                let h = heads[i];
                if (h < K_MAX) {
                    let id = cand_id[owner * K_MAX + h];
                    let v = cand_val[owner * K_MAX + h];
                    if (id != 0xffffffffu && (best == 0xffffffffu || before(v, id, best_v, best_i))) {
                        best = i;
                        best_v = v;
                        best_i = id;
                    }
                }
            }
            group_val[t * K_MAX + r] = best_v;
            group_id[t * K_MAX + r] = best_i;
            if (best != 0xffffffffu) {
                heads[best] = heads[best] + 1u;
            }
        }
    }
    workgroupBarrier();
    if (t == 0u) {
        let width = 2u + 2u * k;
        let out = row * width;
        var heads: array<u32, 8>;
        for (var i = 0u; i < GROUPS; i++) {
            heads[i] = 0u;
        }
        for (var r = 0u; r < k; r++) {
            var best = 0xffffffffu;
            var best_v = -3.4e38;
            var best_i = 0xffffffffu;
            for (var i = 0u; i < GROUPS; i++) {
                let h = heads[i];
                if (h < k) {
                    let id = group_id[i * K_MAX + h];
                    let v = group_val[i * K_MAX + h];
                    if (id != 0xffffffffu && (best == 0xffffffffu || before(v, id, best_v, best_i))) {
                        best = i;
                        best_v = v;
                        best_i = id;
                    }
                }
            }
            if (best != 0xffffffffu) {
                stats[out + 2u + r] = f32(best_i);
                stats[out + 2u + k + r] = exp(best_v - m) / total;
                heads[best] = heads[best] + 1u;
            } else {
                // Fewer than k tokens in the vocabulary.
                stats[out + 2u + r] = 0.0;
                stats[out + 2u + k + r] = 0.0;
            }
        }
        stats[out] = log(total) - weighted / total;
        stats[out + 1u] = 1.0 / total;
    }
}
