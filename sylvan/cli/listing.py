"""What the command prints without running anything: the settings tree with the methods that apply
to each (`--list`), the methods table, and the general help."""

from __future__ import annotations

import re

from sylvan.methods import METHODS, applicable_methods
from sylvan.settings import Setting


def settings_tree(root: type[Setting] = Setting) -> list[str]:
    """The tree of settings, one line each (indented under its parent), with the methods that
    apply to each in a column of its own."""

    def rows(setting: type[Setting], depth: int) -> list[tuple[str, str]]:
        label = "    " * depth + (setting.name if depth else "setting (root)")
        found = [(label, ", ".join(applicable_methods(setting)) or "-")]
        for child in sorted(setting.children(), key=lambda s: s.name):
            found += rows(child, depth + 1)
        return found

    tree = rows(root, 0)
    width = max(len(label) for label, _ in tree) + 2
    return [f"{label:<{width}}methods: {methods}" for label, methods in tree]


def summary(cls: type, limit: int = 100) -> str:
    """The opening sentences of `cls`'s docstring that fit in `limit` characters (at least the
    first, cut at a word with "..." if it alone is longer); "" for a class without one (a
    dataclass without a docstring gets its signature as `__doc__`)."""
    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):
        return ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    text = ""
    for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
        if text and len(text) + 1 + len(sentence) > limit:
            break
        text = f"{text} {sentence}".strip()
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + "..."


def target_label(target: type) -> str:
    """A method's target in the methods table: a setting's name, or an assumption both branches
    share, as "<its name> (SL, RL)"."""
    assumption = target.__dict__.get("assumption_name")
    return f"{assumption} (SL, RL)" if assumption else target.name


def methods_table() -> list[str]:
    """One line per registered method: its name, target setting and summary."""
    return [
        f"  {name:<16} targets {target_label(METHODS[name].target_setting):<18} {summary(METHODS[name])}"
        for name in sorted(METHODS)
    ]


def general_help() -> str:
    return "\n".join(
        [
            "usage: sylvan --setting SETTING --method METHOD [options]",
            "",
            "Continual learning as a tree of settings; a method applies to its target setting",
            "and every setting below it. Options of a setting and a method are shown by",
            "  sylvan --setting SETTING --method METHOD --help",
            "",
            "settings (and the methods that apply):",
            *("  " + line for line in settings_tree()),
            "",
            "methods:",
            *methods_table(),
            "",
            "general options:",
            "  --list                 print the settings tree with the applicable methods",
            "  --config_path FILE     load options from a YAML file (e.g. a run's config.yaml)",
            "  --resume RUN_DIR       continue an interrupted run from its last finished task",
            "  --summarize DIR ...    mean ± std over seeds of the runs in results folders",
            "                         (--summary_csv FILE also writes the table as CSV;",
            "                         --pareto FILE.png draws accuracy against compute and memory)",
            "  --plugin FILE_OR_MODULE  import extra methods or settings (repeatable)",
            "  --results_dir DIR      where run folders are written (default: results)",
            "  --loggers NAME ...     where the metrics go: csv (default), tensorboard, wandb",
            "  --wandb_project NAME   log to Weights & Biases",
            "  --version              print the versions of sylvan and its dependencies",
        ]
    )
