from captionlab.models.decoders import CaptionDecoder, LSTMDecoder
from captionlab.models.encoders import TimmEncoder

__all__ = ["CaptionDecoder", "LSTMDecoder", "TimmEncoder"]
