"""Every generated figure in README.md and MODEL_CARD.md equals what benchmarks/publish_docs.py writes
from the shipped files and the committed reports (run it after a rebuild or a new report)."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def publish():
    spec = importlib.util.spec_from_file_location("publish_docs", ROOT / "benchmarks" / "publish_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return module, module.Sources()
    except ImportError as exc:  # neither onnxruntime nor onnx to read the ONNX file's metadata
        pytest.skip(f"cannot read the bundled ONNX file's metadata: {exc}")


@pytest.mark.parametrize("doc", ["README.md", "MODEL_CARD.md"])
def test_docs_equal_what_the_generator_writes(publish, doc):
    module, sources = publish
    text = (ROOT / doc).read_text()
    assert module.BLOCK.search(text), f"{doc} has no generated block"
    assert module.render(text, sources) == text, (
        f"{doc} is out of date: run PYTHONPATH=. python benchmarks/publish_docs.py")


def test_the_docs_quote_the_shipped_thresholds_and_no_build_machine_path(publish):
    _, sources = publish
    readme, card = (ROOT / "README.md").read_text(), (ROOT / "MODEL_CARD.md").read_text()
    threshold = f"{sources.meta.threshold:.3f}"
    assert f"threshold {threshold}" in readme and threshold in card
    assert sources.meta.exported_at in card
    for text in (readme, card):
        assert not re.search(r"`/(work|home|tmp)/", text)


def test_a_stale_block_is_rewritten(publish):
    module, sources = publish
    stale = "<!-- generated:shipped-file -->\nexported 1999-01-01\n<!-- /generated -->\n"
    fresh = module.render(stale, sources)
    assert "1999" not in fresh and sources.meta.source_sha256 in fresh
