"""Every ``xscreen`` command the README shows: its options exist, and the ones a fresh install can run,
run as written (with small fixtures standing in for the user's folders)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
from conftest import grey, save_png, two_tone
from test_cli_run import xscreen

from xscreen.cli import main
from xscreen.runtime import default_model_path

README = Path(__file__).parents[1] / "README.md"
# Paths made by training and export, or this project's data: commands using them say what comes first.
NEEDS_EARLIER_STEPS = ("runs/", "models/", "../shared/")


def readme_commands() -> list[tuple[list[str], str]]:
    """(xscreen arguments, the fenced bash block they come from), in README order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
            for segment in re.split(r"&&|\|", line):
                words = shlex.split(segment)
                if words and Path(words[0]).name == "xscreen":
                    commands.append((words[1:], block))
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_commands_of_every_kind():
    assert {args[0] for args, _ in COMMANDS} >= {"run", "info", "demo", "bench", "train", "export"}


@pytest.mark.parametrize("args", [args for args, _ in COMMANDS], ids=" ".join)
def test_every_option_the_readme_shows_exists(args):
    command = main.get_command(None, args[0])
    assert command is not None, f"xscreen {args[0]} does not exist"
    known = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    for word in args[1:]:
        if word.startswith("-") and word != "-":
            assert word.split("=")[0] in known, f"xscreen {args[0]} has no option {word}"
    command.make_context(args[0], list(args[1:]), resilient_parsing=True)  # arity and option values


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A working folder with what the README calls the user's own: ./scans, list.txt, ./labelled."""
    root = tmp_path_factory.mktemp("readme")
    (root / "scans").mkdir()
    films = [save_png(root / "scans" / f"film{level}.png", two_tone(level, (64, 64))) for level in (30, 130, 230)]
    (root / "list.txt").write_text("".join(f"scans/{p.name}\n" for p in films))
    for label, level in (("covid", 230), ("healthy", 20), ("pneumonia", 130)):
        (root / "labelled" / label).mkdir(parents=True)
        for i in range(2):
            save_png(root / "labelled" / label / f"{i}.png", grey(level + i, (64, 64)))
    for folder in ("site", "new_films"):  # a clinic's own labelled films, for xscreen calibrate
        for label, level in (("healthy", 20), ("pneumonia", 130)):
            (root / folder / label).mkdir(parents=True)
            for i in range(6):
                save_png(root / folder / label / f"{i}.png", grey(level + 9 * i, (64, 64)))
    return root


def test_the_commands_a_fresh_install_can_run_run_as_written(sandbox, monkeypatch):
    monkeypatch.chdir(sandbox)
    ran = []
    for args, block in COMMANDS:
        if args[0] not in ("run", "info", "demo", "bench", "calibrate") or "-" in args:
            continue  # training needs [train]; a list on stdin needs a pipe (its options are checked above)
        if any(word.startswith("seed.") for word in args):  # the user's own model, made elsewhere first
            assert "seed.keras" in block, args
            continue
        if "--address" in args:  # a Ray cluster must be started first, in the same block
            assert "ray start" in block, args
            continue
        if any(step in word for word in args for step in NEEDS_EARLIER_STEPS):
            assert "after `xscreen train`" in block or "pip install '.[train]'" in block, args
            continue
        if "bundled-onnx" in args and importlib.util.find_spec("onnxruntime") is None:
            continue
        if "ray" in args and importlib.util.find_spec("ray") is None:
            continue  # `--engine ray` needs the [ray] extra; without it the command is not for this install
        if args[0] == "bench":
            args = [*args, "--runs", "5", "--warmup", "1"]  # the README's defaults, only fewer timed runs
        result = xscreen(*args)
        if "--strict" in args and result.exit_code == 1:
            # The sandbox's films are flat grey squares: the bundled model's scope head calls them blank.
            assert "out of scope" in result.output and " 0 errors" in result.output, result.output
        else:
            assert result.exit_code == 0, (args, result.output)
        if args[0] == "run":
            out = args[args.index("--out") + 1] if "--out" in args else "results.csv"
            assert_rows_of_every_film(sandbox, Path(out))
        ran.append(args[0])
    assert {"run", "info", "demo", "bench"} <= set(ran)
    assert (sandbox / "bench" / "bench.md").exists()


def assert_rows_of_every_film(sandbox: Path, out: Path) -> None:
    """``out`` (relative to the sandbox, where the command ran) holds one result row per film of ./scans."""
    from test_cli_run import rows

    from xscreen.runtime import load_model, result_columns
    from xscreen.runtime._writers import STATUSES

    out = sandbox / out
    if out.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        columns, written = table.column_names, table.to_pylist()
    else:
        written = rows(out)
        columns = list(written[0]) if written else []
    if out.suffix != ".jsonl":  # JSONL nests the probabilities (its fields are checked below)
        assert columns == result_columns(load_model(default_model_path()).labels), (out, columns)
    films = sorted(p.resolve() for p in (sandbox / "scans").glob("*.png"))
    assert sorted((sandbox / row["path"]).resolve() for row in written) == films, (out, written)
    assert all(row["status"] in STATUSES for row in written), (out, written)


def test_the_readme_shows_the_output_exactly_as_written(tmp_path):
    import csv
    import json

    from xscreen.runtime import ScreeningResult, open_writer, result_columns

    text = README.read_text()
    example = json.loads(re.search(r'^`(\{"path": .*\})`$', text, flags=re.M).group(1))
    labels = tuple(example["probabilities"])
    row = ScreeningResult("scans/a.png", "ok", "covid", example["probabilities"], True,
                          margin=example["margin"], review_reason=example["review_reason"],
                          scope_score=example["scope_score"])
    with open_writer(tmp_path / "r.jsonl", labels, resume=False) as writer:
        writer.write([row])
    written = json.loads((tmp_path / "r.jsonl").read_text())
    assert list(written) == list(example) and written == example
    with open_writer(tmp_path / "r.csv", labels, resume=False) as writer:
        writer.write([row])
    header, values = list(csv.reader((tmp_path / "r.csv").read_text().splitlines()))
    documented = re.findall(r"^\| `([a-z_<>]+)` \|", text.split("### Output")[1].split("Exit codes")[0], flags=re.M)
    assert [c if not c.startswith("prob_") else "prob_<label>" for c in result_columns(labels)
            if not c.startswith("prob_") or c == f"prob_{labels[0]}"] == documented
    assert values[header.index("flag")] == "true"  # lowercase, as the README's table says
