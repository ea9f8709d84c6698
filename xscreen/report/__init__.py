"""What the model sees: heatmap overlays, the HTML screening report and the shortcut audit.

Light like the runtime it sits on (numpy and Pillow; no matplotlib, no template engine). The
templates are files in ``templates/``. The underscored modules are private; this is the surface.
"""

from ._audit import LUNG_ELLIPSES, region_masks, shortcut_audit, shortcut_audit_markdown
from ._build import (
    MAX_REPORT_THUMBNAILS,
    NO_HEATMAP_OUTPUT,
    FilmRenderer,
    NoHeatmapOutputError,
    check_run_outputs,
    model_facts,
    report_from_results,
    require_heatmaps,
    screen_and_report,
)
from ._html import ReportContent, ReportOptionError, check_report_target, render_report, write_report
from ._maps import positive_evidence, upsample_bilinear
from ._overlay import COLOUR_MAP, HeatmapNames, render_overlay
from ._results import ResultRow, ResultsFileError, ResultTable, read_results

__all__ = [
    "COLOUR_MAP",
    "LUNG_ELLIPSES",
    "MAX_REPORT_THUMBNAILS",
    "NO_HEATMAP_OUTPUT",
    "FilmRenderer",
    "HeatmapNames",
    "NoHeatmapOutputError",
    "ReportContent",
    "ReportOptionError",
    "ResultRow",
    "ResultTable",
    "ResultsFileError",
    "check_report_target",
    "check_run_outputs",
    "model_facts",
    "positive_evidence",
    "read_results",
    "region_masks",
    "render_overlay",
    "render_report",
    "report_from_results",
    "require_heatmaps",
    "screen_and_report",
    "shortcut_audit",
    "shortcut_audit_markdown",
    "upsample_bilinear",
    "write_report",
]
