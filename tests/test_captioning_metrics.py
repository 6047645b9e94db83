"""Caption metrics: BLEU-1..4, CIDEr-D and METEOR."""

from __future__ import annotations

import pytest

from apps.captioning import metrics


def test_bleu_uses_every_reference_and_cider_d_matches_the_coco_code():
    hypotheses = ["a red circle on the left", "a blue circle", "there is a small green triangle at the top"]
    references = [["a red circle on the left", "there is a red circle"], ["a blue square at the top"],
                  ["a small green triangle at the top", "there is a triangle", "a triangle"]]
    bleu = metrics.bleu_scores(hypotheses, references)
    assert bleu[1] > bleu[2] > bleu[3] > bleu[4] > 0
    assert metrics.bleu_scores(["a b c d", "e f g h"], [["x", "a b c d"], ["e f g h"]])[4] == pytest.approx(100)
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.cider.cider import Cider  # the COCO evaluation's CIDEr-D (clipped, length penalty)

    expected, _ = Cider().compute_score(dict(enumerate(references)), {i: [h] for i, h in enumerate(hypotheses)})
    assert metrics.cider_d(hypotheses, references) == pytest.approx(expected, rel=1e-9)


def test_meteor_says_why_it_is_skipped(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    assert "no java" in metrics.meteor_available()


@pytest.mark.skipif(metrics.meteor_available() is not None, reason="needs java and pycocoevalcap")
def test_meteor_scores_through_the_java_jar():
    perfect = metrics.meteor(["a red circle on the left"], [["a red circle on the left", "a circle"]])
    worse = metrics.meteor(["a blue square"], [["a red circle on the left", "a circle"]])
    assert perfect == pytest.approx(100, abs=1) and 0 <= worse < perfect
    assert metrics.meteor(["", "a circle"], [["a red circle"], ["a circle"]]) < perfect  # an empty caption scores

