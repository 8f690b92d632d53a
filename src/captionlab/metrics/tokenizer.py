"""Caption tokenization for scoring: Stanford's PTB tokenizer (as the COCO evaluation server uses),
or a pure-Python equivalent where Java is missing.

pycocoevalcap's own wrapper writes its temporary file inside the installed package (which breaks on
read-only installs and races between processes); this one uses the system temp folder.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import pycocoevalcap

from captionlab.errors import UserError

# pycocoevalcap removes these tokens after PTB tokenization.
PUNCTUATION = {
    "''",
    "'",
    "``",
    "`",
    "-LRB-",
    "-RRB-",
    "-LCB-",
    "-RCB-",
    ".",
    "?",
    "!",
    ",",
    ":",
    "-",
    "--",
    "...",
    ";",
}
PTB_JAR = Path(pycocoevalcap.__path__[0]) / "tokenizer" / "stanford-corenlp-3.4.1.jar"
JAVA_HELP = "install Java 17 (e.g. 'apt-get install openjdk-17-jre-headless') for PTB tokenization and METEOR"


@functools.lru_cache(maxsize=1)
def java_available() -> bool:
    return shutil.which("java") is not None


def ptb_tokenize(captions: list[str]) -> list[str]:
    """Tokenize with the Java PTB tokenizer: lower-cased, punctuation tokens removed."""
    if not captions:
        return []
    lines = [" ".join(c.split()) for c in captions]
    non_empty = [i for i, line in enumerate(lines) if line]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as handle:
        handle.write("\n".join(lines[i] for i in non_empty))
    try:
        command = [
            "java",
            "-cp",
            str(PTB_JAR),
            "edu.stanford.nlp.process.PTBTokenizer",
            "-preserveLines",
            "-lowerCase",
            handle.name,
        ]
        done = subprocess.run(command, capture_output=True)
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"]
        raise UserError(
            f"the Java PTB tokenizer ({PTB_JAR.name}) failed with exit code {done.returncode}: {message[0]}; "
            "check that `java -version` works and the machine has memory to spare"
        )
    output = done.stdout.decode("utf-8")
    tokenized = output.split("\n")[: len(non_empty)]
    if len(tokenized) != len(non_empty):
        raise RuntimeError(f"PTB tokenizer returned {len(tokenized)} lines for {len(non_empty)} captions")
    result = [""] * len(captions)
    for i, line in zip(non_empty, tokenized):
        result[i] = " ".join(w for w in line.split() if w not in PUNCTUATION)
    return result


_SPLIT = re.compile(
    r"(?:[a-z]\.){2,}|\b(?:mr|mrs|ms|dr|jr|sr|st|vs)\.(?=\s*\S)"  # abbreviations: p.m., jr.
    r"|\d+(?:[:.,/]\d+)+"  # 5:30, 3.5, 1,000
    r"|\.\.\.|--|n't\b|'s\b|'re\b|'ve\b|'ll\b|'d\b|'m\b"
    r"|[a-z0-9]+(?:[-./'][a-z0-9]+)*"  # words, hyphenated words
    r"|\S"
)


# PTB escapes brackets; with -lowerCase the escapes are lower-case and survive pycocoevalcap's
# (case-sensitive) punctuation filter, so they are kept here too.
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "{": "-lcb-", "}": "-rcb-", "[": "-lsb-", "]": "-rsb-"}


def python_tokenize(captions: list[str]) -> list[str]:
    """A pure-Python approximation of PTB tokenization followed by punctuation removal."""
    result = []
    for caption in captions:
        text = caption.lower().replace("\u2019", "'")
        text = re.sub(r"(\w)(n't)\b", r"\1 \2", text)
        text = re.sub(r"\bcannot\b", "can not", text)
        text = re.sub(r"(\w)('s|'re|'ve|'ll|'d|'m)\b", r"\1 \2", text)
        tokens = [_BRACKETS.get(t, t) for t in _SPLIT.findall(text)]
        result.append(" ".join(t for t in tokens if t not in PUNCTUATION and t != '"'))
    return result


def tokenize_for_scoring(captions: list[str]) -> list[str]:
    if java_available():
        return ptb_tokenize(captions)
    warnings.warn(
        f"Java not found: captions are tokenized in pure Python, close to but not exactly the "
        f"PTB tokenizer, and METEOR is skipped; {JAVA_HELP}",
        stacklevel=2,
    )
    return python_tokenize(captions)
