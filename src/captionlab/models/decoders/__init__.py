from captionlab.models.decoders.attention import AttentionLSTMDecoder
from captionlab.models.decoders.base import CaptionDecoder, State
from captionlab.models.decoders.lstm import LSTMDecoder
from captionlab.models.decoders.transformer import TransformerDecoder

__all__ = ["AttentionLSTMDecoder", "CaptionDecoder", "State", "LSTMDecoder", "TransformerDecoder"]
