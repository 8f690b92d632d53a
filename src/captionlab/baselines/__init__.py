"""Classical baselines on the same data, encoders and scoring path as the neural models:
nearest-neighbour caption retrieval (`model=knn`) and template captions (`model=template`)."""
from captionlab.baselines.knn import NearestNeighbourCaptioner, RetrievalModule
from captionlab.baselines.template import TemplateCaptioner, TemplateModule

__all__ = ["NearestNeighbourCaptioner", "RetrievalModule", "TemplateCaptioner", "TemplateModule"]
