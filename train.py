"""Train a captioner and score its best checkpoint: python train.py [group=option] [key=value] ...

Examples: python train.py; python train.py decoder=lstm trainer.max_epochs=3; python train.py --help
"""

from pathlib import Path

from captionlab.cli import hydra_entry

main = hydra_entry(
    Path(__file__).resolve().parent / "conf",
    "train",
    "captionlab.pipelines.train:run_training",
    preflight="captionlab.pipelines.train:check_resume",
)

if __name__ == "__main__":
    main()
