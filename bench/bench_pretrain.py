"""Pretraining step throughput: bertmini vs transformers' BertForPreTraining, same machine, one run.

Both sides get the same config, weights, batch, sequence length, dtype, thread count and optimizer
(fused AdamW). The script first checks that both compute the same loss on the same batch, then
times full training steps (forward, backward, AdamW) alternating between the two sides, and prints
tokens/s, the ratio, and the model FLOPs utilization when a peak is known (FLOPs/token = 6N + 12LHT).

    python bench/bench_pretrain.py                                   # bert-mini 32 x 128, CPU, fp32 + bf16
    python bench/bench_pretrain.py --preset base --batch 8 --rounds 2
    python bench/bench_pretrain.py --device cuda --preset base --batch 64 --dtypes bf16 --compile
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

import bertmini
from bertmini import BertConfig
from bertmini.hf_folder import load_state_dict
from bertmini.precision import AUTOCAST_DTYPES

# Dense bf16 peak TFLOP/s by device name, for MFU (override with --peak-tflops).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "T4": 65.0}


def make_batch(config: BertConfig, batch: int, seq: int, device: torch.device, seed: int = 0) -> dict:
    """Random ids with BERT-style 15% MLM labels and NSP labels, no padding (packed pretraining)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, config.vocab_size, (batch, seq), generator=g)
    labels = torch.full_like(ids, -100)
    chosen = torch.rand(batch, seq, generator=g) < 0.15
    labels[chosen] = ids[chosen]
    types = (torch.arange(seq) >= seq // 2).long().expand(batch, seq).contiguous()
    out = {"input_ids": ids, "token_type_ids": types, "attention_mask": torch.ones_like(ids),
           "labels": labels, "next_sentence_label": torch.randint(0, 2, (batch,), generator=g)}
    return {k: v.to(device) for k, v in out.items()}


def build_pair(config: BertConfig, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    import transformers

    hf_config = transformers.BertConfig(**config.to_dict())
    theirs = transformers.BertForPreTraining._from_config(hf_config, attn_implementation="sdpa")
    ours = bertmini.BertForPreTraining(config)
    load_state_dict(ours, theirs.state_dict())
    return ours.to(device), theirs.to(device)


def check_same_loss(ours: torch.nn.Module, theirs: torch.nn.Module, batch: dict) -> float:
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a, b = ours(**batch).loss.item(), theirs(**batch).loss.item()
    ours.train(), theirs.train()
    assert abs(a - b) < 1e-4, f"losses differ: bertmini {a:.6f} vs transformers {b:.6f}"
    return abs(a - b)


def autocast(device: torch.device, dtype: str):
    """Both sides run in the same explicit precision (the choice is the benchmark's, not `auto`'s)."""
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[dtype]) if AUTOCAST_DTYPES[dtype] else nullcontext()


def make_step(model: torch.nn.Module, batch: dict, dtype: str, device: torch.device):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # same optimizer kernel on both sides

    def step() -> None:
        with autocast(device, dtype):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def time_steps(step, n: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return (time.perf_counter() - start) / n


def compare(config: BertConfig, batch: dict, dtype: str, args: argparse.Namespace, device: torch.device) -> dict:
    ours, theirs = build_pair(config, device)
    diff = check_same_loss(ours, theirs, batch)
    n_params = ours.num_parameters()
    if args.compile:
        ours, theirs = torch.compile(ours), torch.compile(theirs)
    steps = {"bertmini": make_step(ours, batch, dtype, device), "transformers": make_step(theirs, batch, dtype, device)}
    for fn in steps.values():  # warm-up: allocator, kernels, compilation
        fn(), fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):  # alternate so both sides see the same machine state
        for name, fn in steps.items():
            times[name].append(time_steps(fn, args.steps, device))
    tokens = batch["input_ids"].numel()
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    flops_per_token = 6 * n_params + 12 * config.num_hidden_layers * config.hidden_size * batch["input_ids"].size(1)
    return {"dtype": dtype, "loss_diff": diff, **tps, "ratio": tps["bertmini"] / tps["transformers"],
            "tflops": {k: v * flops_per_token / 1e12 for k, v in tps.items()}}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override is not None:
        return override
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile both sides")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = BertConfig.preset(args.preset, vocab_size=args.vocab)
    batch = make_batch(config, args.batch, args.seq, device)
    peak = peak_tflops(device, args.peak_tflops)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads"
    print(f"bert-{args.preset}: L={config.num_hidden_layers} H={config.hidden_size} V={config.vocab_size}, "
          f"batch {args.batch} x {args.seq}, {where}, torch {torch.__version__}{', compiled' if args.compile else ''}")
    print(f"| dtype | bertmini tok/s | transformers tok/s | ratio | loss diff |{' bertmini MFU | transformers MFU |' if peak else ''}")
    print(f"|---|---:|---:|---:|---:|{'---:|---:|' if peak else ''}")
    results = []
    for dtype in args.dtypes.split(","):
        r = compare(config, batch, dtype, args, device)
        results.append(r)
        mfu = f" {r['tflops']['bertmini'] / peak:.1%} | {r['tflops']['transformers'] / peak:.1%} |" if peak else ""
        print(f"| {dtype} | {r['bertmini']:,.0f} | {r['transformers']:,.0f} | {r['ratio']:.2f}x | {r['loss_diff']:.1e} |{mfu}",
              flush=True)
    if len(results) > 1:
        ours = max(results, key=lambda r: r["bertmini"])
        theirs = max(results, key=lambda r: r["transformers"])
        print(f"best vs best: bertmini {ours['dtype']} {ours['bertmini']:,.0f} tok/s vs transformers "
              f"{theirs['dtype']} {theirs['transformers']:,.0f} tok/s = {ours['bertmini'] / theirs['transformers']:.2f}x")


if __name__ == "__main__":
    main()
