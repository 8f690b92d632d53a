from captionlab.models.decoders.attention import AttentionLSTMDecoder
from captionlab.models.decoders.base import CaptionDecoder
from captionlab.models.decoders.ensemble import EnsembleDecoder
from captionlab.models.decoders.lstm import LSTMDecoder
from captionlab.models.decoders.transformer import TransformerDecoder
from captionlab.models.decoders.updown import UpDownDecoder
from captionlab.types import State

__all__ = [
    "AttentionLSTMDecoder",
    "CaptionDecoder",
    "EnsembleDecoder",
    "State",
    "LSTMDecoder",
    "TransformerDecoder",
    "UpDownDecoder",
]
