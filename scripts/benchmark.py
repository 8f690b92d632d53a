"""Speed benchmarks; each prints one JSON line per measurement.

    python scripts/benchmark.py search [--device cpu|cuda] [--images 500] [--naive-images 100]
    python scripts/benchmark.py feature_cache data.root=<flickr8k> encoder.checkpoint=<weights> [overrides]
    python scripts/benchmark.py knn <model=knn run>/checkpoints/best.ckpt [--split test]
    python scripts/benchmark.py sampling <run>/checkpoints/best.ckpt [--split val] [--images 300] [--samples 50]
        [--repeats 1]
    python scripts/benchmark.py beam <run>/checkpoints/best.ckpt [--split val] [--images 1000] [--num-beams 3]
        [--num-return-sequences 1] [--length-penalty 0] [--no-repeat-ngram-size 3]
        [--early-stopping never|false|true] [--repeats 3]
    python scripts/benchmark.py startup [--repeats 5] [--command captionlab]
    python scripts/benchmark.py feature_stores [--images 1000] [--dim 2048]
    python scripts/benchmark.py train_step [--precision 32-true bf16-mixed] [--steps 5]

search: captions per second of batched greedy and beam 3/5 search for the three Flickr8k decoders
(the `experiment=flickr8k_*` sizes: 7x7x1280 EfficientNet-Lite0 grid, a Flickr8k-sized vocabulary),
next to a naive reference that runs beam search one image at a time with Python bookkeeping, as
the popular Show-Attend-Tell tutorial does, and the transformer's cached decoding next to
recomputing the whole prefix at every step. The decoders have random weights and every caption
is exactly `--length` words (`<eos>` is banned before), so every method does the same work.

feature_cache: one training epoch with the cache off, on (extracting), on again (a hit).

startup: wall time of `captionlab train --help` (the installed command; with the plugins
installed in this environment), best and median of --repeats runs.

feature_stores: encoder=precomputed's read throughput per format (npy folder, HDF5, LMDB) for a
synthetic bottom-up-sized store: 10-100 regions of 2048-d (float16) per image, every image read
once in a shuffled order, as a training epoch reads them.

train_step: seconds per teacher-forced training step (forward, backward, Adam) of each Flickr8k
decoder at the experiments' batch (32 images x 5 captions, 20 words, 7x7x1280 grid), in full
precision and under bf16 autocast (what `trainer.precision=bf16-mixed` does), and the epoch of
6,000 images that makes. On CPUs with AVX512-BF16 or AMX, bf16 is the cheaper way to train.
`--min-length 4 --length 25` draws each caption's length between the two and pads the rest, as a
Flickr8k batch is (mean 11 words, longest about 25): the recurrent decoders skip the padding.

sampling: captions per second of seeded sampling (`--samples` per image, as rerank=mbr draws its
evidence and SCST its samples) on a trained checkpoint's cached features, with the decoder stepping
every row to the longest caption, and stepping only captions that have not ended (greedy and
sampling drop them once they are half of the rows: `GreedySearch.drop_finished_share`). Both must
give the same captions; the line says so.

beam: the same for beam search (default: beam 3, length penalty 0, no-repeat 3, the soft-attention
row's search), whose images leave the decoder's rows once their search is done and they are half
of the images it steps (`BeamSearch.drop_finished_share`).

knn: the time to index the training split from the cached features and to caption a split
(nearest images by one matrix product per batch, then the consensus among their captions).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from captionlab.cli import CONF_DIR  # noqa: E402
from captionlab.features import use_cached_features  # noqa: E402
from captionlab.models.decoders.base import CaptionDecoder  # noqa: E402
from captionlab.pipelines.common import cpu_has_native_bf16  # noqa: E402
from captionlab.registry import build  # noqa: E402
from captionlab.search import BeamSearch, GreedySearch, SampleSearch  # noqa: E402
from captionlab.text import BOS_ID, EOS_ID, PAD_ID, UNK_ID  # noqa: E402
from captionlab.types import EncoderOutput  # noqa: E402

EXPERIMENTS = {
    "lstm": "flickr8k_show_tell",
    "attention": "flickr8k_show_attend_tell",
    "updown": "flickr8k_updown",
    "transformer": "flickr8k_transformer",
}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _decoder(name: str, vocab_size: int, feature_dim: int, device: torch.device) -> CaptionDecoder:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={EXPERIMENTS[name]}"])
    decoder = build(
        cfg.decoder, "decoder", vocab_size=vocab_size, feature_dim=feature_dim, embeddings_file=None
    )
    return decoder.to(device).eval()


def naive_beam_search(decoder: CaptionDecoder, memory: EncoderOutput, beams: int, length: int) -> list[int]:
    """Reference: one image, k beams, finished captions collected in Python lists and k shrinking
    as beams finish (the tutorial's loop; here every caption is `length` words, so all finish then)."""
    k, device = beams, memory.grid.device
    state = decoder.reorder_state(decoder.init_state(memory), torch.zeros(k, dtype=torch.long, device=device))
    words = torch.full((k,), BOS_ID, dtype=torch.long, device=device)
    sequences = torch.empty(k, 0, dtype=torch.long, device=device)
    top_scores = torch.zeros(k, 1, device=device)
    complete, complete_scores = [], []
    for step in range(length):
        logprobs, state, _ = decoder.step(words, state)
        logprobs[:, [PAD_ID, BOS_ID, UNK_ID, EOS_ID]] = float("-inf")
        scores = top_scores.expand_as(logprobs) + logprobs
        flat = scores[0] if step == 0 else scores.view(-1)
        top_scores_flat, top_words = flat.topk(k)
        previous, following = top_words // logprobs.shape[1], top_words % logprobs.shape[1]
        sequences = torch.cat([sequences[previous], following.unsqueeze(1)], dim=1)
        ended = [i for i, word in enumerate(following.tolist()) if word == EOS_ID or step == length - 1]
        open_beams = [i for i in range(len(following)) if i not in ended]
        complete += sequences[ended].tolist()
        complete_scores += top_scores_flat[ended].tolist()
        k -= len(ended)
        if k == 0:
            break
        keep = torch.tensor(open_beams, device=device)
        sequences, top_scores = sequences[keep], top_scores_flat[keep].unsqueeze(1)
        state = decoder.reorder_state(state, previous[keep])
        words = following[keep]
    return complete[max(range(len(complete)), key=complete_scores.__getitem__)]


class RecomputingTransformer(CaptionDecoder):
    """The transformer without its key/value cache: every step runs the whole forward pass again
    (the prefix and the projection of the grid)."""

    def __init__(self, decoder: CaptionDecoder):
        super().__init__()
        self.decoder = decoder

    def init_state(self, memory: EncoderOutput) -> dict[str, torch.Tensor]:
        return {
            "pooled": memory.pooled,
            "grid": memory.grid,
            "tokens": torch.empty(memory.grid.shape[0], 0, dtype=torch.long, device=memory.grid.device),
        }

    def step(self, tokens: torch.Tensor, state: dict[str, torch.Tensor]):
        prefix = torch.cat([state["tokens"], tokens.unsqueeze(1)], dim=1)
        logits = self.decoder(EncoderOutput(state["pooled"], state["grid"]), prefix)[:, -1]
        return torch.log_softmax(logits, dim=-1), {**state, "tokens": prefix}, None


def _time(run: Callable[[], object], device: torch.device) -> float:
    _synchronize(device)
    started = time.perf_counter()
    run()
    _synchronize(device)
    return time.perf_counter() - started


def _batched(decoder, memory: EncoderOutput, search, batch_size: int) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            for start in range(0, memory.grid.shape[0], batch_size):
                end = start + batch_size
                search(decoder, EncoderOutput(memory.pooled[start:end], memory.grid[start:end]))

    return run


def benchmark_search(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    memory = EncoderOutput(
        torch.randn(args.images, args.feature_dim, device=device),
        torch.randn(args.images, args.grid, args.feature_dim, device=device),
    )
    fixed = dict(max_new_tokens=args.length, min_new_tokens=args.length)
    common = {"device": str(device), "threads": torch.get_num_threads(), "words": args.length}
    for name in args.decoders:
        decoder = _decoder(name, args.vocab_size, args.feature_dim, device)
        rates = {}
        methods = {
            "greedy": GreedySearch(**fixed),
            "beam3": BeamSearch(num_beams=3, **fixed),
            "beam5": BeamSearch(num_beams=5, **fixed),
        }
        _batched(
            decoder, EncoderOutput(memory.pooled[:8], memory.grid[:8]), methods["beam5"], args.batch_size
        )()  # warm-up
        for method, search in methods.items():
            seconds = _time(_batched(decoder, memory, search, args.batch_size), device)
            rates[method] = args.images / seconds
            print(
                json.dumps(
                    {
                        "section": "search",
                        "decoder": name,
                        "method": f"batched_{method}",
                        "images": args.images,
                        "batch_size": args.batch_size,
                        "seconds": round(seconds, 2),
                        "captions_per_s": round(rates[method], 1),
                        **common,
                    }
                ),
                flush=True,
            )

        def naive() -> None:
            with torch.inference_mode():
                for i in range(args.naive_images):
                    naive_beam_search(
                        decoder,
                        EncoderOutput(memory.pooled[i : i + 1], memory.grid[i : i + 1]),
                        5,
                        args.length,
                    )

        seconds = _time(naive, device)
        naive_rate = args.naive_images / seconds
        print(
            json.dumps(
                {
                    "section": "search",
                    "decoder": name,
                    "method": "naive_per_image_beam5",
                    "images": args.naive_images,
                    "seconds": round(seconds, 2),
                    "captions_per_s": round(naive_rate, 1),
                    **common,
                }
            ),
            flush=True,
        )
        print(
            json.dumps(
                {
                    "section": "search",
                    "decoder": name,
                    "ratio": "batched_beam5 / naive_per_image_beam5",
                    "value": round(rates["beam5"] / naive_rate, 1),
                    **common,
                }
            ),
            flush=True,
        )
        if name == "transformer":
            recompute = _time(
                _batched(RecomputingTransformer(decoder), memory, methods["greedy"], args.batch_size), device
            )
            print(
                json.dumps(
                    {
                        "section": "search",
                        "decoder": name,
                        "method": "batched_greedy_recompute_prefix",
                        "images": args.images,
                        "seconds": round(recompute, 2),
                        "captions_per_s": round(args.images / recompute, 1),
                        **common,
                    }
                ),
                flush=True,
            )
            print(
                json.dumps(
                    {
                        "section": "search",
                        "decoder": name,
                        "ratio": "cached / recomputed prefix (greedy)",
                        "value": round(rates["greedy"] * recompute / args.images, 1),
                        **common,
                    }
                ),
                flush=True,
            )


def benchmark_feature_cache(overrides: list[str]) -> None:
    base = [
        "data=flickr8k",
        "encoder=efficientnet_lite0",
        "trainer.max_epochs=1",
        "test=false",
        "trainer.enable_progress_bar=false",
    ]
    folder = Path(tempfile.mkdtemp(prefix="feature_cache_benchmark_"))
    for name, extra in (("no_cache", ["data.cache_features=false"]), ("cache_first", []), ("cache_hit", [])):
        run_dir = folder / name
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *base, *overrides, *extra, f"hydra.run.dir={run_dir}"],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - started
        epoch = json.loads((run_dir / "history.jsonl").read_text().splitlines()[0])
        log = (run_dir / "train.log").read_text()
        cache = "hit" if "feature cache hit" in log else "miss" if "feature cache miss" in log else "off"
        print(
            json.dumps(
                {
                    "section": "feature_cache",
                    "run": name,
                    "wall_s": round(wall, 1),
                    "cache": cache,
                    "epoch_train_s": epoch["time/train_s"],
                    "epoch_val_s": epoch["time/val_s"],
                    "val/bleu4": round(epoch["val/bleu4"], 4),
                    "val/cider": round(epoch["val/cider"], 4),
                }
            ),
            flush=True,
        )


def _system_and_data(checkpoint: str, cache_required: bool = True):
    """The checkpoint's system and its data, reading the feature cache where the encoder allows
    one (`cache_required`: or stop with a message)."""
    from captionlab.systems.loading import load_system

    module = load_system(checkpoint)
    datamodule = build(
        module.hparams["config"]["data"], "data", vocab=module.vocab, preprocessing=module.preprocessing
    )
    datamodule.prepare()
    if not use_cached_features(datamodule, module.captioner.encoder, "cpu") and cache_required:
        raise SystemExit(
            "this benchmark needs cached features (a frozen encoder with data.cache_features=auto)"
        )
    return module, datamodule


def benchmark_knn(checkpoint: str, split: str) -> None:
    module, datamodule = _system_and_data(checkpoint)
    knn = module.captioner
    records = datamodule.split("train")
    started = time.perf_counter()
    knn.start_index([str(r.image_id) for r in records], [list(r.captions) for r in records])
    for batch in datamodule.eval_dataloader("train"):
        knn.add(batch["index"], batch)
    knn.finish_index()
    index_s = time.perf_counter() - started
    loader = list(datamodule.eval_dataloader(split))
    started = time.perf_counter()
    for batch in loader:
        knn.nearest(batch)
    nearest_s = time.perf_counter() - started
    started = time.perf_counter()
    for batch in loader:
        knn.generate(batch, module.search)
    caption_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "section": "knn",
                "train_images": len(records),
                "split": split,
                "split_images": len(datamodule.split(split)),
                "k": knn.k,
                "consensus": knn.consensus_metric,
                "index_s": round(index_s, 2),
                "nearest_s": round(nearest_s, 2),
                "caption_s": round(caption_s, 2),
                "threads": torch.get_num_threads(),
            }
        ),
        flush=True,
    )


