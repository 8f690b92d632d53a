from captionlab.data.datamodule import CaptionDataModule
from captionlab.data.records import CaptionRecord
from captionlab.data.shapes import ShapesSource
from captionlab.data.vocab import Vocabulary

__all__ = ["CaptionDataModule", "CaptionRecord", "ShapesSource", "Vocabulary"]
