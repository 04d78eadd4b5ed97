"""bertmini.precision: what ``auto`` picks on each kind of hardware (probes faked both ways), the checks,
the one autocast helper, and the Trainer / CLIs using them."""
from __future__ import annotations

import inspect
import warnings

import pytest
import torch
import torch.nn.functional as F

from bertmini import precision as P
from bertmini.finetuning.inference import forward_features
from bertmini.finetuning.options import FinetuneOptions
from bertmini.finetuning.predict import build_parser as predict_parser
from bertmini.ops import linear_cross_entropy
from bertmini.precision import PRECISIONS, autocast, autocast_dtype, resolve_precision
from bertmini.training.train_config import TrainConfig
from bertmini.training.trainer import Trainer

from test_training_trainer import Toy, config, make_data, tiny_bert

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(P.ENV_VAR, raising=False)


def fake_cpu(monkeypatch, feature: str | None) -> None:
    monkeypatch.setattr(P, "cpu_bf16_feature", lambda: feature)


def fake_cuda(monkeypatch, native_bf16: bool) -> None:
    monkeypatch.setattr(P, "cuda_bf16_supported", lambda: native_bf16)


# -- auto ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("feature", ["AMX", "AVX-512 BF16"])
def test_auto_on_a_cpu_with_native_bf16_is_bf16(monkeypatch, feature):
    fake_cpu(monkeypatch, feature)
    choice = resolve_precision("auto", CPU)
    assert (choice.precision, choice.requested, choice.dtype) == ("bf16", "auto", torch.bfloat16)
    assert choice.reason == f"auto: this CPU has {feature} matmuls"
    assert str(choice) == f"bf16 (auto: this CPU has {feature} matmuls)"


def test_auto_on_an_avx2_only_cpu_is_fp32(monkeypatch):
    fake_cpu(monkeypatch, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns: it picks what is fast
        choice = resolve_precision("auto", "cpu")
    assert (choice.precision, choice.dtype) == ("fp32", None)
    assert "no native bf16" in choice.reason and "15-25x slower" in choice.reason
    assert choice.to_dict() == {"requested": "auto", "used": "fp32", "reason": choice.reason}


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_is_bf16_when_native_else_fp16(monkeypatch, native, expected):
    fake_cuda(monkeypatch, native)
    choice = resolve_precision("auto", CUDA)
    assert choice.precision == expected and choice.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]
    assert ("loss scaling" in choice.reason) == (expected == "fp16")


def test_auto_on_mps_is_fp32_and_says_why(monkeypatch):
    fake_cpu(monkeypatch, "AMX")  # the host CPU does not matter
    choice = resolve_precision("auto", MPS)
    assert choice.precision == "fp32" and "MPS" in choice.reason


@pytest.mark.parametrize("value", ["fp32", "bf16"])
def test_environment_variable_overrides_auto(monkeypatch, value):
    fake_cpu(monkeypatch, "AMX")
    monkeypatch.setenv(P.ENV_VAR, value)
    choice = resolve_precision("auto", CPU)
    assert (choice.precision, choice.requested) == (value, "auto")
    assert choice.reason == f"auto: BERTMINI_PRECISION={value}"
    assert resolve_precision("fp32", CPU).precision == "fp32"  # it only steers auto


def test_environment_variable_simulates_a_cpu_without_bf16(monkeypatch):
    fake_cpu(monkeypatch, "AVX-512 BF16")
    monkeypatch.setenv(P.ENV_VAR, "fp32")
    assert Trainer(Toy(), make_data()[0], config(None, precision="auto", out_dir=None)).precision.precision == "fp32"


@pytest.mark.parametrize("value, message", [("fp8", r"BERTMINI_PRECISION='fp8': expected one of \('fp32', 'bf16', "
                                                    r"'fp16'\)"),
                                            ("fp16", "needs CUDA")])
def test_invalid_environment_variable_is_a_clear_error(monkeypatch, value, message):
    monkeypatch.setenv(P.ENV_VAR, value)
    with pytest.raises(ValueError, match=message):
        resolve_precision("auto", CPU)


# -- explicit values ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["fp8", "BF16", "", "float32"])
def test_invalid_values_list_the_choices(value):
    for call in (lambda: resolve_precision(value, CPU), lambda: P.check_precision(value),
                 lambda: autocast(CPU, value), lambda: TrainConfig(max_steps=1, precision=value)):
        with pytest.raises(ValueError, match=r"expected one of \('auto', 'fp32', 'bf16', 'fp16'\)"):
            call()


def test_explicit_bf16_on_a_cpu_without_native_bf16_runs_but_warns(monkeypatch):
    fake_cpu(monkeypatch, None)
    with pytest.warns(UserWarning, match=r"15-25x slower than fp32; use precision 'auto' \(fp32 here\) or 'fp32'"):
        choice = resolve_precision("bf16", CPU)
    assert (choice.precision, choice.requested, choice.dtype) == ("bf16", "bf16", torch.bfloat16)
    fake_cpu(monkeypatch, "AMX")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", CPU).reason == "requested"


@pytest.mark.parametrize("device", [CPU, MPS])
def test_fp16_off_cuda_is_an_error_that_suggests_auto(device):
    with pytest.raises(ValueError, match=r"precision='fp16' needs CUDA .*use 'auto'"):
        resolve_precision("fp16", device)
    fake = resolve_precision("fp16", CUDA)  # no GPU needed to decide
    assert (fake.precision, fake.dtype) == ("fp16", torch.float16)


# -- probes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("amx, avx512, expected", [(True, True, "AMX"), (False, True, "AVX-512 BF16"),
                                                   (False, False, None)])