def _encoded_images(module, datamodule, split: str, images: int) -> list[EncoderOutput]:
    """The encoder outputs of the first `images` images of a split, batch by batch."""
    memories, count, captioner = [], 0, module.captioner.eval()
    for batch in datamodule.eval_dataloader(split):
        taken = torch.arange(min(len(batch["index"]), images - count))
        with torch.inference_mode():
            memories.append(captioner.encode(batch).index_select(taken))
        count += memories[-1].pooled.shape[0]
        if count >= images:
            break
    return memories


def benchmark_dropping_finished(
    section: str,
    checkpoint: str,
    split: str,
    images: int,
    make_search: Callable[[int], object],
    settings: dict,
    repeats: int = 1,
) -> None:
    """One search on a checkpoint's cached features, the decoder stepping every row to the end
    and stepping only rows not finished (`drop_finished_share`): the rate of each, same captions.
    `make_search(max_new_tokens)` builds the search with the checkpoint's length limit. The images
    are encoded before the clock starts (from the feature cache where there is one); `repeats`
    alternating runs of the two, the fastest of each counts."""
    module, datamodule = _system_and_data(checkpoint, cache_required=False)
    memories = _encoded_images(module, datamodule, split, images)
    count = sum(memory.pooled.shape[0] for memory in memories)
    decoder = module.captioner.decoder.eval()
    searches = {
        method: make_search(module.search.max_new_tokens) for method in ("every_row", "drop_finished")
    }
    searches["every_row"].drop_finished_share = None
    outputs, best_seconds = {}, {method: float("inf") for method in searches}
    for _ in range(repeats):  # alternating, the fastest of each: other load slows both alike
        for method, search in searches.items():
            with torch.inference_mode():
                started = time.perf_counter()
                outputs[method] = [search(decoder, memory).sequences for memory in memories]
                best_seconds[method] = min(best_seconds[method], time.perf_counter() - started)
    rates = {}
    for method, search in searches.items():
        seconds = best_seconds[method]
        rates[method] = count * search.num_return_sequences / seconds
        tokens = torch.cat([(o != PAD_ID).sum(-1).flatten() for o in outputs[method]]).float()
        print(
            json.dumps(
                {
                    "section": section,
                    "checkpoint": checkpoint,
                    "split": split,
                    "images": count,
                    **settings,
                    "method": method,
                    "drop_finished_share": search.drop_finished_share,
                    "seconds": round(seconds, 2),
                    "repeats": repeats,
                    "captions_per_s": round(rates[method], 1),
                    "mean_tokens_with_eos": round(tokens.mean().item(), 2),
                    "max_new_tokens": search.max_new_tokens,
                    "threads": torch.get_num_threads(),
                }
            ),
            flush=True,
        )
    same = all(torch.equal(a, b) for a, b in zip(outputs["every_row"], outputs["drop_finished"]))
    print(
        json.dumps(
            {
                "section": section,
                "ratio": "drop_finished / every_row",
                "value": round(rates["drop_finished"] / rates["every_row"], 2),
                "same_captions": same,
            }
        ),
        flush=True,
    )


