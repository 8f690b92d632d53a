"""Encoder features extracted once and reused (frozen encoders): the cache and its extraction."""

from captionlab.features.cache import use_cached_features

__all__ = ["use_cached_features"]
