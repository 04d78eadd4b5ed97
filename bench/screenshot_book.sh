#!/usr/bin/env bash
# Screenshots of the built book in headless Chromium, to look at what the HTML shows offline: figures,
# math (MathJax served from the book's _static/, see _config.yml), code cells, the Colab badges (an
# external image: blank offline, a broken-image icon or alt text is expected) and the glossary's Chinese.
#
#   bench/screenshot_book.sh                         # build into a temp folder, shoot the default pages
#   bench/screenshot_book.sh HTML_DIR OUT_DIR        # shoot an existing build (…/_build/html)
#   bench/screenshot_book.sh HTML_DIR OUT_DIR chapters/12_looking_inside glossary   # chosen pages
#
# Needs chromium (Debian: apt-get install -y chromium fonts-noto-cjk; the fonts are for the Chinese).
# Pages are 1280 px wide and BOOK_SCREEN_HEIGHT (default 2400) px tall from the top; --virtual-time-budget
# lets MathJax typeset before the shot.
set -euo pipefail
cd "$(dirname "$0")/.."

html="${1:-}"
out="${2:-$(mktemp -d /tmp/book-screens.XXXX)}"
shift $(( $# < 2 ? $# : 2 ))
if [ -z "$html" ]; then
  build="$(mktemp -d /tmp/book-build.XXXX)"
  jb="$(command -v jupyter-book || echo .venv/bin/jupyter-book)"
  "$jb" build . -W -n --keep-going --path-output "$build" >"$build/build.log" 2>&1 || {
    tail -30 "$build/build.log"; exit 1; }
  html="$build/_build/html"
fi
html="$(cd "$html" && pwd)"
mkdir -p "$out"

browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[ -n "$browser" ] || { echo "no chromium: apt-get install -y chromium fonts-noto-cjk" >&2; exit 1; }

if [ $# -gt 0 ]; then
  pages=("$@")
else
  pages=(intro chapters/02_attention chapters/04_embeddings chapters/05_encoder_layer chapters/09_text_classification
         chapters/common_mistakes notation glossary references)
  for extra in "$html"/chapters/1[2-9]_*.html; do  # Part IV and later, whatever exists
    [ -e "$extra" ] && pages+=("chapters/$(basename "$extra" .html)")
  done
fi

for page in "${pages[@]}"; do
  file="$html/$page.html"
  [ -f "$file" ] || { echo "missing: $file" >&2; continue; }
  png="$out/$(echo "$page" | tr / _).png"
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=20000 \
    --window-size=1280,"${BOOK_SCREEN_HEIGHT:-2400}" --screenshot="$png" "file://$file" >/dev/null 2>&1 || echo "failed: $page" >&2
  [ -f "$png" ] && echo "$png"
done
