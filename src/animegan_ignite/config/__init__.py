"""Every setting of a training run, declared once: type, default, rule, help text and group.

``Config`` is the one declaration. ``animegan-train``'s flags and ``--help`` are generated from
it, config files and a resumed run's ``config.json`` are checked against it, and a ``Config``
made in code resolves its defaults exactly as the command line does:

- a *recipe* (``--recipe``) sets how the networks are trained (loss, rates, augmentation, EMA);
  settings marked ``recipe=True`` take the recipe's value unless given;
- the *synthetic demo* (no ``--data-dir``) has a CPU-sized schedule: settings with a ``demo=``
  value take it when no data set is given.

Precedence, lowest first: those defaults, a ``--config`` file (YAML or JSON), the flags; a
resumed run starts from its own ``config.json``. No torch here: ``--help`` and every flag or
file error answer before torch is imported.

The parts: rules (how a setting is declared), choices (named choices and recipes), settings
(the Config), saved (a run's config.json read back), cli (the command line and files).
"""

from .choices import (
    ADA_TARGETS,
    DIFFAUGMENT_POLICIES,
    MIN_EVAL,
    OBJECTIVE_HELP,
    OBJECTIVE_NAMES,
    RECIPE_HELP,
    RECIPES,
    SHIFT_FREE_OBJECTIVES,
    TRACKER_MODULES,
)
from .cli import add_setting, build_parser, check_settings, make_config
from .rules import UNSET, ConfigError, flag, shown_value
from .settings import Config, default_of, parse_policy

__all__ = ["ADA_TARGETS", "Config", "ConfigError", "DIFFAUGMENT_POLICIES", "MIN_EVAL",
           "OBJECTIVE_HELP", "OBJECTIVE_NAMES", "RECIPES", "RECIPE_HELP", "SHIFT_FREE_OBJECTIVES",
           "TRACKER_MODULES", "UNSET", "add_setting", "build_parser", "check_settings",
           "default_of", "flag", "make_config", "parse_policy", "shown_value"]
