"""bench.json, bench.md and pareto.png from a :class:`BenchReport`."""

from __future__ import annotations

import json
from pathlib import Path

from ..runtime import format_megabytes
from ._bench import BenchReport

PLOT_FILE = "pareto.png"
NO_PLOT_NOTE = "No Pareto plot: matplotlib is not installed (pip install 'xscreen[report]')."


def has_matplotlib() -> bool:
    """True when the optional plotting dependency (the ``report`` extra) imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_report(report: BenchReport, out: Path) -> dict[str, Path | None]:
    """Write ``bench.json``, ``bench.md`` and, with matplotlib, ``pareto.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = report.to_dict()
    (out / "bench.json").write_text(json.dumps(data, indent=2) + "\n")
    plot = out / PLOT_FILE if has_matplotlib() else None
    if plot is not None:
        plot_pareto(report.results, plot)
    (out / "bench.md").write_text(render_markdown(data, plot.name if plot else None))
    return {"json": out / "bench.json", "markdown": out / "bench.md", "plot": plot}


def pareto_front(results: list[dict]) -> list[dict]:
    """Rows no other row beats on both latency p50 (lower) and macro-F1 (higher), fastest first."""
    front = []
    best_f1 = float("-inf")
    for row in sorted(results, key=lambda r: (r["latency_ms"]["p50"], -r["metrics"]["macro_f1"])):
        if row["metrics"]["macro_f1"] > best_f1:
            front.append(row)
            best_f1 = row["metrics"]["macro_f1"]
    return front


TRAINING_FILMS_MARK = "(ON ITS TRAINING FILMS)"  # after a model's name in the table, the plot's legend


def summary_rows(results: list[dict]) -> list[dict]:
    """The table's cells, as strings, one dict per result row (shared by bench.md and the CLI)."""
    labels = _labels(results)
    rows = []
    for r in results:
        per_class = r["metrics"]["per_class"]
        cells = {
            "model": r["model"] + (f" {TRAINING_FILMS_MARK}" if r.get("on_training_films") else ""),
            "format": r["variant"],
            "threads": str(r["threads"]),
            "size": _size(r["size_bytes"]),
            "p50 ms": _ms(r["latency_ms"]["p50"]),
            "p90 ms": _ms(r["latency_ms"]["p90"]),
            "images/s": "n/a" if r["throughput_ips"] is None else f"{r['throughput_ips']:.1f}",
            "macro-F1 (95% CI)": _f1(r["metrics"]),
        }
        for label in labels:
            row = per_class.get(label)
            cells[f"recall {label}"] = "–" if not row or not row["support"] else f"{row['recall']:.3f}"
        cells["in scope"] = _in_scope(r["metrics"].get("scope"), labels)
        cells["abnormal sens / spec"] = _screening(r["metrics"].get("screening"))
        cells["peak MB"] = f"{r['peak_rss_mb']:.0f}"
        rows.append(cells)
    return rows


# The columns of summary_rows a 100-column terminal shows; bench.md keeps them all.
TERMINAL_COLUMNS = {"model": "model", "threads": "thr", "size": "size", "p50 ms": "p50 ms",
                    "images/s": "images/s", "macro-F1": "macro-F1", "abnormal sens / spec": "sens / spec",
                    "peak MB": "peak MB"}


def terminal_rows(results: list[dict]) -> list[dict]:
    """The summary for a terminal: fewer, shorter columns (no per-class recall, no interval)."""
    rows = []
    for full, r in zip(summary_rows(results), results):
        full["macro-F1"] = f"{r['metrics']['macro_f1']:.4f}"
        rows.append({short: full[name] for name, short in TERMINAL_COLUMNS.items()})
    return rows


def render_markdown(data: dict, plot_name: str | None) -> str:
    """bench.md: hardware, the table, the plot (or a one-line note), per-model metrics, caveats."""
    from ..runtime._metrics import report_markdown

    hw, d, s = data["hardware"], data["data"], data["settings"]
    results = data["results"]
    lines = [
        "# xscreen bench",
        "",
        f"{hw['date_utc']} · {hw['cpu_model']} ({hw['cores_physical']} physical / {hw['cores_logical']} logical "
        f"cores, {', '.join(hw['simd']) or 'no SIMD flags found'}) · {hw['os']} · {hw['python']} · "
        f"xscreen {hw['xscreen']} · "
        + ", ".join(f"{k} {v}" for k, v in hw["packages"].items()),
        "",
        f"Data: {d['n_images']} labelled images from `{d['path']}`"
        + (f", split `{d['split']}`" if d["split"] else "")
        + (f", stratified sample (--limit {d['limit']}, seed {d['seed']})" if d["limit"] else "")
        + " · " + ", ".join(f"{k} {v}" for k, v in d["per_class"].items()) + ".",
        f"Latency: batch 1, {s['runs']} timed runs after {s['warmup']} warm-up runs. "
        "Images/s: the `xscreen run` pipeline, decoding included. Peak MB: one fresh process per row. "
        "In scope: per class (label order), the share of films the scope check kept; macro-F1 and recall are "
        "over those films, so a check too eager shows here as lost films.",
        "",
    ]
    lines += [f"**Warning: {w}.**" for w in d.get("training_films_warnings", {}).values()]
    lines += [""] if d.get("training_films_warnings") else []
    table = summary_rows(results)
    if table:
        header = list(table[0])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in table]
    lines += ["", f"![latency p50 vs macro-F1]({plot_name})" if plot_name else NO_PLOT_NOTE, ""]
    front = pareto_front(results)
    if front:
        lines += ["Pareto front (nothing else is both faster and more accurate): "
                  + ", ".join(f"{r['model']} @ {r['threads']}t" for r in front) + ".", ""]
    lines += ["## Accuracy per model", ""]
    shown: dict[str, list] = {}
    for r in results:
        # One table per model, unless another thread count changed its predictions.
        if r["metrics"]["confusion_matrix"] in shown.setdefault(r["model"], []):
            continue
        shown[r["model"]].append(r["metrics"]["confusion_matrix"])
        title = f"{r['model']} ({r['variant']}, {r['backend']})"
        if len(shown[r["model"]]) > 1:
            title += f", {r['threads']} threads: predictions differ from fewer threads"
        lines.append(report_markdown(r["metrics"], title=title))
    lines += ["## Caveats", ""]
    lines += [f"- {c}" for c in _caveats(data)]
    lines += ["", f"**{data['disclaimer']}**", ""]
    return "\n".join(lines)


