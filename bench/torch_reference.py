#!/usr/bin/env python3
"""flm's DiT and training step in eager PyTorch: the peer `bench/compare.sh` times flm against.

The model follows docs/DESIGN.md §3 with flm's presets (same parameter count: it is printed
and checked against `flm bench`), the step follows §4: a stratified time per sequence, the
noisy input (1-γ)·ε + γ·onehot drawn on the device, cross-entropy, backward, gradient-norm
clipping, AdamW, an EMA update of the weights and the loss read back, as flm's trainer does.
Sampling times N Euler steps (§5) of a batch. Numbers only: this script trains nothing useful.

    python3 bench/torch_reference.py train --preset tiny --vocab 1024 --steps 20 --json
    python3 bench/torch_reference.py sample --preset tiny --vocab 1024 --steps 32 --json

Needs `pip install torch numpy`. Never used by the tests.
"""

import argparse
import json
import math
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {"micro": (64, 2, 4), "tiny": (128, 4, 4), "small": (256, 6, 8), "base": (384, 8, 6)}
COND = 128
TIME_FEATURES = 256
ATTN_CAP = 50.0


def _log_ndtr(z):
    # log Φ(z), stable for large negative z (asymptotic series below -5).
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    small = z < -5
    zs = z[small]
    out[small] = -0.5 * zs * zs - np.log(-zs) - 0.5 * np.log(2 * np.pi) + np.log1p(-1 / (zs * zs))
    zb = z[~small]
    out[~small] = np.log(0.5 * np.array([math.erfc(-v / math.sqrt(2)) for v in zb]))
    return out


def gamma_of_tau(vocab, points=2001):
    nodes, weights = np.polynomial.hermite.hermgauss(100)
    z = np.sqrt(2) * nodes
    w = weights / np.sqrt(np.pi)
    gammas = np.linspace(0.0, 1.0, points)
    taus = []
    for g in gammas:
        if g >= 1.0:
            taus.append(1.0)
            continue
        shift = g / (1 - g)
        q = np.sum(w * np.exp((vocab - 1) * _log_ndtr(z + shift)))
        taus.append(np.clip(vocab / (vocab - 1) * (q - 1 / vocab), 0, 1))
    taus = np.maximum.accumulate(np.array(taus)) + (gammas - 1) * 1e-10
    return lambda tau: np.interp(tau, taus, gammas)


def rotary_tables(length, head_dim, device):
    half = head_dim // 2
    inv = 10000.0 ** (-(2.0 * torch.arange(half, dtype=torch.float64)) / head_dim)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    return angles.cos().float().to(device), angles.sin().float().to(device)


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class TimeEmbedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(TIME_FEATURES, COND)
        self.out = nn.Linear(COND, COND)
        half = TIME_FEATURES // 2
        self.register_buffer("freqs", 10000.0 ** (-torch.arange(half).float() / half))

    def forward(self, tau):
        angles = tau[:, None] * self.freqs[None, :]
        features = torch.cat([angles.cos(), angles.sin()], dim=1)
        return self.out(F.silu(self.hidden(features)))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.norm_attn = nn.LayerNorm(d, eps=1e-6, bias=False)
        self.norm_mlp = nn.LayerNorm(d, eps=1e-6, bias=False)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.mlp_in = nn.Linear(d, 4 * d)
        self.mlp_out = nn.Linear(4 * d, d)
        self.ada_ln = nn.Linear(COND, 6 * d)
        nn.init.zeros_(self.ada_ln.weight)
        nn.init.zeros_(self.ada_ln.bias)

    def forward(self, h, cond, cos, sin):
        b, length, d = h.shape
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.ada_ln(cond).chunk(6, dim=1)
        x = self.norm_attn(h) * (1 + scale_a[:, None]) + shift_a[:, None]
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        scores = ATTN_CAP * torch.tanh(scores / ATTN_CAP)
        mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, length, d)
        h = h + gate_a[:, None] * self.out(mixed)
        x = self.norm_mlp(h) * (1 + scale_m[:, None]) + shift_m[:, None]
        return h + gate_m[:, None] * self.mlp_out(F.gelu(self.mlp_in(x), approximate="tanh"))


