// Fused noisy input for training (DESIGN §4): for row r (one position of one sequence) with
// clean token x and flow time g, writes x_g = (1 - g) * eps + g * onehot(x) over the
// vocabulary, with eps drawn in the shader from the counter-based stream (seed, counter) —
// no noise, one-hot or elementwise passes are materialised.

@group(0) @binding(0) var<storage, read_write> tokens: array<f32>;  // rows, exact integer ids
@group(0) @binding(1) var<storage, read_write> gammas: array<f32>;  // rows
@group(0) @binding(2) var<storage, read_write> output: array<f32>;  // rows x cols
// rows, cols, seed_lo, seed_hi, counter_lo, counter_hi
@group(0) @binding(3) var<storage, read_write> params: array<u32>;

const WG: u32 = {{ workgroup_size_x }}u;

{{ counter_rng }}

@compute @workgroup_size({{ workgroup_size_x }}, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let rows = params[0];
    let cols = params[1];
    let row = wid.x + wid.y * groups.x;
    if (row >= rows) {
        return;
    }
    let token = u32(tokens[row]);
    let g = gammas[row];
    let base = row * cols;
    for (var j = lid.x; j < cols; j += WG) {
        var value = (1.0 - g) * counter_normal(params[2], params[3], params[4], params[5], base + j);
        if (j == token) {
            value += g;
        }
        output[base + j] = value;
    }
}
