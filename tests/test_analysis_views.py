"""bertmini.analysis.views: bertviz's head and model views from bertmini's attentions, with no CDN.

The drawing check runs the views in headless Chromium and counts what they drew (one box per head, one
line per head and token pair); it skips where no chromium is installed (CI), and the book build re-runs
it with ``bench/attention_views_check.py`` on the built chapter.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from bertmini.analysis import views
from bertmini.analysis.capture import Attentions, attentions_for
from bertmini.errors import InputError

from test_analysis_capture import tiny_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


def test_views_have_no_network_loads(tiny):
    model, tok = tiny
    for view in (views.head_view(model, tok, "the cat sat", "the mat"), views.model_view(model, tok, "the cat")):
        html = view.data
        assert "cdnjs" not in html and "require.config" not in html and "requirejs(" not in html
        assert not re.search(r"<script[^>]+src=", html)
        assert "if (!window.bertminiViz)" in html and "jQuery v3.7.1" in html and "d3js.org v5.7.0" in html
        assert "Copyright 2010-2017 Mike Bostock" in html and "Copyright OpenJS Foundation" in html  # licenses
        assert html.count("window.bertminiViz.jquery, window.bertminiViz.d3") == 1


def test_offline_html_refuses_an_unknown_bertviz_layout():
    with pytest.raises(RuntimeError, match="no longer has the require.js loader"):
        views.offline_html("<div>some other template</div>")


def test_render_checks_its_input(tiny):
    model, tok = tiny
    att = attentions_for(model, tok, "the cat sat on the mat")
    with pytest.raises(InputError, match=r"model view: 8 tokens, expected at most 5: shorten the text"):
        views.render(att, "model", max_tokens=5)
    with pytest.raises(InputError, match=r"layers: expected layer indices in \[0, 2\), got \[2\]"):
        views.render(att, "head", layers=[0, 2])
    with pytest.raises(InputError, match=r"kind: expected one of \['head', 'model'\], got 'neuron'"):
        views.render(att, "neuron")
    batch = [torch.rand(2, 4, 8, 8)] * 2
    with pytest.raises(InputError, match=r"expected one sequence \(batch size 1\), got a batch of 2"):
        views.render(Attentions(att.tokens, batch), "head")
    html = views.render(att, "head", layers=[1]).data
    assert "\"include_layers\": [1]" in html
    weights = [float(w) for w in re.findall(r"\d\.\d+(?:e-\d+)?", html.split("const params = ")[1][:20000])]
    assert weights and all(round(w, 4) == w for w in weights)  # rounded to 4 digits: a smaller page


def _draw(page: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium (no network needed)."""
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install -y chromium) to run "
                                             "the views' JavaScript")
def test_views_draw_offline_in_chromium(minilm_dir, tmp_path):
    from bertmini import BertModel
    from bertmini.tokenizer import WordPieceTokenizer

    model, tok = BertModel.from_pretrained(minilm_dir).eval(), WordPieceTokenizer.from_file(minilm_dir)
    head = views.head_view(model, tok, "The cat sat on the mat.", "It was happy.")  # 14 tokens
    model_view = views.model_view(model, tok, "The cat sat on the mat.")  # 9 tokens
    page = tmp_path / "views.html"
    # A page with its own d3 and $ (as Jupyter has): the views must neither need nor clobber them.
    page.write_text(views.standalone_page(head).replace("<body>", "<body><script>window.d3 = 'theirs'; "
                    "window.$ = 'theirs';</script>") .replace("</body>", model_view.data + "<div id='globals'>"
                    "</div><script>document.getElementById('globals').textContent = window.d3 + '/' + window.$;"
                    "</script></body>"))
    dom = _draw(page)
    first, second = dom.split('class="attn_background"', 1)[0], dom
    assert first.count('class="headAttention"') == 12  # head view: one colour box per head
    assert len(re.findall(r"<line ", first)) == 12 * 14 * 14  # every head, query and key token
    assert second.count('class="attn_background"') == 6 * 12  # model view: a thumbnail per layer and head
    assert len(re.findall(r"<line ", second)) == 12 * 14 * 14 + 6 * 12 * 9 * 9
    assert ">theirs/theirs<" in dom
