from captionlab.search.base import SearchOutput, SearchStrategy
from captionlab.search.beam import BeamSearch
from captionlab.search.greedy import GreedySearch
from captionlab.search.sample import SampleSearch

__all__ = ["SearchOutput", "SearchStrategy", "GreedySearch", "BeamSearch", "SampleSearch"]
