"""An example captionlab plugin: importing it registers `decoder/gru` and `loss/focal`."""

from captionlab_toy.decoder import GRUDecoder
from captionlab_toy.loss import FocalLoss

__all__ = ["FocalLoss", "GRUDecoder"]
