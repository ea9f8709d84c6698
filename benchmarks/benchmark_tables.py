"""The published tables of the benchmark: results dict -> the Markdown of benchmarks/README.md.

Split from ``run_benchmarks.py`` (which measures); this module only renders and publishes.
"""

from __future__ import annotations

from pathlib import Path

README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"
MIN_SCREENINGS = 600


def find_row(rows: list[dict], **keys) -> dict | None:
    return next((r for r in rows if all(r[k] == v for k, v in keys.items())), None)


def render(results: dict) -> str:
    """The Markdown tables of benchmarks/README.md."""
    hw, summary = results["hardware"], results["summary"]
    goal_model, top = summary["model"], summary["threads"]
    lines = [
        f"Measured {hw['date_utc']} on {hw['cpu_model']} ({hw['cores_physical']} physical / "
        f"{hw['cores_logical']} logical cores; {', '.join(hw['simd'])}; {hw['memory_mb']:,} MB), {hw['os']}, "
        f"{hw['python']}, " + ", ".join(f"{k} {v}" for k, v in hw["packages"].items())
        + f"; 1-minute load {hw['load_avg_1m']} at the start.",
        "",
        f"Command: `{results['command']}`",
        "",
        "### Goals",
        "",
        "| goal | target | measured | met |",
        "|---|---|---|---|",
    ]
    names = {"vs_keras_loop": f"`xscreen run` {goal_model} @ {top} threads vs the Keras loop, fullres",
             "of_ceiling": f"`xscreen run` {goal_model} @ {top} threads, share of the decode+inference ceiling "
                           f"on {summary['cores']} cores, fullres",
             "peak_rss_mb": f"peak memory of `xscreen run` {goal_model} @ {top} threads, fullres (MB; other formats "
                            "in the next table)"}
    for key, goal in summary["goals"].items():
        fmt = "{:.1%}" if key == "of_ceiling" else "{:.1f}"
        measured = "not measured" if goal["measured"] is None else fmt.format(goal["measured"])
        target = fmt.format(goal["target"])
        met = {True: "yes", False: "**no**", None: "n/a"}[goal["met"]]
        lines.append(f"| {names[key]} | {'≤' if key == 'peak_rss_mb' else '≥'} {target} | {measured} | {met} |")

    data_names = list(results["decode"])
    threads = sorted({r["threads"] for r in results["xscreen_run"]})
    listed = ", ".join(f"{d} {v['images']} files × {v['listed_times_per_run']}" for d, v in results["data"].items())
    lines += ["", "### `xscreen run`, end to end (images/s, median of runs; decoding and writing included)", "",
              f"Each run screens a list of the files repeated to about {MIN_SCREENINGS} entries ({listed}).", ""]
    header = ["format", "size"] + [f"{d} @ {t}t" for d in data_names for t in threads] + ["peak MB"]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row, model in results["models"].items():
        cells = [row, f"{model['size_bytes'] / 2**20:.1f} MB"]
        for d in data_names:
            for t in threads:
                run = find_row(results["xscreen_run"], data=d, model=row, threads=t)
                cells.append("–" if run is None else f"{run['images_per_s']:.0f}")
        peaks = [r["peak_rss_mb"] for r in results["xscreen_run"] if r["model"] == row]
        cells.append(f"{max(peaks):.0f}" if peaks else "–")
        lines.append("| " + " | ".join(cells) + " |")

    lines += ["", "### Where the time goes (ms per image, one core)", "",
              "| data | images | decode (JPEG draft) | resize | JPEG q75 round trip (model's preprocessing) | "
              f"full-size decode | full-size resize | inference {goal_model} 1t | writing |",
              "|---|---|---|---|---|---|---|---|---|"]
    for d in data_names:
        dec = results["decode"][d]
        per = summary["per_data"].get(d, {})
        run = find_row(results["xscreen_run"], data=d, model=goal_model, threads=top)
        write_ms = f"{1000 * run['write_s'] / run['screened']:.2f}" if run else "–"
        infer = f"{per['inference_ms_1_thread']:.2f}" if "inference_ms_1_thread" in per else "–"
        lines.append(f"| {d} | {dec['images']} | {dec['decode_ms']:.2f} | {dec['resize_ms']:.2f} | "
                     f"{dec.get('finish_ms', 0.0):.2f} | {dec['full_size_decode_ms']:.2f} | "
                     f"{dec.get('full_size_resize_ms', float('nan')):.2f} | "
                     f"{infer} | {write_ms} |")

    lines += ["", f"Inside `xscreen run` ({goal_model} @ {top} threads; ms per image, from its RunSummary: decoding "
              "is summed over the decoding threads and overlaps inference, so the parts exceed the wall time "
              "when the overlap works):", "",
              "| data | wall | decoding (all threads) | inference | writing |", "|---|---|---|---|---|"]
    for d in data_names:
        run = find_row(results["xscreen_run"], data=d, model=goal_model, threads=top)
        if run:
            per_image = [1000 * run[k] / run["screened"] for k in ("elapsed_s", "decode_s", "inference_s", "write_s")]
            lines.append(f"| {d} | " + " | ".join(f"{v:.2f}" for v in per_image) + " |")

    lines += ["", "### Baseline, ceiling and ratios", "",
              "| data | Keras loop images/s | xscreen run images/s | × Keras | inference only images/s | "
              f"decode+inference ceiling on {summary['cores']} cores | share of ceiling |",
              "|---|---|---|---|---|---|---|"]
    columns = [("keras_images_per_s", "{:.1f}"), ("xscreen_images_per_s", "{:.1f}"), ("vs_keras_loop", "{:.1f}×"),
               ("inference_only_images_per_s", "{:.1f}"), ("ceiling_images_per_s", "{:.1f}"),
               ("of_ceiling", "{:.1%}")]
    for d, per in summary["per_data"].items():
        cells = [fmt.format(per[key]) if key in per else "–" for key, fmt in columns]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += ["", "Inference only, on decoded arrays (images/s, best batch size of 1/8/32):", "",
              "| format | " + " | ".join(f"{t}t" for t in threads) + " |", "|---" * (len(threads) + 1) + "|"]
    for row in results["models"]:
        cells = []
        for t in threads:
            entry = find_row(results["inference_only"], model=row, threads=t)
            if entry is None:
                cells.append("–")
                continue
            batch, best = max(entry["by_batch"].items(), key=lambda kv: kv[1]["images_per_s"])
            cells.append(f"{best['images_per_s']:.0f} (batch {batch})")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")

    bench = results["bench"]
    lines += ["", "### Accuracy against latency, cxr3 test split (`xscreen bench`)", ""]
    if bench["table"]:
        header = list(bench["table"][0])
        lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        lines += ["| " + " | ".join(r[h] for h in header) + " |" for r in bench["table"]]
    lines += ["", "Full report: `results/bench/bench.md`"
              + (", plot `results/bench/pareto.png`." if "plot" in bench["files"] else ".")]
    if results["missing_models"]:
        lines += ["", "Not measured (file missing): " + ", ".join(results["missing_models"]) + "."]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, markdown: str) -> None:
    """Replace the text between the results markers of ``readme`` with ``markdown``."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"{readme} lacks the {README_BEGIN} / {README_END} markers")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_BEGIN}\n{markdown}{README_END}{tail}")


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
