"""The command line: `sylvan --setting NAME --method NAME [options of both]`, split by what each
part does: `main` (the command, `--resume`, `--summarize`, the exit statuses), `parsing` (the
parser built from the setting's and method's dataclasses), `config_files` (YAML configurations),
`plugins` (files, modules and installed packages that add methods and settings), `listing`
(`--list` and the general help). The names a script or test uses are importable from here."""

from sylvan.cli.config_files import CONFIG_KEYS, check_config_keys, load_config
from sylvan.cli.listing import general_help, methods_table, settings_tree, summary
from sylvan.cli.main import console, main, resume, run
from sylvan.cli.parsing import build_parser, option_names, parse_options
from sylvan.cli.plugins import failure_site, load_plugins

__all__ = [
    "CONFIG_KEYS", "build_parser", "check_config_keys", "console", "failure_site", "general_help", "load_config",
    "load_plugins", "main", "methods_table", "option_names", "parse_options", "resume", "run", "settings_tree",
    "summary",
]
