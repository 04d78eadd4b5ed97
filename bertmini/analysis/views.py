"""bertviz's interactive views (Vig 2019, "A Multiscale Visualization of Attention in the Transformer
Model", §3: the head view and the model view) fed from bertmini's own attention maps, working offline.

bertviz's HTML loads require.js, d3 v5 and jQuery from a CDN, so it is blank offline, behind firewalls and
in a built Jupyter Book (which has no require.js). :func:`offline_html` rewrites it: d3 5.7.0 and jQuery
3.7.1 (MIT/BSD licensed, copies from the npm registry in ``assets/``, license files beside them) are
inlined once per page under ``window.bertminiViz``, loaded as CommonJS modules so they neither need
require.js nor touch a page's own ``d3`` or ``$``; bertviz's script then runs with them directly. The
result works in Jupyter, Colab (one iframe per output), a saved file and the built book alike.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources

import bertviz
from IPython.display import HTML
from torch import nn

from bertmini.analysis.capture import Attentions, as_maps, attentions_for
from bertmini.errors import InputError, require
from bertmini.tokenizer import WordPieceTokenizer

__all__ = ["MAX_TOKENS", "render", "head_view", "model_view", "offline_html", "library_script", "standalone_page"]

# Above this many tokens the views become unreadable and slow (the model view draws layers x heads x T^2
# lines): a clear error asks for a shorter text or fewer layers instead.
MAX_TOKENS = {"head": 128, "model": 48}
LIBRARIES = {"d3": "d3-5.7.0.min.js", "jquery": "jquery-3.7.1.min.js"}
LICENSES = ("d3-LICENSE.txt", "jquery-LICENSE.txt")
_CDN = re.compile(r'<script src="https://cdnjs[^"]*require[^"]*"></script>')
_REQUIRE = re.compile(r"require\.config\(\{.*?\}\);\s*requirejs\(\['jquery', 'd3'\],\s*function\s*\(\$, d3\)\s*\{",
                      re.DOTALL)


def _asset(name: str) -> str:
    return resources.files("bertmini.analysis").joinpath("assets", name).read_text(encoding="utf-8")


@cache
def library_script() -> str:
    """One ``<script>`` that defines ``window.bertminiViz = {d3, jquery}`` unless the page already has it;
    the libraries' license texts travel with them, in a comment."""
    parts = []
    for name, file in LIBRARIES.items():
        code = _asset(file)
        # A local module/exports makes the UMD bundle export to us: no globals, no AMD define, no require.js.
        parts.append(f"lib.{name} = (function (module) {{ var exports = module.exports, define;\n{code}\n"
                     f";\nreturn module.exports; }})({{exports: {{}}}});")
    notices = "\n\n".join(_asset(name).strip() for name in LICENSES)
    return ("<script>/* d3 5.7.0 and jQuery 3.7.1, inlined by bertmini for offline views. Their licenses:\n\n"
            f"{notices}\n*/\n"
            "if (!window.bertminiViz) { window.bertminiViz = (function () { var lib = {};\n"
            + "\n".join(parts) + "\nreturn lib; })(); }\n</script>\n")


def offline_html(html: str) -> str:
    """bertviz's HTML without CDN loads: the libraries inline, bertviz's require.js call made a direct one."""
    if not _REQUIRE.search(html):
        raise RuntimeError(f"bertviz {getattr(bertviz, '__version__', '?')}: its HTML no longer has the "
                           "require.js loader this rewrite expects; pin bertviz 1.4.x")
    body = _REQUIRE.sub("(function ($, d3) {", _CDN.sub("", html), count=1)
    end = body.rindex("});")
    body = body[:end] + "})(window.bertminiViz.jquery, window.bertminiViz.d3);" + body[end + 3:]
    return library_script() + body


def render(attentions: Attentions, kind: str = "head", layers: Sequence[int] | None = None,
           max_tokens: int | None = None) -> HTML:
    """The offline head or model view of ``attentions`` (a displayable HTML object; ``.data`` is the HTML).
    ``layers``: which layers to draw (all by default); fewer make long inputs lighter."""
    require(kind in MAX_TOKENS, "kind", f"one of {sorted(MAX_TOKENS)}", kind)
    maps = as_maps(attentions.maps, attentions.tokens)
    limit = MAX_TOKENS[kind] if max_tokens is None else max_tokens
    if len(attentions.tokens) > limit:
        raise InputError(f"{kind} view: {len(attentions.tokens)} tokens, expected at most {limit}: shorten the "
                         f"text, or raise max_tokens (the view gets slow)")
    layers = list(range(len(maps))) if layers is None else list(layers)
    bad = [i for i in layers if not 0 <= i < len(maps)]
    require(bool(layers) and not bad, "layers", f"layer indices in [0, {len(maps)})", bad or layers)
    view = bertviz.head_view if kind == "head" else bertviz.model_view
    maps = maps.double().round(decimals=4)  # 4 digits are plenty for line opacity and keep the page ~4x smaller
    html = view(tuple(m[None] for m in maps), list(attentions.tokens), sentence_b_start=attentions.sentence_b_start,
                include_layers=layers, html_action="return")
    return HTML(offline_html(html.data))


def head_view(model: nn.Module, tokenizer: WordPieceTokenizer, text: str, text_pair: str | None = None,
              layers: Sequence[int] | None = None) -> HTML:
    """bertviz's head view of ``model`` on ``text`` (and ``text_pair``: sentence B, told apart in the view)."""
    return render(attentions_for(model, tokenizer, text, text_pair), "head", layers)


def model_view(model: nn.Module, tokenizer: WordPieceTokenizer, text: str, text_pair: str | None = None,
               layers: Sequence[int] | None = None) -> HTML:
    """bertviz's model view (every layer and head as a thumbnail) of ``model`` on ``text``."""
    return render(attentions_for(model, tokenizer, text, text_pair), "model", layers)


def standalone_page(view: HTML, title: str = "attention") -> str:
    """A whole HTML page holding ``view``, to save and open in a browser with no network."""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n"
            f"<body>\n{view.data}\n</body></html>\n")
