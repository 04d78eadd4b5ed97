"""Pretraining step throughput: bertmini vs transformers' BertForPreTraining, same machine, one run.

Both sides get the same config, weights, batch, sequence length, dtype and thread count. The script
first checks that both compute the same loss on the same batch, then times full training steps
(forward, backward, AdamW) alternating between the two, and prints tokens/s and the ratio.

    python bench/bench_pretrain.py                       # bert-mini, 32 x 128, fp32 and bf16 autocast
    python bench/bench_pretrain.py --preset base --batch 8 --steps 3
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

import bertmini
from bertmini import BertConfig
from bertmini.checkpoint import load_state_dict


def make_batch(config: BertConfig, batch: int, seq: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with BERT-style 15% MLM labels and NSP labels, no padding (packed pretraining)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, config.vocab_size, (batch, seq), generator=g)
    labels = torch.full_like(ids, -100)
    chosen = torch.rand(batch, seq, generator=g) < 0.15
    labels[chosen] = ids[chosen]
    types = (torch.arange(seq) >= seq // 2).long().expand(batch, seq).contiguous()
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": torch.ones_like(ids),
            "labels": labels, "next_sentence_label": torch.randint(0, 2, (batch,), generator=g)}


def build_pair(config: BertConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    import transformers

    hf_config = transformers.BertConfig(**config.to_dict())
    theirs = transformers.BertForPreTraining._from_config(hf_config, attn_implementation="sdpa")
    ours = bertmini.BertForPreTraining(config)
    load_state_dict(ours, theirs.state_dict())
    return ours, theirs


def check_same_loss(ours: torch.nn.Module, theirs: torch.nn.Module, batch: dict) -> float:
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a, b = ours(**batch).loss.item(), theirs(**batch).loss.item()
    ours.train(), theirs.train()
    assert abs(a - b) < 1e-4, f"losses differ: bertmini {a:.6f} vs transformers {b:.6f}"
    return abs(a - b)


def autocast(dtype: str):
    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_step(model: torch.nn.Module, batch: dict, dtype: str):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # same optimizer kernel on both sides

    def step() -> None:
        with autocast(dtype):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def time_steps(step, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def compare(config: BertConfig, batch: dict, dtype: str, steps: int, rounds: int, compile_ours: bool) -> dict:
    ours, theirs = build_pair(config)
    diff = check_same_loss(ours, theirs, batch)
    if compile_ours:
        ours = torch.compile(ours)
    steps_fn = {"bertmini": make_step(ours, batch, dtype), "transformers": make_step(theirs, batch, dtype)}
    for fn in steps_fn.values():  # warm-up (allocator, compile)
        fn()
    times: dict[str, list[float]] = {k: [] for k in steps_fn}
    for _ in range(rounds):  # alternate so both sides see the same machine state
        for name, fn in steps_fn.items():
            times[name].append(time_steps(fn, steps))
    tokens = batch["input_ids"].numel()
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    return {"dtype": dtype, "loss_diff": diff, **tps, "ratio": tps["bertmini"] / tps["transformers"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--compile", action="store_true", help="also torch.compile bertmini")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = BertConfig.preset(args.preset, vocab_size=args.vocab)
    batch = make_batch(config, args.batch, args.seq)
    print(f"{args.preset}: L={config.num_hidden_layers} H={config.hidden_size} V={config.vocab_size}, "
          f"batch {args.batch} x {args.seq}, {args.threads} threads, torch {torch.__version__}")
    print(f"{'dtype':<6} {'bertmini tok/s':>15} {'transformers tok/s':>19} {'ratio':>6} {'|loss diff|':>12}")
    for dtype in args.dtypes.split(","):
        r = compare(config, batch, dtype, args.steps, args.rounds, args.compile)
        print(f"{r['dtype']:<6} {r['bertmini']:>15,.0f} {r['transformers']:>19,.0f} {r['ratio']:>5.2f}x {r['loss_diff']:>12.2e}")


if __name__ == "__main__":
    main()