def benchmark_startup(command: str, repeats: int) -> None:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([command, "train", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    times.sort()
    print(
        json.dumps(
            {
                "benchmark": "startup",
                "command": f"{command} train --help",
                "best_s": round(times[0], 3),
                "median_s": round(times[len(times) // 2], 3),
                "repeats": repeats,
            }
        ),
        flush=True,
    )


def benchmark_feature_stores(images: int, regions: tuple[int, int], dim: int, folder: str | None) -> None:
    """Read every image of a synthetic region store once (the way a training epoch does, in a
    shuffled order, through RegionFeatures), per format: images and regions per second."""
    import numpy as np

    from captionlab.features.precomputed import RegionFeatures
    from captionlab.features.stores import FORMATS, FeatureWriter, open_store
    from captionlab.types import CaptionRecord

    rng = np.random.default_rng(0)
    counts = rng.integers(regions[0], regions[1] + 1, size=images)
    records = [CaptionRecord(Path(f"{i}.jpg"), f"{i}.jpg", "train", ("x",)) for i in range(images)]
    order = rng.permutation(images)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for fmt in FORMATS:
            path = Path(tmp) / {"npy": "npy", "hdf5": "features.h5", "lmdb": "lmdb"}[fmt]
            writer = FeatureWriter(path, fmt)
            for start in range(0, images, 100):
                writer.write(
                    {
                        str(i): {"features": rng.standard_normal((int(counts[i]), dim)).astype(np.float16)}
                        for i in range(start, min(start + 100, images))
                    }
                )
            writer.close()
            rows = RegionFeatures(open_store(path), records, dim, False)
            started = time.perf_counter()
            total = sum(rows[int(i)]["grid"].shape[0] for i in order)
            seconds = time.perf_counter() - started
            print(
                json.dumps(
                    {
                        "benchmark": "feature_stores",
                        "format": fmt,
                        "images": images,
                        "regions": int(total),
                        "dim": dim,
                        "dtype": "float16",
                        "seconds": round(seconds, 3),
                        "images_per_s": round(images / seconds, 1),
                        "regions_per_s": round(total / seconds),
                    }
                ),
                flush=True,
            )


def benchmark_train_step(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    captions = args.images * args.captions_per_image
    grid = torch.randn(args.images, args.grid, args.feature_dim)
    memory = EncoderOutput(grid.mean(dim=1), grid)
    rows = torch.arange(args.images).repeat_interleave(args.captions_per_image)  # each caption's image
    tokens = torch.randint(UNK_ID + 1, args.vocab_size, (captions, args.length + 2))
    tokens[:, 0] = BOS_ID
    lengths = torch.randint(args.min_length or args.length, args.length + 1, (captions,)) + 2
    tokens[torch.arange(args.length + 2) >= lengths.unsqueeze(1)] = PAD_ID
    for name in args.decoders:
        decoder = _decoder(name, args.vocab_size, args.feature_dim, torch.device("cpu")).train()
        optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-4)

        def step(bf16: bool) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits, extra = decoder.teacher_forcing(memory, tokens[:, :-1], rows)
                loss = torch.nn.functional.cross_entropy(
                    logits.float().reshape(-1, args.vocab_size),
                    tokens[:, 1:].reshape(-1),
                    ignore_index=PAD_ID,
                )
            if extra is not None:
                loss = loss + extra.float()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        for precision in args.precision:
            bf16 = precision.startswith("bf16")
            step(bf16)  # warm-up
            seconds = _time(lambda: [step(bf16) for _ in range(args.steps)], torch.device("cpu")) / args.steps
            print(
                json.dumps(
                    {
                        "benchmark": "train_step",
                        "decoder": name,
                        "precision": precision,
                        "threads": torch.get_num_threads(),
                        "cpu": torch.backends.cpu.get_cpu_capability(),
                        "cpu_native_bf16": cpu_has_native_bf16(),
                        "images_per_step": args.images,
                        "captions_per_step": captions,
                        "mean_caption_tokens": round(lengths.float().mean().item(), 2),
                        "padded_caption_tokens": args.length + 2,
                        "seconds_per_step": round(seconds, 4),
                        "epoch_minutes_6000_images": round(seconds * 6000 / args.images / 60, 2),
                    }
                ),
                flush=True,
            )


def _decoding_section(sections, name: str, help_text: str, images: int, repeats: int):
    """A section that decodes a checkpoint's images with and without dropping finished rows."""
    section = sections.add_parser(name, help=help_text)
    section.add_argument("checkpoint")
    section.add_argument("--split", default="val")
    section.add_argument("--images", type=int, default=images)
    section.add_argument("--repeats", type=int, default=repeats, help="alternating runs; the fastest counts")
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sections = parser.add_subparsers(dest="section", required=True)
    search = sections.add_parser(
        "search", help="batched search vs a per-image loop; cached vs recomputed transformer"
    )
    search.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    search.add_argument("--images", type=int, default=500)
    search.add_argument(
        "--naive-images", type=int, default=100, help="images for the (slow) per-image reference"
    )
    search.add_argument("--batch-size", type=int, default=100)
    search.add_argument("--length", type=int, default=20, help="words per caption")
    search.add_argument("--decoders", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    search.add_argument("--vocab-size", type=int, default=2600)
    search.add_argument("--feature-dim", type=int, default=1280)
    search.add_argument("--grid", type=int, default=49)
    cache = sections.add_parser(
        "feature_cache", help="one epoch with the feature cache off / extracting / hit"
    )
    cache.add_argument("overrides", nargs="*")
    knn = sections.add_parser(
        "knn", help="model=knn: time to index the training split and to caption a split"
    )
    knn.add_argument("checkpoint")
    knn.add_argument("--split", default="test")
    sampling = _decoding_section(
        sections,
        "sampling",
        "seeded sampling on a checkpoint's features, ended captions dropped or not",
        300,
        1,
    )
    sampling.add_argument("--samples", type=int, default=50)
    beam = _decoding_section(
        sections, "beam", "beam search on a checkpoint's features, done images dropped or not", 1000, 3
    )
    beam.add_argument("--num-beams", type=int, default=3)
    beam.add_argument("--num-return-sequences", type=int, default=1)
    beam.add_argument("--length-penalty", type=float, default=0.0)
    beam.add_argument("--no-repeat-ngram-size", type=int, default=3)
    beam.add_argument("--early-stopping", default="never", choices=["never", "false", "true"])
    startup = sections.add_parser("startup", help="wall time of `captionlab train --help`")
    startup.add_argument("--repeats", type=int, default=5)
    startup.add_argument("--command", default=str(Path(sys.executable).with_name("captionlab")))
    stores = sections.add_parser(
        "feature_stores", help="encoder=precomputed: read throughput of the npy, hdf5 and lmdb formats"
    )
    stores.add_argument("--images", type=int, default=1000)
    stores.add_argument("--min-regions", type=int, default=10)
    stores.add_argument("--max-regions", type=int, default=100)
    stores.add_argument("--dim", type=int, default=2048)
    stores.add_argument("--folder", default=None, help="where to write the temporary stores")
    train = sections.add_parser(
        "train_step", help="seconds per training step of each decoder, full precision vs bf16 autocast"
    )
    train.add_argument("--decoders", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    train.add_argument(
        "--precision", nargs="+", default=["32-true", "bf16-mixed"], choices=["32-true", "bf16-mixed"]
    )
    train.add_argument("--steps", type=int, default=5)
    train.add_argument("--images", type=int, default=32)
    train.add_argument("--captions-per-image", type=int, default=5)
    train.add_argument(
        "--length", type=int, default=20, help="words per caption (the longest, with --min-length)"
    )
    train.add_argument(
        "--min-length", type=int, default=None, help="draw each caption's words in [this, --length]"
    )
    train.add_argument("--vocab-size", type=int, default=2600)
    train.add_argument("--feature-dim", type=int, default=1280)
    train.add_argument("--grid", type=int, default=49)
    args = parser.parse_args()
    if args.section == "train_step":
        benchmark_train_step(args)
    elif args.section == "feature_stores":
        benchmark_feature_stores(args.images, (args.min_regions, args.max_regions), args.dim, args.folder)
    elif args.section == "search":
        benchmark_search(args)
    elif args.section == "startup":
        benchmark_startup(args.command, args.repeats)
    elif args.section == "sampling":
        benchmark_dropping_finished(
            "sampling",
            args.checkpoint,
            args.split,
            args.images,
            lambda limit: SampleSearch(num_return_sequences=args.samples, seed=0, max_new_tokens=limit),
            {"samples_per_image": args.samples},
            args.repeats,
        )
    elif args.section == "beam":
        settings = {
            "num_beams": args.num_beams,
            "num_return_sequences": args.num_return_sequences,
            "length_penalty": args.length_penalty,
            "no_repeat_ngram_size": args.no_repeat_ngram_size,
            "early_stopping": {"true": True, "false": False}.get(args.early_stopping, args.early_stopping),
        }
        benchmark_dropping_finished(
            "beam",
            args.checkpoint,
            args.split,
            args.images,
            lambda limit: BeamSearch(**settings, max_new_tokens=limit),
            settings,
            args.repeats,
        )
    elif args.section == "knn":
        benchmark_knn(args.checkpoint, args.split)
    else:
        benchmark_feature_cache(args.overrides)


if __name__ == "__main__":
    main()
