from captionlab.data.coco import CocoSource
from captionlab.data.datamodule import CaptionDataModule
from captionlab.data.flickr8k import Flickr8kSource
from captionlab.data.folder import FolderSource
from captionlab.data.karpathy import KarpathySource
from captionlab.data.records import CaptionRecord
from captionlab.data.shapes import ShapesSource
from captionlab.data.vocab import Vocabulary

__all__ = ["CaptionDataModule", "CaptionRecord", "CocoSource", "Flickr8kSource", "FolderSource",
           "KarpathySource", "ShapesSource", "Vocabulary"]
