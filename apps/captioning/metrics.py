"""Caption metrics against several references per image: BLEU-1..4 (corpus BLEU as the COCO caption evaluation
computes it), CIDEr-D (in Python, as in the COCO caption evaluation code) and METEOR (through
pycocoevalcap's Java jar, when Java and the package are installed).

Every metric compares ``normalise``d text: references as written ("A dog runs .") are lower-cased and stripped of
punctuation exactly as the captions the model writes, as the COCO evaluation's PTBTokenizer does with both."""

from __future__ import annotations

import math
import shutil
from collections import Counter

import sacrebleu

from apps.captioning.vocabulary import words

TINY, SMALL = 1e-15, 1e-9  # what the COCO evaluation's BLEU adds to matches and to totals


def normalise(text: str) -> str:
    """A caption as the metrics compare it: its lower-cased words without punctuation, one space apart."""
    return " ".join(words(text))


def _normalised(hypotheses: list[str], references: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    return [normalise(h) for h in hypotheses], [[normalise(r) for r in refs] for refs in references]


def bleu_scores(hypotheses: list[str], references: list[list[str]]) -> dict[int, float]:
    """Corpus BLEU-1..4 (0-100) with every reference of each image (images may have different numbers of them),
    exactly as the COCO evaluation's Bleu: clipped n-gram counts summed over the corpus (sacreBLEU counts them), the
    brevity penalty from the reference length closest to each caption's (the shorter on a tie), and its constants
    (1e-15 added to matches, 1e-9 to totals) instead of smoothing, so an order with no match gives nearly 0."""
    hypotheses, references = _normalised(hypotheses, references)
    most = max((len(r) for r in references), default=0)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]
    counts = sacrebleu.BLEU(tokenize="none").corpus_score(hypotheses, streams)
    ratio = (counts.sys_len + TINY) / (counts.ref_len + SMALL)
    brevity = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    scores, product = {}, 1.0
    for n in range(1, 5):
        product *= (counts.counts[n - 1] + TINY) / (counts.totals[n - 1] + SMALL)
        scores[n] = 100 * brevity * product ** (1 / n)
    return scores


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def cider_d(hypotheses: list[str], references: list[list[str]], sigma: float = 6.0, max_n: int = 4) -> float:
    """CIDEr-D (Vedantam et al. 2015, the COCO evaluation's variant): per image, the mean over references of the
    cosine similarity of TF-IDF weighted n-gram vectors (n = 1..4, IDF from the references of this set), with the
    hypothesis' counts clipped to the reference's and a Gaussian penalty on the length difference; times 10,
    averaged over images."""
    if not hypotheses:
        return 0.0
    hyp_grams = [[_ngrams(words(h), n) for n in range(1, max_n + 1)] for h in hypotheses]
    ref_grams = [[[_ngrams(words(r), n) for n in range(1, max_n + 1)] for r in refs] for refs in references]
    document_frequency: Counter = Counter()
    for refs in ref_grams:
        document_frequency.update({g for grams in refs for counts in grams for g in counts})
    log_images = math.log(float(len(references)))

    def vector(grams: list[Counter]) -> tuple[list[dict], list[float], int]:
        weights = [{g: c * (log_images - math.log(max(1.0, document_frequency[g]))) for g, c in counts.items()}
                   for counts in grams]
        norms = [math.sqrt(sum(v * v for v in w.values())) for w in weights]
        return weights, norms, sum(grams[0].values())

    total = 0.0
    for hyp, refs in zip(hyp_grams, ref_grams, strict=True):
        h_vec, h_norm, h_len = vector(hyp)
        score = 0.0
        for ref in refs:
            r_vec, r_norm, r_len = vector(ref)
            penalty = math.exp(-((h_len - r_len) ** 2) / (2 * sigma**2))
            for n in range(max_n):
                dot = sum(min(v, r_vec[n].get(g, 0.0)) * r_vec[n].get(g, 0.0) for g, v in h_vec[n].items())
                if h_norm[n] and r_norm[n]:
                    score += dot / (h_norm[n] * r_norm[n]) * penalty
        total += 10.0 * score / max_n / max(len(refs), 1)
    return total / len(hypotheses)


def meteor_available() -> str | None:
    """None when METEOR can be computed, else why not."""
    if shutil.which("java") is None:
        return "METEOR skipped: no java on PATH (it runs pycocoevalcap's Java jar)"
    try:
        import pycocoevalcap.meteor.meteor  # noqa: F401
    except ImportError:
        return "METEOR skipped: pycocoevalcap is not installed (pip install 'rnn-apps[meteor]')"
    return None


def meteor(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus METEOR 1.5 (0-100) through pycocoevalcap; check meteor_available() first."""
    from pycocoevalcap.meteor.meteor import Meteor

    hypotheses, references = _normalised(hypotheses, references)
    scorer = Meteor()  # its Java process ends when the scorer is collected
    # the jar's protocol breaks on an empty line: an empty caption becomes a word no reference has
    score, _ = scorer.compute_score({i: refs for i, refs in enumerate(references)},
                                    {i: [h if h.strip() else "<empty>"] for i, h in enumerate(hypotheses)})
    return 100.0 * float(score)
