"""Score a checkpoint: python evaluate.py ckpt_path=<file> split=val|test [search=beam search.num_beams=5] [data=...]

The model, vocabulary, preprocessing and data come from the checkpoint; a group named on the
command line (search=..., data=...) replaces the checkpoint's. Results: outputs/eval/runs/<time>/.
"""

from pathlib import Path

from captionlab.cli import hydra_entry

main = hydra_entry(
    Path(__file__).resolve().parent / "conf", "evaluate", "captionlab.pipelines.evaluate:run_evaluation"
)

if __name__ == "__main__":
    main()
