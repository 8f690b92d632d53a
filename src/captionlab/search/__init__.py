from captionlab.search.base import SearchOutput, SearchStrategy
from captionlab.search.greedy import GreedySearch

__all__ = ["SearchOutput", "SearchStrategy", "GreedySearch"]
