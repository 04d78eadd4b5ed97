"""Nothing a user trained is lost or mixed up: ``finetune`` refuses a used ``--out`` unless ``--overwrite``
and never writes into its own ``--model``; one run per output folder (an OS lock, checked across real
processes); saved models get the permissions the umask gives; temporary folders of killed saves are never
taken for checkpoints and are deleted at the next start."""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bertmini import BertConfig, BertForSequenceClassification, BertModel
from bertmini.cli import main as cli
from bertmini.errors import ConfigError
from bertmini.pretraining.settings import load_settings
from bertmini.runfolder import LOCK_NAME, lock_folder, sweep_temps
from bertmini.tokenizer import WordPieceTokenizer
from bertmini.training.state import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint, save_model
from bertmini.training.yaml_config import CONFIG_DIR

pytestmark = pytest.mark.slow  # real processes and runs: not in the quick subset (pytest -m 'not slow')

FAST = ["--max-train-examples", "16", "--max-eval-examples", "8", "--max-steps", "2", "--batch-size", "8",
        "--max-length", "32", "--log-every", "1", "--no-progress"]
TINY = CONFIG_DIR / "pretrain_tiny_test.yaml"
PRETRAIN_FAST = ["train.max_steps=2", "train.save_every=1", "train.eval_every=2"]


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (lock file included), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def wrong_modes(folder: Path, mask: int) -> list[str]:
    """Files not ``0666 & ~mask`` and folders not ``0777 & ~mask`` under ``folder`` (itself included)."""
    wrong = []
    for path in [folder, *folder.rglob("*")]:
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        if stat.S_IMODE(path.stat().st_mode) != want:
            wrong.append(f"{path.relative_to(folder.parent)}: {oct(stat.S_IMODE(path.stat().st_mode))} != {oct(want)}")
    return wrong


def finetune_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--task", "sst2", "--model", str(model), "--out", str(out), *FAST, *extra]


def cli_process(args: list[str], **kwargs) -> dict:
    """``python -m bertmini ARGS`` as a separate process, from the repository root."""
    return dict(args=[sys.executable, "-m", "bertmini", *args], cwd=Path(__file__).resolve().parents[1],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def train_steps(jsonl: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, jsonl.read_text().splitlines()) if "loss" in r]


@pytest.fixture(scope="module")
def base(tmp_path_factory, minilm_dir) -> Path:
    """A random 2-layer BertModel with the real MiniLM vocabulary."""
    folder = tmp_path_factory.mktemp("base") / "model"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    WordPieceTokenizer.from_file(minilm_dir).save(folder)
    return folder


@pytest.fixture(scope="module")
def finished(base, tmp_path_factory) -> Path:
    """A finished fine-tuning run, made under umask 022."""
    out = tmp_path_factory.mktemp("finished") / "run"
    with umask(0o022):
        assert cli(finetune_args(base, out)) == 0
    return out


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> SimpleNamespace:
    """A finished tiny pretraining run (checkpoints step 1 and 2), made under umask 022."""
    root = tmp_path_factory.mktemp("pretrain")
    with umask(0o022):
        assert cli(["pretrain", "--config", str(TINY), f"out_dir={root / 'out'}", f"data.cache_dir={root / 'cache'}",
                    *PRETRAIN_FAST]) == 0
    return SimpleNamespace(out=root / "out", cache=root / "cache")


def pretrain(out: Path, cache: Path, *extra: str) -> int:
    return cli(["pretrain", "--config", str(TINY), f"out_dir={out}", f"data.cache_dir={cache}", *PRETRAIN_FAST,
                *extra])


# ---- a used --out ---------------------------------------------------------------------------------
def test_finetune_refuses_a_finished_out_and_leaves_it_as_it_was(base, finished, tmp_path, capsys):
    out = shutil.copytree(finished, tmp_path / "run")
    before = snapshot(out)
    assert cli(finetune_args(base, out, "--lr", "1e-3")) == 2
    err = capsys.readouterr().err
    assert f"error: {out} already holds a finished fine-tuning run (" in err
    assert "metrics.json, model.safetensors" in err and "train, vocab.txt)" in err
    assert "pass --overwrite to delete it and train again, or choose another --out" in err
    assert snapshot(out) == before
    model_only = tmp_path / "model"
    shutil.copytree(base, model_only)
    assert cli(finetune_args(base, model_only)) == 2
    assert f"{model_only} already holds a model (config.json, model.safetensors" in capsys.readouterr().err


