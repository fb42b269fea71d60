// Counter-based standard normal noise, shared by the kernels (pasted into each through
// its `counter_rng` template slot). Element `index` of stream (seed, counter) can be made
// independently anywhere; `counter_normal` in src/flow/noise.rs computes the same numbers.

// A 32-bit permutation (xor-shift-multiply).
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

// Box-Muller on two 24-bit uniforms in (0, 1]; elements 2i and 2i+1 are the cosine and sine
// halves of pair i, so each pair of hashes yields two normals.
fn counter_normal(seed_lo: u32, seed_hi: u32, c_lo: u32, c_hi: u32, index: u32) -> f32 {
    let pair = index >> 1u;
    let a = counter_hash(seed_lo, seed_hi, c_lo ^ pair, c_hi, 0u);
    let b = counter_hash(seed_lo, seed_hi, c_lo ^ pair, c_hi, 1u);
    let u1 = (f32(a >> 8u) + 1.0) / 16777216.0;
    let u2 = f32(b >> 8u) / 16777216.0;
    let radius = sqrt(-2.0 * log(u1));
    let angle = 6.283185307179586 * u2;
    if ((index & 1u) == 0u) {
        return radius * cos(angle);
    }
    return radius * sin(angle);
}
