"""Image features computed once and reused: the cache of a frozen encoder's features, and
precomputed feature files (`encoder=precomputed`) in the formats other captioning code writes."""

from captionlab.features.cache import use_cached_features
from captionlab.features.precomputed import PrecomputedEncoder

__all__ = ["PrecomputedEncoder", "use_cached_features"]