def test_overwrite_replaces_the_old_run_without_mixing(base, finished, tmp_path):
    out = shutil.copytree(finished, tmp_path / "run")
    assert train_steps(out / "train" / "metrics.jsonl") == [1, 2]
    (out / "seed-7").mkdir()  # an older --seeds run in the same folder
    (out / ".tmp-train-99999-deadbeef").mkdir()  # a killed run's scratch folder
    (out / "notes.txt").write_text("mine")  # not a run file: kept
    assert cli(finetune_args(base, out, "--overwrite", "--max-steps", "3")) == 0
    assert train_steps(out / "train" / "metrics.jsonl") == [1, 2, 3]  # appended, it would be [1, 2, 1, 2, 3]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    assert not (out / "seed-7").exists() and not (out / ".tmp-train-99999-deadbeef").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [LOCK_NAME]
    BertForSequenceClassification.from_pretrained(out)


def test_out_never_overlaps_the_model_even_with_overwrite(base, tmp_path, capsys):
    model = shutil.copytree(base, tmp_path / "models" / "bert")
    (tmp_path / "link").symlink_to(model)
    before = snapshot(tmp_path / "models")
    for out, relation in [(model, "is"), (tmp_path / "link", "is"), (model / "ft", "is inside"),
                          (tmp_path / "models", "contains")]:
        assert cli(finetune_args(model, out, "--overwrite")) == 2
        err = capsys.readouterr().err
        assert f"error: --out {out} {relation} the --model folder {model}: the run would overwrite its own input" in err
    assert snapshot(tmp_path / "models") == before and not (model / "ft").exists()


def test_pretrain_init_from_never_overlaps_out_dir(tmp_path):
    for init_from in (tmp_path / "run", tmp_path / "run" / "final"):
        with pytest.raises(ConfigError, match=r"model: out_dir .* (is|contains) the model.init_from folder"):
            load_settings(TINY, [f"out_dir={tmp_path / 'run'}", f"model={{init_from: {init_from}}}"])
    load_settings(TINY, [f"out_dir={tmp_path / 'run2'}", f"model={{init_from: {tmp_path / 'run' / 'final'}}}"])


# ---- one run per folder -----------------------------------------------------------------------------
def test_a_second_process_is_refused_while_the_lock_is_held(base, tmp_path):
    out = tmp_path / "run"
    with lock_folder(out, "unused"):
        done = subprocess.run(**cli_process(finetune_args(base, out)), timeout=300)
    assert done.returncode == 2, done.stderr
    assert f"error: {out} is in use by pid {os.getpid()} (started " in done.stderr
    assert "; wait for it or choose another --out" in done.stderr
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # nothing written


def test_two_concurrent_finetune_processes(base, tmp_path):
    """The first run is paused while it holds the lock; the second, a real process, is refused; the first,
    resumed, finishes with its own model and log only."""
    out = tmp_path / "run"
    first = subprocess.Popen(**cli_process(finetune_args(base, out)))
    try:
        deadline = time.monotonic() + 300
        while not _holds_lock(out, first.pid):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = subprocess.run(**cli_process(finetune_args(base, out)), timeout=300)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 2, second.stderr
        assert f"is in use by pid {first.pid} (started " in second.stderr
        stdout, stderr = first.communicate(timeout=300)
        assert first.returncode == 0, stderr
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert train_steps(out / "train" / "metrics.jsonl") == [1, 2]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    BertForSequenceClassification.from_pretrained(out)


def _holds_lock(folder: Path, pid: int) -> bool:
    try:
        return json.loads((folder / LOCK_NAME).read_text())["pid"] == pid
    except (OSError, ValueError, KeyError):
        return False


def test_pretrain_refuses_a_locked_out_dir_and_keeps_its_temp_folders(pretrained, tmp_path, capsys):
    out = shutil.copytree(pretrained.out, tmp_path / "out")
    live = out / "checkpoints" / ".tmp-step-0000003-4242-0badcafe"  # the lock holder's save in progress
    live.mkdir()
    before = snapshot(out)
    with lock_folder(out, "unused"):
        assert pretrain(out, pretrained.cache, "train.max_steps=3") == 2
        before[LOCK_NAME] = (out / LOCK_NAME).read_bytes()  # what the holder wrote
    err = capsys.readouterr().err
    assert f"error: {out} is in use by pid {os.getpid()} (started " in err
    assert "; wait for it or choose another out_dir" in err
    assert live.is_dir() and snapshot(out) == before


