"""Caption metrics: BLEU-1..4 and CIDEr-D equal to the COCO caption evaluation's (pycocoevalcap) on references as
people write them (capitals, punctuation), and METEOR."""

from __future__ import annotations

import re

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


def ptb_like(text: str) -> str:
    """What the COCO evaluation's PTBTokenizer (Java) leaves of a plain sentence: lower case, punctuation split off
    as tokens and then dropped (its PUNCTUATIONS list; brackets become -LRB- ... and are dropped too)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    brackets = {"(": "-LRB-", ")": "-RRB-", "{": "-LCB-", "}": "-RCB-", '"': "''"}
    tokens = re.sub(r'([.,!?;:(){}"]|\.\.\.)', r" \1 ", text.lower()).split()
    return " ".join(t for t in (brackets.get(t, t) for t in tokens) if t not in PUNCTUATIONS)


# references as the Karpathy and COCO files hold them, and hypotheses, some with capitals and punctuation too
CORPORA = {
    "flickr8k": (["a dog runs on the grass", "two men ride bikes down a street", "a child plays in a park",
                  "a black dog jumps"],
                 [["A dog runs on the green grass .", "A brown dog is running!", "The dog runs across a lawn ."],
                  ["Two men riding bicycles down a street.", "Men, on bikes, ride down the road .",
                   "Two cyclists (men) on a city street"],
                  ["A small child plays in the park .", "A kid is playing", "Child playing outside ; happy ."],
                  ["A black dog jumps over a log .", "\"A dog\" jumping ..."]]),
    "coco": (["A man riding a wave on a surfboard.", "a plate of food with broccoli", "a cat sitting on a couch"],
             [["A man riding a wave on top of a surfboard.", "A surfer rides a large wave in the ocean.",
               "A person on a surfboard riding a wave", "Man surfing: a big wave!", "A MAN ON A SURFBOARD"],
              ["A plate of food with broccoli and meat.", "Broccoli, rice and chicken on a white plate."],
              ["A cat is sitting on the couch.", "An orange cat sits on a sofa .", "a cat on a couch?"]]),
    "no 3- or 4-gram matches": (["a red circle at the top", "a big blue square"],
                                [["A red circle .", "Red circle, top left!"], ["A blue square.", "Big square ."]]),
    "captions shorter than 3 words": (["red circle", "a square"],
                                      [["A red circle .", "Red circle!"], ["A blue square."]]),
    "nothing matches": (["green", ""], [["A red circle ."], ["A blue square."]]),
}


@pytest.mark.parametrize("corpus", CORPORA)
def test_bleu_and_cider_on_raw_references_equal_the_coco_evaluation_on_tokenised_ones(corpus):
    """Equal to relative 1e-9 (float sums in another order), also where an n-gram order has no match or no caption is
    long enough for it (the COCO code's 1e-15 and 1e-9 constants decide those)."""
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    hypotheses, references = CORPORA[corpus]
    tokenised = {i: [ptb_like(r) for r in refs] for i, refs in enumerate(references)}
    results = {i: [ptb_like(h)] for i, h in enumerate(hypotheses)}
    coco_bleu, _ = Bleu(4).compute_score(tokenised, results, verbose=0)
    ours = metrics.bleu_scores(hypotheses, references)
    for n in range(1, 5):
        assert ours[n] == pytest.approx(100 * coco_bleu[n - 1], rel=1e-9, abs=1e-12), n
    coco_cider, _ = Cider().compute_score(tokenised, results)
    assert metrics.cider_d(hypotheses, references) == pytest.approx(coco_cider, rel=1e-9)


def test_references_count_as_their_normalised_words():
    assert metrics.normalise("A dog runs . ") == metrics.normalise("a dog runs") == "a dog runs"
    assert metrics.normalise("Two men, (on bikes)!") == "two men on bikes"
    # the documented differences from the PTBTokenizer: hyphens split words, "'s" stays on its word
    assert metrics.normalise("A dog's T-shirt.") == "a dog's t shirt"
    raw = [["A dog runs on the grass .", "A DOG RUNS!"]]
    assert metrics.bleu_scores(["a dog runs on the grass"], raw)[4] == pytest.approx(100)
    assert metrics.bleu_scores(["A dog runs on the grass."], raw) == metrics.bleu_scores(["a dog runs on the grass"],
                                                                                       raw)


def test_meteor_compares_normalised_text(monkeypatch):
    pytest.importorskip("pycocoevalcap")
    import pycocoevalcap.meteor.meteor as meteor_module

    seen = {}

    class Recorder:  # stands in for the Java scorer: what would it be given?
        def compute_score(self, references, hypotheses):
            seen.update(references=references, hypotheses=hypotheses)
            return 0.5, []

    monkeypatch.setattr(meteor_module, "Meteor", Recorder)
    assert metrics.meteor(["A Dog runs.", "?"], [["A dog runs .", "The dog, running!"], ["A cat."]]) == 50
    assert seen == {"references": {0: ["a dog runs", "the dog running"], 1: ["a cat"]},
                    "hypotheses": {0: ["a dog runs"], 1: ["<empty>"]}}
