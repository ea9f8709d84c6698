"""What the commands print: progress, the run summary and the bench table, rendered with rich.

Every piece of text that comes from a file, a path or an exception is escaped before it reaches
rich, so brackets (``'xscreen[report]'``, ``scan[1].png``) are printed, never eaten as markup.
"""

from __future__ import annotations

import time

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .runtime import RunSummary, ScreeningModel

DISCLAIMER = ("xscreen is not a medical device: its output is a research aid for triage studies, "
              "not a diagnosis. A clinician must read every film.")
PLAIN_PROGRESS_EVERY_S = 5.0  # progress lines in logs (stderr not a terminal)


def plural(n: int, word: str) -> str:
    """``1 error``, ``2 errors``, ``1,200 files``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:,.1f} images/s" if task.speed else "", style="progress.data.speed")


class ProgressReporter:
    """The ``progress(done, total)`` callback: a rich bar on a terminal, a line every few seconds in logs."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bar = None
        self._task = None
        self._started = self._last_line = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if self._console.is_terminal:
            if self._bar is None:
                self._bar = Progress(
                    TextColumn("screening"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=self._console, transient=True,
                )
                self._bar.start()
                self._task = self._bar.add_task("screening", total=total)
            self._bar.update(self._task, completed=done)
            return
        now = time.perf_counter()
        if done in (0, total) or now - self._last_line >= PLAIN_PROGRESS_EVERY_S:
            self._last_line = now
            rate = done / (now - self._started) if done else 0.0
            eta = f", ETA {(total - done) / rate:,.0f} s" if rate and done < total else ""
            percent = 100 * done / total if total else 100
            self._console.print(f"screened {done:,}/{total:,} ({percent:.0f}%), {rate:,.1f} images/s{eta}",
                                highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def flag_sentence(model: ScreeningModel) -> str | None:
    """One sentence on what the flag means, or None when the model defines no threshold."""
    meta = model.metadata
    if meta.threshold is None or meta.negative_label is None:
        return None
    return (f"flag = needs review: P(not {meta.negative_label}) >= {meta.threshold:.3f}, a threshold set for high "
            f"sensitivity, so it is not the prediction: a film predicted {meta.negative_label} can be flagged and "
            f"one predicted otherwise may not be (each row's review_reason gives the comparison).")


def print_run_summary(console: Console, summary: RunSummary, model: ScreeningModel) -> None:
    """The table after ``xscreen run``: what is in the output file, this run's speed, where the file is."""
    out_of_scope = f"{summary.out_of_scope:,} out of scope, " if summary.out_of_scope else ""
    title = (f"xscreen run: {plural(summary.rows, 'file')}: {summary.screened:,} screened, {out_of_scope}"
             f"{plural(summary.errors, 'error')}")
    table = Table(title=escape(title), title_justify="left")
    table.add_column("")
    table.add_column("images", justify="right")
    table.add_column("share", justify="right")

    def share(n: int) -> str:
        return f"{100 * n / summary.ok:.1f}%" if summary.ok else "-"

    for label, n in summary.per_class.items():
        table.add_row(f"predicted {escape(label)}", f"{n:,}", share(n))
    if model.metadata.threshold is not None:
        table.add_row("[bold]flagged for review[/]", f"{summary.flagged:,}", share(summary.flagged),
                      end_section=True)
    if summary.out_of_scope:
        table.add_row("[yellow]out of scope (not screened)[/]", f"{summary.out_of_scope:,}", "")
    table.add_row("[red]errors[/]" if summary.errors else "errors", f"{summary.errors:,}", "")
    if summary.earlier:
        table.add_row("rows from earlier runs (--resume)", f"{summary.earlier:,}", "")
    if summary.earlier_elsewhere:
        table.add_row("[yellow]  of which not in this input[/]", f"{summary.earlier_elsewhere:,}", "")
    if summary.duplicates:
        table.add_row("duplicates skipped (listed twice)", f"{summary.duplicates:,}", "")
    for reason, n in summary.ignored.items():
        table.add_row(f"[dim]ignored: {escape(reason)}[/]", f"{n:,}", "")
    console.print(table)
    for path, reason in summary.first_out_of_scope:
        console.print(f"  [yellow]out of scope[/] {escape(path)}: {escape(reason.removeprefix('out of scope: '))}",
                      highlight=False)
    for path, reason in summary.first_errors:
        console.print(f"  [red]error[/] {escape(path)}: {escape(reason)}", highlight=False)
    for path, reason in summary.first_ignored:
        console.print(f"  [dim]ignored[/] {escape(path)}: {escape(reason)}", highlight=False)
    listed = len(summary.first_errors) + len(summary.first_out_of_scope)
    if summary.new_errors > listed:
        console.print(f"  … and {summary.new_errors - listed:,} more, every one in {escape(summary.out)}",
                      highlight=False)
    sentence = flag_sentence(model)
    if sentence:
        console.print(escape(sentence), highlight=False)
    where = f"with {escape(model.path.name)} on {escape(summary.backend)}"
    if summary.images_per_s is None:
        console.print(f"this run screened no image ({plural(summary.new_errors, 'error')}, "
                      f"{summary.elapsed_s:.1f} s) {where}", highlight=False)
    else:
        done = (f"{plural(summary.new_rows, 'file')} ({summary.new_ok:,} screened)" if summary.new_errors
                else plural(summary.new_ok, 'image'))
        console.print(
            f"this run: {done} in {summary.elapsed_s:.1f} s: "
            f"[bold]{summary.images_per_s:,.1f} images/s[/] "
            + (f"(decoding {summary.decode_s:.1f} s summed over threads, inference {summary.inference_s:.1f} s, "
               f"writing {summary.write_s:.1f} s) " if summary.decode_s or summary.inference_s else "")  # not on Ray
            + where,
            highlight=False,
        )
    console.print(f"results: {escape(summary.out)} (model record: {escape(summary.out)}.meta.json)",
                  highlight=False)
    if model.assumptions:
        console.print(f"[yellow]{escape(model.assumptions)}[/]", highlight=False)
    console.print(f"[dim]{escape(DISCLAIMER)}[/]")


def bench_table(rows: list[dict], title: str) -> Table:
    """The bench summary for a terminal: cells from ``terminal_rows``, model names folded, never cut."""
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in rows[0]:
        if column == "model":
            table.add_column(column, overflow="fold")
        else:
            table.add_column(escape(column), justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row.values()))
    return table


def print_calibration_summary(console: Console, result: dict, report_files, model_file) -> None:
    """Before and after on the site's films, what was fitted, where the model file and the report went."""
    from .calibrate._report import figure_rows  # the same rows as the Markdown report

    evaluate_only = result.get("after") is None
    films = ", ".join(f"{n} {label}" for label, n in result["films_per_label"].items() if n)
    table = Table(title=f"{'local validation' if evaluate_only else 'site calibration'}: {escape(films)} films",
                  title_justify="left", box=box.SIMPLE)
    table.add_column("figure")
    table.add_column("before (model as is)", justify="right")
    if not evaluate_only:
        table.add_column("after (cross-validated)", justify="right")
    for name, before, after in figure_rows(result):
        table.add_row(escape(name), before, *([] if evaluate_only else [after]))
    console.print(table)
    for warning in result["warnings"]:
        console.print(f"[yellow]warning[/] {escape(warning)}", highlight=False)
    if result["not_checked"]:
        console.print(f"not checked (no such films): {escape(', '.join(result['not_checked']))}; "
                      "their probabilities are left as the model gives them", highlight=False)
    if not evaluate_only:
        console.print(f"fitted: {escape(result['cross_validation']['chosen'])}; "
                      f"threshold: {escape(result['threshold']['rule'])}", highlight=False)
        console.print(f"model: {escape(str(model_file))} (sha256 {result['out']['sha256'][:16]}...)", highlight=False)
    console.print(f"report: {escape(str(report_files[0]))}, {escape(report_files[1].name)}", highlight=False)
    console.print(f"[dim]{escape(result['advice'][0])}[/]")
    console.print(f"[dim]{DISCLAIMER}[/]")
