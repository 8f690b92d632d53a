from captionlab.models.decoders.attention import AttentionLSTMDecoder
from captionlab.models.decoders.base import CaptionDecoder
from captionlab.models.decoders.lstm import LSTMDecoder
from captionlab.models.decoders.transformer import TransformerDecoder
from captionlab.types import State

__all__ = ["AttentionLSTMDecoder", "CaptionDecoder", "State", "LSTMDecoder", "TransformerDecoder"]
