from captionlab.models.decoders.base import CaptionDecoder, State
from captionlab.models.decoders.lstm import LSTMDecoder

__all__ = ["CaptionDecoder", "State", "LSTMDecoder"]
