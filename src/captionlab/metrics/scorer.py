"""Caption metrics with pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr on its 0-1 scale.

References are raw strings; both sides go through the same tokenizer. One scorer per process:
METEOR's Java process starts once (~8 s) and is reused.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from captionlab.errors import UserError
from captionlab.metrics.tokenizer import JAVA_HELP, java_available, tokenize_for_scoring

METRIC_NAMES = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider", "spice")


def spice_missing() -> str | None:
    """Why SPICE cannot run here (None: it can). It needs Java and Stanford CoreNLP 3.6.0, which
    pycocoevalcap would download (~400 MB) on first use: never attempted behind the caller's back."""
    if not java_available():
        return f"SPICE needs Java: {JAVA_HELP}"
    from pycocoevalcap.spice import get_stanford_models as models

    lib = Path(models.SPICEDIR) / models.SPICELIB
    if not (lib / f"{models.JAR}.jar").is_file():
        return (
            f"SPICE needs Stanford CoreNLP 3.6.0 ({models.JAR}.jar and {models.JAR}-models.jar in {lib}); "
            "fetch them once online with: python -c 'from pycocoevalcap.spice.get_stanford_models import "
            "get_stanford_models as g; g()'"
        )
    return None


class CaptionScorer:
    def __init__(self) -> None:
        self._meteor = None

    def _meteor_scorer(self):
        if self._meteor is None:
            from pycocoevalcap.meteor.meteor import Meteor

            self._meteor = Meteor()
        return self._meteor

    def score(
        self,
        predictions: Mapping[Hashable, str],
        references: Mapping[Hashable, Sequence[str]],
        meteor: bool = True,
        per_image: bool = False,
        spice: bool = False,
    ) -> dict[str, Any]:
        """Corpus scores over every image of `references`; each must have a prediction.

        With `per_image`, also returns {"per_image": {image_id: {"bleu4": .., "cider": ..}}}.
        """
        missing = [i for i in references if i not in predictions]
        if missing:
            raise UserError(
                f"{len(missing)} of {len(references)} images have no prediction "
                f"(e.g. {missing[0]!r}): score a whole split"
            )
        ids = list(references)
        gts, res = self._tokenize(ids, predictions, references)
        bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)
        rouge, _ = Rouge().compute_score(gts, res)
        cider, cider_per_image = Cider().compute_score(gts, res)
        scores: dict[str, Any] = {f"bleu{n + 1}": float(bleu[n]) for n in range(4)}
        scores.update(rouge_l=float(rouge), cider=float(cider))
        if meteor:
            if java_available():
                scores["meteor"] = float(self._meteor_scorer().compute_score(gts, res)[0])
            else:
                warnings.warn(f"METEOR skipped: Java not found; {JAVA_HELP}", stacklevel=2)
        if spice:
            reason = spice_missing()
            if reason is None:
                from pycocoevalcap.spice.spice import Spice

                scores["spice"] = float(Spice().compute_score(gts, res)[0])
            else:
                warnings.warn(f"SPICE skipped: {reason}", stacklevel=2)
        scores["num_images"] = len(ids)
        if per_image:
            scores["per_image"] = {
                image_id: {"bleu4": float(bleu_per_image[3][k]), "cider": float(cider_per_image[k])}
                for k, image_id in enumerate(ids)
            }
        return scores

    @staticmethod
    def _tokenize(ids, predictions, references):
        flat = [predictions[i] for i in ids] + [c for i in ids for c in references[i]]
        tokens = iter(tokenize_for_scoring(flat))
        res = {k: [next(tokens)] for k in range(len(ids))}
        gts = {k: [next(tokens) for _ in references[i]] for k, i in enumerate(ids)}
        return gts, res


_SCORER: CaptionScorer | None = None


def get_scorer() -> CaptionScorer:
    """The process's one scorer."""
    global _SCORER
    if _SCORER is None:
        _SCORER = CaptionScorer()
    return _SCORER
