"""Train a captioner and score its best checkpoint: python train.py [group=option] [key=value] ...

Examples: python train.py; python train.py decoder=lstm trainer.max_epochs=3; python train.py --help
"""

from pathlib import Path

from captionlab.cli import command_entry

# the same as `captionlab train ...`, with outputs/ and .cache/ in the repository
main = command_entry("train", root=Path(__file__).resolve().parent)

if __name__ == "__main__":
    main()
