"""Sequence-length warmup: short pieces first, then whole blocks with the positions copied (chapter 8)."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from bertmini import BertConfig, BertForPreTraining
from bertmini.heads import IGNORE_INDEX
from bertmini.pretraining.seq_warmup import SeqWarmupStep, cut_rows, tile_positions

from test_pretraining_cli import pretrain, train_steps


def test_cut_rows_keeps_tokens_and_predictions_and_drops_padding_pieces():
    ids = torch.arange(5, 5 + 2 * 8).reshape(2, 8)
    attention = torch.ones(2, 8, dtype=torch.long)
    attention[1, 4:] = 0  # the second row's last half is padding
    labels = torch.full((2, 8), IGNORE_INDEX)
    labels[0, 1], labels[1, 2] = 99, 98
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": attention, "labels": labels}
    cut = cut_rows(batch, 4)
    assert cut["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]  # row 1's padding gone
    assert cut["labels"][0, 1] == 99 and cut["labels"][2, 2] == 98 and (cut["labels"] != IGNORE_INDEX).sum() == 2
    assert set(cut) == set(batch) and all(v.shape == (3, 4) for v in cut.values())
    with pytest.raises(ValueError, match="length 8 is not a multiple of 3"):
        cut_rows(batch, 3)
    with pytest.raises(ValueError, match="only MLM batches can be cut"):
        cut_rows({**batch, "next_sentence_label": torch.zeros(2)}, 4)


def tiny_model() -> BertForPreTraining:
    torch.manual_seed(0)
    return BertForPreTraining(BertConfig.preset("tiny", vocab_size=50, max_position_embeddings=40))


def test_tile_positions_copies_the_first_ones_up_to_the_block_length():
    model = tiny_model()
    table = model.bert.embeddings.position_embeddings.weight
    before = table.detach().clone()
    tile_positions(model, 4, 10)
    assert torch.equal(table[4:8], before[:4]) and torch.equal(table[8:10], before[:2])  # p gets p mod 4
    assert torch.equal(table[:4], before[:4]) and torch.equal(table[10:], before[10:])
    with pytest.raises(ValueError, match="need length < upto <= 40, got 4 and 41"):
        tile_positions(model, 4, 41)


def test_the_step_hook_tiles_once_at_the_first_whole_batch():
    model = tiny_model()
    table = model.bert.embeddings.position_embeddings.weight
    collator = SimpleNamespace(calls=3, short_batches=3)  # the third batch was the last cut one
    hook = SeqWarmupStep(collator, model, 4, 8)
    ids = torch.randint(5, 50, (2, 8))
    batch = {"input_ids": ids, "labels": torch.where(torch.rand(2, 8) < 0.5, ids, IGNORE_INDEX)}
    initial = table.detach().clone()
    hook(model, batch, lambda loss: None)
    assert torch.equal(table, initial), "no copy during the warmup"
    collator.calls = 4
    hook(model, batch, lambda loss: None)
    assert torch.equal(table[4:8], initial[:4])
    with torch.no_grad():
        table[4:8] += 1.0  # what training does to the copies afterwards
    collator.calls = 5
    hook(model, batch, lambda loss: None)
    assert torch.equal(table[4:8], initial[:4] + 1.0), "copied again after the switch"


WARMUP = ["data.mode=packed", "data.warmup_seq_length=16", "data.warmup_seq_steps=3", "train.save_every=2",
          "train.keep_last=3",
          "train.eval_every=2"]


@pytest.mark.slow
def test_a_run_resumed_across_the_switch_equals_an_uninterrupted_one(tmp_path, capsys):
    cache = tmp_path / "cache"
    assert pretrain(tmp_path / "whole", cache, *WARMUP, "train.max_steps=6") == 0
    assert "sequence-length warmup: the first 3 steps on pieces of 16 tokens (each block cut in 4)" in \
        capsys.readouterr().out
    resumed = tmp_path / "resumed"  # the same run, as if stopped after step 2 (before the switch at 3)
    shutil.copytree(tmp_path / "whole", resumed)
    for later in ("checkpoints/step-0000004", "checkpoints/step-0000006", "final"):
        shutil.rmtree(resumed / later, ignore_errors=True)
    (resumed / "summary.json").unlink()
    records = (resumed / "metrics.jsonl").read_text().splitlines()
    (resumed / "metrics.jsonl").write_text("".join(r + "\n" for r in records if json.loads(r)["step"] <= 2))
    assert pretrain(resumed, cache, *WARMUP, "train.max_steps=6") == 0
    assert "resuming from" in capsys.readouterr().out and train_steps(resumed) == [1, 2, 3, 4, 5, 6]
    losses = [[r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
              for out in (tmp_path / "whole", resumed)]
    assert losses[0] == losses[1]  # the same pieces, the same switch, the same copy of the positions
    whole, again = (BertForPreTraining.from_pretrained(out / "final") for out in (tmp_path / "whole", resumed))
    assert torch.equal(whole.bert.embeddings.position_embeddings.weight, again.bert.embeddings.position_embeddings.weight)
