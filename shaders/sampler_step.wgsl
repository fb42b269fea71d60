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

var<workgroup> red_a: array<f32, {{ workgroup_size_x }}>;
var<workgroup> red_b: array<f32, {{ workgroup_size_x }}>;
var<workgroup> cand_val: array<f32, {{ candidates }}>;
var<workgroup> cand_id: array<u32, {{ candidates }}>;
var<workgroup> head: array<u32, {{ workgroup_size_x }}>;
var<workgroup> best_val: array<f32, {{ workgroup_size_x }}>;
var<workgroup> best_owner: array<u32, {{ workgroup_size_x }}>;
// Values read from storage are not "uniform" to WGSL; staging them here makes loop bounds and
// the early exit uniform, as barriers require.
var<workgroup> wg_rows: u32;
var<workgroup> wg_k: u32;

// Philox-free counter hash (a 64-bit key and 64-bit counter mixed by rounds of a 32-bit
// permutation); must match `counter_hash` in flow/noise.rs bit for bit.
fn mix32(x_in: u32) -> u32 {
    var x = x_in;
    x = x ^ (x >> 16u);
    x = x * 0x7feb352du;
    x = x ^ (x >> 15u);
    x = x * 0x846ca68bu;
    x = x ^ (x >> 16u);
    return x;
}

fn counter_hash(seed_lo: u32, seed_hi: u32, c_lo: u32, c_hi: u32, lane: u32) -> u32 {
    var h = mix32(seed_lo ^ 0x9e3779b9u);
    h = mix32(h ^ seed_hi);
    h = mix32(h ^ c_lo);
    h = mix32(h ^ c_hi);
    return mix32(h ^ lane);
}

// Standard normal for element `index` of the stream (seed, counter): Box-Muller on two
// 24-bit uniforms in (0, 1].
fn counter_normal(seed_lo: u32, seed_hi: u32, c_lo: u32, c_hi: u32, index: u32) -> f32 {
    let a = counter_hash(seed_lo, seed_hi, c_lo ^ index, c_hi, 0u);
    let b = counter_hash(seed_lo, seed_hi, c_lo ^ index, c_hi, 1u);
    let u1 = (f32(a >> 8u) + 1.0) / 16777216.0;
    let u2 = f32(b >> 8u) / 16777216.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

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

    // 1. Row maximum.
    var m = -3.4e38;
    for (var j = t; j < cols; j += WG) {
        m = max(m, logits[base + j]);
    }
    red_a[t] = m;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (t < s) {
            red_a[t] = max(red_a[t], red_a[t + s]);
        }
        workgroupBarrier();
    }
    m = red_a[0];
    workgroupBarrier();

    // 2. Sum of exp(l - m) and of exp(l - m) * (l - m), for the normaliser and the entropy.
    var sum_e = 0.0;
    var sum_el = 0.0;
    for (var j = t; j < cols; j += WG) {
        let d = logits[base + j] - m;
        let e = exp(d);
        sum_e += e;
        sum_el += e * d;
    }
    red_a[t] = sum_e;
    red_b[t] = sum_el;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (t < s) {
            red_a[t] += red_a[t + s];
            red_b[t] += red_b[t + s];
        }
        workgroupBarrier();
    }
    let total = red_a[0];
    let weighted = red_b[0];

    // 3. The update of z, and this thread's own top-k candidates (sorted, best first).
    var my_val: array<f32, 16>;
    var my_id: array<u32, 16>;
    var count = 0u;
    for (var j = t; j < cols; j += WG) {
        let l = logits[base + j];
        let p = exp(l - m) / total;
        var next = keep * z[base + j] + moved * p;
        if (noise != 0.0) {
            next += noise * counter_normal(params[6], params[7], params[8], params[9], base + j);
        }
        z_next[base + j] = next;
        if (k > 0u && (count < k || before(l, j, my_val[count - 1u], my_id[count - 1u]))) {
            // Insert j, keeping the list sorted; the last entry falls off when full.
            var pos = min(count, k - 1u);
            while (pos > 0u && before(l, j, my_val[pos - 1u], my_id[pos - 1u])) {
                my_val[pos] = my_val[pos - 1u];
                my_id[pos] = my_id[pos - 1u];
                pos -= 1u;
            }
            my_val[pos] = l;
            my_id[pos] = j;
            count = min(count + 1u, k);
        }
    }
    for (var i = 0u; i < K_MAX; i++) {
        let slot = t * K_MAX + i;
        if (i < count) {
            cand_val[slot] = my_val[i];
            cand_id[slot] = my_id[i];
        } else {
            cand_val[slot] = -3.4e38;
            cand_id[slot] = 0xffffffffu;
        }
    }
    head[t] = 0u;
    workgroupBarrier();

    // 4. Merge: k rounds, each a tree argmax over the heads of the threads' sorted lists.
    let width = 2u + 2u * k;
    let out = row * width;
    for (var r = 0u; r < k; r++) {
        let h = head[t];
        if (h < K_MAX) {
            best_val[t] = cand_val[t * K_MAX + h];
            best_owner[t] = t;
        } else {
            best_val[t] = -3.4e38;
            best_owner[t] = 0xffffffffu;
        }
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s = s / 2u) {
            if (t < s) {
                let other = best_owner[t + s];
                let mine = best_owner[t];
                var take = false;
                if (other != 0xffffffffu) {
                    if (mine == 0xffffffffu) {
                        take = true;
                    } else {
                        let id_o = cand_id[other * K_MAX + head[other]];
                        let id_m = cand_id[mine * K_MAX + head[mine]];
                        take = before(best_val[t + s], id_o, best_val[t], id_m);
                    }
                }
                if (take) {
                    best_val[t] = best_val[t + s];
                    best_owner[t] = other;
                }
            }
            workgroupBarrier();
        }
        if (t == 0u) {
            let owner = best_owner[0];
            if (owner != 0xffffffffu) {
                let id = cand_id[owner * K_MAX + head[owner]];
                stats[out + 2u + r] = f32(id);
                stats[out + 2u + k + r] = exp(best_val[0] - m) / total;
                head[owner] = head[owner] + 1u;
            } else {
                // Fewer than k tokens in the vocabulary.
                stats[out + 2u + r] = 0.0;
                stats[out + 2u + k + r] = 0.0;
            }
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        stats[out] = log(total) - weighted / total;
        stats[out + 1u] = 1.0 / total;
    }
}
