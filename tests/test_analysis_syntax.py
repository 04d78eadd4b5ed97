"""bertmini.analysis.syntax: subword-to-word attention, head accuracy per relation against a hand-built
tree with a known answer, the fixed-offset baseline, and MiniLM on real UD sentences."""
from __future__ import annotations

import pytest
import torch

from bertmini.analysis.conllu import Sentence, read_conllu
from bertmini.analysis.syntax import SyntaxScores, attended_words, head_table, relation_of, score_heads, word_attention
from bertmini.errors import InputError

# "The dog chased a cat": det, nsubj, root, det, obj (heads 1-based)
TREE = Sentence(["The", "dog", "chased", "a", "cat"], [2, 3, 0, 5, 3], ["det", "nsubj", "root", "det", "obj"])


def test_word_attention_sums_to_and_averages_from_pieces():
    # tokens: [CLS] un ##do it [SEP] -> words 0 (un ##do) and 1 (it)
    maps = torch.tensor([[0.2, 0.2, 0.2, 0.2, 0.2],
                         [0.1, 0.1, 0.5, 0.2, 0.1],
                         [0.0, 0.3, 0.3, 0.4, 0.0],
                         [0.5, 0.1, 0.1, 0.1, 0.2],
                         [0.2, 0.2, 0.2, 0.2, 0.2]])[None, None]
    words = word_attention(maps, [None, 0, 0, 1, None])
    # from word 0 = mean of rows 1 and 2; to word 0 = sum of columns 1 and 2
    expected = torch.tensor([[(0.6 + 0.6) / 2, (0.2 + 0.4) / 2], [0.2, 0.1]])
    torch.testing.assert_close(words[0, 0], expected)
    assert attended_words(words).tolist() == [[[0, 0]]]
    with pytest.raises(InputError, match=r"word_ids: expected 5 entries \(one per token\), got 4"):
        word_attention(maps, [None, 0, 1, None])
    with pytest.raises(InputError, match=r"words \[1\] have no tokens"):
        word_attention(maps, [None, 0, 0, 2, None])


def test_accuracy_and_baseline_on_a_known_tree():
    gold = torch.tensor([1, 2, 2, 4, 2])  # each word -> its head (0-based; the root -> itself)
    nxt = torch.tensor([1, 2, 3, 4, 4])  # the next word (the last -> itself)
    scores = SyntaxScores()
    scores.add(TREE, torch.stack([gold, nxt])[None])  # (L=1, heads=2, W=5)
    assert scores.total == {"det": 2, "nsubj": 1, "obj": 1}
    assert scores.accuracy("det").tolist() == [[1.0, 1.0]] and scores.accuracy("obj").tolist() == [[1.0, 0.0]]
    assert scores.baseline("det") == (1, 1.0) and scores.baseline("obj") == (-2, 1.0)
    assert scores.baseline("nsubj", offset=-1) == (-1, 0.0)
    row = head_table(scores, scores, ["obj"])[0]
    assert (row["layer-head"], row["dev"], row["offset"], row["n dev"]) == ("0-0", 1.0, -2, 1)
    with pytest.raises(InputError, match="relation: expected one seen in the data, got 'amod'"):
        scores.accuracy("amod")
    with pytest.raises(InputError, match=r"predicted: expected 5 words \(the sentence's\), got 4"):
        scores.add(TREE, torch.zeros(1, 2, 4, dtype=torch.long))


def test_relation_names():
    assert [relation_of(r) for r in ("nsubj:pass", "nmod:poss", "nmod", "obj")] == ["nsubj", "poss", "nmod", "obj"]


def test_minilm_on_a_conllu_snippet(minilm_dir, tmp_path):
    from bertmini import BertModel
    from bertmini.tokenizer import WordPieceTokenizer

    rows = [f"{i + 1}\t{w}\t_\t_\t_\t_\t{h}\t{r}\t_\t_" for i, (w, h, r) in
            enumerate(zip(TREE.words, TREE.heads, TREE.deprels))]
    path = tmp_path / "s.conllu"
    path.write_text("\n".join(rows) + "\n\n" + "\n".join(rows).replace("cat", "catastrophically") + "\n\n")
    trees = read_conllu(path)
    model, tok = BertModel.from_pretrained(minilm_dir), WordPieceTokenizer.from_file(minilm_dir)
    scores = score_heads(model, tok, trees)
    assert (scores.sentences, scores.skipped, scores.total["det"]) == (2, 0, 4)
    assert scores.accuracy("det").shape == (6, 12) and float(scores.accuracy("det").max()) == 1.0
    assert score_heads(model, tok, trees, max_length=7).skipped == 1  # 7 tokens fit; "catastrophically" is 2+
