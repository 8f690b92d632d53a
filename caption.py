"""Caption your images: python caption.py ckpt_path=<file> images=<file|folder|glob> [search=beam ...]

Prints one caption per image (the n best with scores when search.num_return_sequences > 1),
writes captions.json / captions.csv and, for attending decoders, an attention overlay PNG per
image into outputs/caption/runs/<time>/.
"""

from pathlib import Path

from captionlab.cli import hydra_entry

main = hydra_entry(
    Path(__file__).resolve().parent / "conf", "caption", "captionlab.pipelines.caption:run_captioning"
)

if __name__ == "__main__":
    main()
