"""Caption your images: python caption.py ckpt_path=<file> images=<file|folder|glob> [search=beam ...]

Prints one caption per image (the n best with scores when search.num_return_sequences > 1),
writes captions.json / captions.csv and, for attending decoders, an attention overlay PNG per
image into outputs/caption/runs/<time>/.
"""

from pathlib import Path

from captionlab.cli import command_entry

# the same as `captionlab caption ...`, with outputs/ and .cache/ in the repository
main = command_entry("caption", root=Path(__file__).resolve().parent)

if __name__ == "__main__":
    main()