def test_lock_is_released_with_the_block_and_by_a_dead_process(tmp_path):
    with lock_folder(tmp_path / "a", "x"):
        with pytest.raises(OSError, match="is in use by pid"), lock_folder(tmp_path / "a", "x"):
            pass
    with lock_folder(tmp_path / "a", "x"):  # released: taken again
        pass
    code = f"from bertmini.runfolder import lock_folder\nlock_folder({str(tmp_path / 'b')!r}, 'x').__enter__()\n" \
           "import os; os._exit(1)  # a crash: no cleanup runs"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 1
    assert json.loads((tmp_path / "b" / LOCK_NAME).read_text())["pid"] != os.getpid()
    with lock_folder(tmp_path / "b", "x"):  # the dead process's lock died with it
        pass


# ---- permissions --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_saves_follow_the_umask(mask, tmp_path, minilm_dir):
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32))
    with umask(mask):
        model.save_pretrained(tmp_path / "pretrained")
        model.save_pretrained(tmp_path / "pretrained")  # replacing files keeps the right modes too
        save_model(model, tmp_path / "model")
        save_model(model, tmp_path / "model")  # an existing folder is swapped
        save_checkpoint(tmp_path / "checkpoints" / "step-0000001", {"step": 1})
        WordPieceTokenizer.from_file(minilm_dir).save(tmp_path / "tokenizer")
    for name in ("pretrained", "model", "checkpoints", "tokenizer"):
        assert not wrong_modes(tmp_path / name, mask), wrong_modes(tmp_path / name, mask)
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_finetune_and_pretrain_outputs_follow_the_umask(finished, pretrained):
    for folder in (finished, pretrained.out, pretrained.cache):
        assert not wrong_modes(folder, 0o022), wrong_modes(folder, 0o022)
    assert (pretrained.out / "final" / "model.safetensors").is_file()


# ---- temporary folders of killed saves ----------------------------------------------------------------
def test_temp_folders_are_never_checkpoints_and_are_swept_at_the_next_start(pretrained, tmp_path, capsys):
    out = shutil.copytree(pretrained.out, tmp_path / "out")
    ckpts = out / "checkpoints"
    leftovers = [ckpts / ".tmp-step-0000009-123-abcdef01", ckpts / ".tmp-step-0000010-kq3j_x8e",  # old mkdtemp name
                 ckpts / ".old-step-0000002-123-abcdef01", out / ".tmp-final-123-abcdef01", out / ".old-final",
                 out / ".tmp-best-123-abcdef01"]
    for folder in leftovers:
        shutil.copytree(ckpts / "step-0000002", folder)  # whole, loadable states: still not checkpoints
    (out / ".tmp-model.safetensors-123-abcdef01").write_bytes(b"half")
    kept = [out / ".hidden", ckpts / "tmp-step-0000011", out / "tokenizer" / "notes.tmp"]
    for path in kept:
        path.write_text("not ours")
    assert [p.name for p in list_checkpoints(ckpts)] == ["step-0000001", "step-0000002"]
    assert latest_checkpoint(ckpts) == ckpts / "step-0000002"
    assert load_checkpoint(ckpts / ".tmp-step-0000009-123-abcdef01")["trainer"]["step"] == 2
    assert pretrain(out, pretrained.cache) == 0  # a rerun of the finished run
    assert "the run was already complete" in capsys.readouterr().out
    assert not [p for p in [*leftovers, out / ".tmp-model.safetensors-123-abcdef01"] if p.exists()]
    assert all(p.read_text() == "not ours" for p in kept)
    assert [p.name for p in list_checkpoints(ckpts)] == ["step-0000001", "step-0000002"]


def test_sweep_temps_depth(tmp_path):
    deep = tmp_path / "a" / "b" / ".tmp-x-1-00"
    deep.mkdir(parents=True)
    (tmp_path / "a" / ".old-y").mkdir()
    assert sweep_temps(tmp_path) == [tmp_path / "a" / ".old-y"]  # two levels: the run folder and its subfolders
    assert deep.is_dir()