class Dit(nn.Module):
    def __init__(self, vocab, d, blocks, heads):
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(vocab, d) / math.sqrt(vocab))
        self.time = TimeEmbedder()
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(blocks))
        self.norm = nn.LayerNorm(d, eps=1e-6, bias=False)
        self.final_ada = nn.Linear(COND, 2 * d)
        self.to_logits = nn.Linear(d, vocab)
        for layer in (self.final_ada, self.to_logits):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.head_dim = d // heads

    def forward(self, x, tau, cos, sin):
        h = x @ self.embedding
        cond = F.silu(self.time(tau))
        for block in self.blocks:
            h = block(h, cond, cos, sin)
        shift, scale = self.final_ada(cond).chunk(2, dim=1)
        return self.to_logits(self.norm(h) * (1 + scale[:, None]) + shift[:, None])


def build(args, device):
    d, blocks, heads = PRESETS[args.preset]
    torch.manual_seed(0)
    model = Dit(args.vocab, d, blocks, heads).to(device)
    cos, sin = rotary_tables(args.seq_len, d // heads, device)
    return model, cos, sin


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train(args, device):
    model, cos, sin = build(args, device)
    ema = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0)
    gamma = gamma_of_tau(args.vocab)
    b, length, vocab = args.batch, args.seq_len, args.vocab
    generator = np.random.default_rng(7)
    times = []
    for step in range(args.warmup + args.steps):
        tokens = torch.from_numpy(generator.integers(0, vocab, size=(b, length))).to(device)
        u = generator.random()
        taus = (u / b + np.arange(b) / b) % 1.0
        started = time.perf_counter()
        tau = torch.tensor(taus, dtype=torch.float32, device=device)
        g = torch.tensor(gamma(taus), dtype=torch.float32, device=device)[:, None, None]
        noise = torch.randn(b, length, vocab, device=device)
        x = (1 - g) * noise + g * F.one_hot(tokens, vocab).float()
        logits = model(x, tau, cos, sin)
        loss = F.cross_entropy(logits.reshape(-1, vocab), tokens.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for average, p in zip(ema, model.parameters()):
                average.mul_(decay).add_(p.detach(), alpha=1 - decay)
        loss.item()
        sync(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    ms = statistics.median(times) * 1000.0
    return {
        "kind": "train",
        "ms_per_step": ms,
        "tokens_per_sec": b * length / (ms / 1000.0),
    }


@torch.no_grad()
def sample(args, device):
    model, cos, sin = build(args, device)
    model.eval()
    gamma = gamma_of_tau(args.vocab)
    b, length, vocab, steps = args.batch, args.seq_len, args.vocab, args.steps
    grid = [(i / steps, float(gamma(i / steps))) for i in range(steps + 1)]
    times = []
    for run in range(args.warmup + args.runs):
        torch.manual_seed(run)
        started = time.perf_counter()
        z = torch.randn(b, length, vocab, device=device)
        for i in range(steps):
            (tau, g), (_, g_next) = grid[i], grid[i + 1]
            probs = model(z, torch.full((b,), tau, device=device), cos, sin).softmax(-1)
            if i == steps - 1:
                z = probs
            else:
                z = z + (g_next - g) / (1 - g) * (probs - z)
        z.argmax(-1).cpu()
        sync(device)
        if run >= args.warmup:
            times.append(time.perf_counter() - started)
    secs = statistics.median(times)
    return {
        "kind": "sample",
        "network_calls": steps,
        "secs_per_batch": secs,
        "ms_per_call": secs * 1000.0 / steps,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["train", "sample"])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps, or network calls per sample")
    parser.add_argument("--runs", type=int, default=3, help="timed sampling runs")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = (train if args.what == "train" else sample)(args, device)
    d, blocks, heads = PRESETS[args.preset]
    parameters = sum(p.numel() for p in build(args, torch.device("cpu"))[0].parameters())
    result.update(
        preset=args.preset,
        vocab=args.vocab,
        batch=args.batch,
        seq_len=args.seq_len,
        parameters=parameters,
        device=str(device),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        peak_rss_mb=peak_rss_mb(),
    )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    sys.exit(main())
