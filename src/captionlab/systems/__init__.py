"""The LightningModules, one per `conf/model` option: `captioner` (neural, trained by its loss),
`knn` (nearest-neighbour caption retrieval) and `template` (slot classifiers + a template); and
the rerankers of their returned captions (`rerank=mbr`)."""

from captionlab.systems.base import BaseSystem
from captionlab.systems.captioner import CaptionerSystem
from captionlab.systems.knn import KnnSystem
from captionlab.systems.mbr import MinimumBayesRisk
from captionlab.systems.template import TemplateSystem

__all__ = ["BaseSystem", "CaptionerSystem", "KnnSystem", "MinimumBayesRisk", "TemplateSystem"]
