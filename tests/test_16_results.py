"""Chapter 16's measured figures: the JSON files in benchmarks/results/ (what compress_*.py wrote
with --json), the table written from them into chapter 16 and the README, and
benchmarks/compress_plots.py, which draws the three plots from them.

Nothing here measures anything: the tests check that the written figures are the measured ones
(to the digits printed), and that the plot script reads the JSON the scripts write and draws
commit-sized PNGs.
"""

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.ch16

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CHAPTER = ROOT / "chapters" / "16_efficient_models.md"
README = ROOT / "README.md"
PNG_MAX_BYTES = 100_000


def results(name: str) -> dict:
    return json.loads((RESULTS / f"compress_{name}.json").read_text())


def plots_module():
    spec = importlib.util.spec_from_file_location(
        "compress_plots", ROOT / "benchmarks" / "compress_plots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measured_figures() -> list[str]:
    """Every loss of the JSON files to 4 decimals, the way the tables print them."""
    figures = []
    for row in results("quantize")["rows"]:
        figures.append(f"{row['val_loss']:.4f}")
        figures.append(f"{row['bytes']:,}")
    prune = results("prune")
    for row in prune["sparsity"]:
        figures += [f"{row['val_loss']:.4f}", f"{row['finetuned_val_loss']:.4f}"]
    for row in prune["heads"]:
        figures += [f"{row['raw']:.4f}", f"{row['normalised']:.4f}"]
    for row in results("distill")["rows"]:
        figures += [f"{row['val_loss']:.4f}", f"{row['parameters']:,}"]
    for name in ("precision_bf16", "precision_fp16"):
        for row in results(name)["rows"]:
            figures.append(f"{row['val_loss']:.4f}")
    return figures


@pytest.mark.parametrize("document", [CHAPTER, README], ids=["chapter", "README"])
def test_every_measured_figure_is_written_in_the_table(document):
    text = document.read_text()
    missing = [figure for figure in measured_figures() if figure not in text]
    assert not missing, f"{document.name} lacks the measured figures {missing}"


def test_the_written_speeds_are_the_measured_ones():
    """The ratios the text states (quantized slower, fp16 ~60x, distilled step ~3x) hold."""
    rows = {row["scheme"]: row for row in results("quantize")["rows"]}
    base = rows["float32"]["ms_per_token"]
    dequant = [row["ms_per_token"] for row in rows.values() if row["matmul"] == "dequant"]
    assert min(dequant) / base > 1.5  # weights dequantized in every forward: slower, not faster
    fp32, fp16 = results("precision_fp16")["rows"]
    assert 50 < fp16["ms_per_step"] / fp32["ms_per_step"] < 80
    fp32, bf16 = results("precision_bf16")["rows"]
    assert 1.0 < bf16["ms_per_step"] / fp32["ms_per_step"] < 1.5
    distill = {row["student"]: row for row in results("distill")["rows"]}
    assert distill["distilled"]["val_loss"] < distill["from scratch"]["val_loss"]
    assert distill["distilled"]["ms_per_step"] > 2 * distill["from scratch"]["ms_per_step"]
    text = CHAPTER.read_text()
    for figure in ("23.9", "12.9", "44.7", "14.6", "104.5", "85.0", "5,461", "87.0"):
        assert figure in text, figure


def test_the_plots_are_drawn_from_the_json_and_are_commit_sized(tmp_path):
    pytest.importorskip("matplotlib")
    module = plots_module()
    module.plot_bits(results("quantize"), tmp_path / "bits.png")
    prune = results("prune")
    module.plot_sparsity(prune, tmp_path / "sparsity.png")
    module.plot_heads(prune, tmp_path / "heads.png")
    for name in ("bits", "sparsity", "heads"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < PNG_MAX_BYTES


@pytest.mark.parametrize("name", ["compress_bits", "compress_sparsity", "compress_heads"])
def test_the_committed_plots_exist_are_small_and_are_shown(name):
    path = ROOT / "benchmarks" / f"{name}.png"
    assert path.is_file() and path.stat().st_size < PNG_MAX_BYTES
    assert f"(../benchmarks/{name}.png)" in CHAPTER.read_text()
    assert f"(benchmarks/{name}.png)" in README.read_text()


def test_a_missing_json_file_names_the_script_that_writes_it(tmp_path):
    with pytest.raises(SystemExit, match="--json PATH"):
        plots_module().read(tmp_path / "absent.json")