def plot_pareto(results: list[dict], path: Path) -> None:
    """Latency p50 against macro-F1: a colour per model, a point per thread count, the front dashed."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    handles = []
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colours = plt.get_cmap("tab10").colors
    markers = "osD^v<>p"
    thread_counts = sorted({r["threads"] for r in results})
    for i, model in enumerate(dict.fromkeys(r["model"] for r in results)):
        rows = sorted((r for r in results if r["model"] == model), key=lambda r: r["threads"])
        xs = [r["latency_ms"]["p50"] for r in rows]
        ys = [r["metrics"]["macro_f1"] for r in rows]
        colour = colours[i % len(colours)]
        ax.plot(xs, ys, color=colour, linewidth=0.8, alpha=0.6)
        for r, x, y in zip(rows, xs, ys):
            low, high = r["metrics"]["macro_f1_ci95"]
            ax.errorbar(x, y, yerr=[[y - low], [high - y]], color=colour, alpha=0.35, linewidth=1, capsize=2)
            ax.scatter(x, y, color=colour, s=36, zorder=3,
                       marker=markers[thread_counts.index(r["threads"]) % len(markers)])
            ax.annotate(f"{r['threads']}t", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=colour)
        on_training = any(r.get("on_training_films") for r in rows)
        handles.append(Line2D([], [], color=colour, marker="o", linewidth=0.8,
                              label=model + (f" {TRAINING_FILMS_MARK}" if on_training else "")))
    front = pareto_front(results)
    handles += ax.plot([r["latency_ms"]["p50"] for r in front], [r["metrics"]["macro_f1"] for r in front],
                       color="black", linestyle="--", linewidth=0.8, label="Pareto front")
    handles += [Line2D([], [], color="grey", linestyle="", marker=markers[i % len(markers)], label=f"{t} thread(s)")
                for i, t in enumerate(thread_counts)]
    ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set_xlabel("latency p50, ms per image at batch 1 (lower is better)")
    ax.set_ylabel("macro-F1, bars: 95% bootstrap CI (higher is better)")
    ax.grid(True, alpha=0.3)
    title = "xscreen bench: speed against accuracy, one point per model and thread count"
    if any(r.get("on_training_films") for r in results):
        title += "\nWARNING: some models are scored on their own training films (see bench.md)"
    ax.set_title(title, fontsize=9, color="black" if "WARNING" not in title else "darkred")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _caveats(data: dict) -> list[str]:
    d = data["data"]
    caveats = [
        f"Accuracy is measured on {d['n_images']} images; with few images per class a difference of one "
        "or two images moves recall by whole points. Compare formats against each other, not against "
        "numbers measured on other data.",
        f"Only the {d['split']} split is benched"
        + (f" ({d['split_file']}"
           + (f"; {d['split_note']}" if d.get("split_note") else "") + ")" if d.get("split_file") else "")
        + ": held out from training only if that split is the one the models were trained with."
        if d.get("split") else
        "Every image of the folder is benched: if a model was trained or calibrated on some of them its figures "
        "are optimistic; bench a held-out split (--split test --split-file runs/<name>/split.csv).",
        "Latency and images/s depend on the machine and its load (1-minute load average "
        f"{data['hardware']['load_avg_1m']} at the start); rerun on your own hardware before deciding.",
    ]
    if d.get("readme"):
        caveats.append(f"What the data is and how it was drawn: {d['readme']}.")
    for name, summary in d.get("model_training_data", {}).items():
        caveats.append(f"{name} was trained on: {summary}")
    return caveats


def _labels(results: list[dict]) -> list[str]:
    labels: list[str] = []
    for r in results:
        labels += [label for label in r["metrics"]["labels"] if label not in labels]
    return labels


def _in_scope(scope: dict | None, labels: list[str]) -> str:
    """Per-class share of films the scope check kept, e.g. ``100 / 99.5 / 98.0 %``."""
    if not scope:
        return "n/a"
    rates = [scope["per_class"].get(label) for label in labels]
    return " / ".join("–" if rate is None else f"{100 * rate['in_scope_rate']:.1f}" for rate in rates) + " %"


def _f1(metrics: dict) -> str:
    low, high = metrics["macro_f1_ci95"]
    return f"{metrics['macro_f1']:.4f} ({low:.3f}–{high:.3f})"


def _screening(screening: dict | None) -> str:
    if not screening:
        return "no threshold"
    return " / ".join("n/a" if v is None else f"{v:.3f}" for v in (screening["sensitivity"], screening["specificity"]))


def _ms(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"  # a tiny test model still shows digits


def _size(n: int) -> str:
    return format_megabytes(n)
