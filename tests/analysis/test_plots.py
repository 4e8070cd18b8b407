"""The run's PNG plots (`sylvan.analysis.plots`): drawn as figures of their own, without pyplot,
so that plotting a run neither chooses a backend for the process nor keeps figures open."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_plots_are_written_without_pyplot(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from sylvan.analysis.metrics import Results
        from sylvan.analysis.plots import (plot_accuracy_curve, plot_accuracy_matrix, plot_confusion_matrix,
                                           plot_evaluation_curve, plots_of)
        results = Results(setting="class_incremental", method="naive",
                          accuracy_matrix=[[0.9, float("nan")], [0.1, 0.95]],
                          confusion_matrix=[[5, 1, 0, 0], [0, 6, 0, 0], [3, 0, 2, 1], [0, 0, 0, 7]],
                          evaluation_curve={{"steps": [10, 20, 30, 40], "return": [[0, 0]] * 4,
                                             "success": [[0.2, 0], [0.9, 0], [0.5, 0.4], [0.4, 1.0]]}},
                          task_spans=[[0, 20], [20, 40]])
        assert "evaluation_curve" in dict(plots_of(results))
        folder = Path({str(tmp_path)!r})
        written = [plot(results, folder / (plot.__name__ + ".png"))
                   for plot in (plot_accuracy_matrix, plot_accuracy_curve, plot_confusion_matrix)]
        written.append(plot_evaluation_curve(results, folder / "plot_evaluation_curve.png", reference=0.7))
        print("matplotlib.pyplot" in sys.modules, *(path.read_bytes()[:8].hex() for path in written))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pyplot_imported, *signatures = done.stdout.split()
    assert pyplot_imported == "False"
    assert signatures == ["89504e470d0a1a0a"] * 4  # four PNG files
    for name in ("plot_accuracy_matrix", "plot_accuracy_curve", "plot_confusion_matrix", "plot_evaluation_curve"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000  # drawn, not empty