def test_cpu_probe_reads_torch_cpu(monkeypatch, amx, avx512, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512, raising=False)
    assert P.cpu_bf16_feature() == expected


def test_cpu_probe_without_torch_probes_says_fp32(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert P.cpu_bf16_feature() is None
    assert resolve_precision("auto", CPU).precision == "fp32"


def test_cuda_probe_excludes_emulation_when_torch_can(monkeypatch):
    calls = []

    def new(including_emulation: bool = True) -> bool:  # torch >= 2.4
        calls.append(including_emulation)
        return not including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", new)
    assert P.cuda_bf16_supported() is True and calls == [False]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # older torch: no argument
    assert P.cuda_bf16_supported() is False


# -- autocast -----------------------------------------------------------------------------------
def test_autocast_helper(monkeypatch):
    for precision, expected in (("bf16", torch.bfloat16), ("fp32", None)):
        with autocast(CPU, precision):
            assert autocast_dtype("cpu") == expected
    fake_cpu(monkeypatch, None)
    with autocast("cpu", "auto"):
        assert autocast_dtype("cpu") is None
    fake_cpu(monkeypatch, "AMX")
    with autocast("cpu", resolve_precision("auto", CPU)):
        assert autocast_dtype("cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="use 'auto'"):
        autocast(CPU, "fp16")
    assert autocast_dtype("cpu") is None


def test_autocast_dtype_falls_back_on_older_torch(monkeypatch):
    """torch < 2.4 has no get_autocast_dtype(device): the per-device functions answer instead."""
    torch.manual_seed(0)
    h, w, b = torch.randn(20, 8), torch.randn(300, 8), torch.randn(300)
    t = torch.randint(0, 300, (20,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        new = linear_cross_entropy(h, w, b, t)
    monkeypatch.setattr(P, "_DEVICE_AUTOCAST_API", False)  # (torch.autocast itself needs the new API)
    assert autocast_dtype("cpu") is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert autocast_dtype("cpu") == torch.bfloat16
        old = linear_cross_entropy(h, w, b, t)
    assert torch.equal(new, old) and not torch.equal(old, linear_cross_entropy(h, w, b, t))


def test_bf16_autocast_is_close_to_fp32_on_a_tiny_bert():
    """The bf16 path stays correct: a tiny BERT's MLM + NSP loss and logits under bf16 autocast."""
    model = tiny_bert().eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 50, (4, 12), generator=gen)
    labels = torch.where(torch.rand(ids.shape, generator=gen) < 0.3, ids, -100)
    batch = {"input_ids": ids, "labels": labels, "next_sentence_label": torch.tensor([0, 1, 0, 1])}
    with torch.no_grad():
        fp32 = model(**batch)
        with autocast(CPU, "bf16"):
            bf16 = model(**batch)
    assert abs(bf16.loss.item() - fp32.loss.item()) < 0.02 * fp32.loss.item()
    torch.testing.assert_close(bf16.prediction_logits.float(), fp32.prediction_logits, atol=0.05, rtol=0.05)
    assert F.cosine_similarity(bf16.prediction_logits.float().flatten(), fp32.prediction_logits.flatten(), 0) > 0.999


# -- where it is used ---------------------------------------------------------------------------
def test_auto_is_the_default_everywhere():
    assert TrainConfig(max_steps=1).precision == "auto"
    assert FinetuneOptions(task="sst2", model="m").precision == "auto"
    action = next(a for a in predict_parser()._actions if a.dest == "precision")
    assert action.default == "auto" and tuple(action.choices) == PRECISIONS
    assert inspect.signature(forward_features).parameters["precision"].default == "auto"


@pytest.mark.parametrize("feature, expected", [(None, None), ("AVX-512 BF16", torch.bfloat16)])
def test_trainer_resolves_once_prints_and_autocasts(monkeypatch, capsys, feature, expected):
    fake_cpu(monkeypatch, feature)
    seen = []

    def step(model, batch, backward):
        seen.append(autocast_dtype("cpu"))
        loss = model(**batch).loss
        backward(loss)
        return {"loss": loss.detach()}

    loader, _ = make_data()
    trainer = Trainer(Toy(), loader, config(None, precision="auto", out_dir=None, max_steps=2, progress=True),
                      train_step=step)
    used = "fp32" if feature is None else "bf16"
    assert trainer.precision == resolve_precision("auto", CPU) and trainer.precision.precision == used
    assert capsys.readouterr().out.splitlines()[0] == f"precision: {trainer.precision}"
    trainer.train()
    assert seen == [expected, expected] and not trainer.scaler.is_enabled()


def test_trainer_refuses_fp16_on_cpu_suggesting_auto():
    with pytest.raises(ValueError, match=r"precision='fp16' needs CUDA \(device is cpu\); use 'auto'"):
        Trainer(Toy(), make_data()[0], config(None, precision="fp16", device="cpu", out_dir=None))


def test_forward_features_resolves_auto(monkeypatch):
    from bertmini import BertConfig, BertForSequenceClassification
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig.preset("tiny", vocab_size=50, max_position_embeddings=32,
                                                            num_labels=3)).eval()
    features = [{"input_ids": torch.randint(5, 50, (n,)).tolist()} for n in (5, 9, 7)]
    fp32 = forward_features(model, features, batch_size=2, precision="fp32")
    fake_cpu(monkeypatch, "AMX")
    bf16 = forward_features(model, features, batch_size=2)  # auto -> bf16 here
    fake_cpu(monkeypatch, None)
    auto32 = forward_features(model, features, batch_size=2)  # auto -> fp32 here
    for a, b, c in zip(fp32, bf16, auto32):
        assert torch.equal(a, c) and not torch.equal(a, b)
        torch.testing.assert_close(b, a, atol=0.1, rtol=0.05)
