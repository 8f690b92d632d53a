from captionlab.search.base import SearchStrategy
from captionlab.search.beam import BeamSearch
from captionlab.search.greedy import GreedySearch
from captionlab.search.sample import SampleSearch

__all__ = ["SearchStrategy", "GreedySearch", "BeamSearch", "SampleSearch"]
