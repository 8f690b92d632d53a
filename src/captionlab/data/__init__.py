from captionlab.data.coco import CocoSource
from captionlab.data.datamodule import CaptionDataModule
from captionlab.data.flickr8k import Flickr8kSource
from captionlab.data.folder import FolderSource
from captionlab.data.karpathy import KarpathySource
from captionlab.data.shapes import ShapesSource

__all__ = [
    "CaptionDataModule",
    "CocoSource",
    "Flickr8kSource",
    "FolderSource",
    "KarpathySource",
    "ShapesSource",
]
