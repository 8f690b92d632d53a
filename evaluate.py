"""Score a checkpoint: python evaluate.py ckpt_path=<file> split=val|test [search=beam search.num_beams=5] [data=...]

The model, vocabulary, preprocessing and data come from the checkpoint; a group named on the
command line (search=..., data=...) replaces the checkpoint's. Results: outputs/eval/runs/<time>/.
"""

from pathlib import Path

from captionlab.cli import command_entry

# the same as `captionlab evaluate ...`, with outputs/ and .cache/ in the repository
main = command_entry("evaluate", root=Path(__file__).resolve().parent)

if __name__ == "__main__":
    main()
