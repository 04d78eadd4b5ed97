"""bertmini.analysis.figures: each figure draws what it says (panels, cells, lines) and checks its indices."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest
import torch

from bertmini.analysis import figures
from bertmini.analysis.capture import Attentions
from bertmini.errors import InputError

TOKENS = ["[CLS]", "a", "b", "[SEP]"]


@pytest.fixture
def att():
    torch.manual_seed(0)
    return Attentions(TOKENS, torch.rand(2, 3, 4, 4).softmax(-1))


def test_head_and_grid(att):
    fig = figures.plot_head(att, 1, 2)
    assert fig.axes[0].get_title() == "layer 1, head 2"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == TOKENS
    torch.testing.assert_close(torch.tensor(fig.axes[0].images[0].get_array()), att.maps[1, 2])
    assert len(figures.plot_layer_grid(att).axes) == 6 and len(figures.plot_layer_grid(att, [1]).axes) == 3
    with pytest.raises(InputError, match=r"head: expected an index in \[0, 3\), got 3"):
        figures.plot_head(att, 0, 3)
    with pytest.raises(InputError, match=r"layers: expected an index in \[0, 2\), got 5"):
        figures.plot_layer_grid(att, [5])
    plt.close("all")


def test_statistics_and_rollout(att):
    values = {"x": torch.arange(6.0).reshape(2, 3), "y": torch.ones(2, 3)}
    fig = figures.plot_by_layer(values, "share")
    assert [line.get_ydata().tolist() for line in fig.axes[0].lines] == [[1.0, 4.0], [1.0, 1.0]]
    fig = figures.plot_head_values(values)
    assert len(fig.axes) == 4 and len(fig.axes[0].texts) == 6  # two maps + colour bars; a number per head
    fig = figures.plot_rollout(att)
    assert [ax.get_title() for ax in fig.axes] == ["raw attention, layer 1 (mean of heads)", "rollout through 2 layers"]
    with pytest.raises(InputError, match=r"tokens: expected 4 tokens \(the maps are 4 x 4\), got 3"):
        figures.plot_rollout(SimpleNamespace(maps=att.maps, tokens=TOKENS[:3]))  # an Attentions would refuse too
    plt.close("all")
