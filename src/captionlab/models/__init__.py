from captionlab.models.decoders import CaptionDecoder, LSTMDecoder
from captionlab.models.encoders import EncoderOutput, TimmEncoder

__all__ = ["CaptionDecoder", "LSTMDecoder", "EncoderOutput", "TimmEncoder"]
