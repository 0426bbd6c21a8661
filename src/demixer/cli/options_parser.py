"""Builds argparse flags from an options dataclass (:class:`~demixer.options.SeparationOptions`,
:class:`~demixer.cleanup.options.CleanOptions`): the one source of truth for flags, API and form fields."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any, TypeVar, cast

from ..options import OptionFields, SeparationOptions

log = logging.getLogger("demixer")
_Options = TypeVar("_Options", bound=OptionFields)


OUTPUT_FIELDS = (
    "out",
    "filename",
    "flac",
    "mp3",
    "mp3_bitrate",
    "int24",
    "float32",
    "clip_mode",
    "overwrite",
    "report",
    "provenance",
)


def add_option_flags(
    parser: argparse.ArgumentParser, skip: tuple[str, ...] = (), cls: type = SeparationOptions
) -> None:
    """Add one flag per field of the options dataclass ``cls`` (defaults shown are the dataclass's)."""
    defaults = cls()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta = dict(f.metadata)
        flags = meta.pop("flags")
        help_text = meta.pop("help")
        shortcuts = meta.pop("shortcuts", {})
        default = getattr(defaults, f.name)
        group_name = meta.pop("group", "output" if f.name in OUTPUT_FIELDS else "separation")
        group = groups.setdefault(group_name, parser.add_argument_group(group_name))
        if meta.get("action") != "store_true" and default is not None:
            help_text += f" (default: {default})"
        group.add_argument(*flags, dest=f.name, help=help_text, default=argparse.SUPPRESS, **meta)
        for flag, value in shortcuts.items():  # e.g. --fast for --speed fast
            group.add_argument(
                flag,
                dest=f.name,
                action="store_const",
                const=value,
                default=argparse.SUPPRESS,
                help=f"= {flags[-1]} {value}",
            )


def given_options(args: argparse.Namespace, cls: type[_Options]) -> _Options:
    """The options dataclass ``cls`` for the flags given (unset flags keep the dataclass defaults)."""
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}
    return cls.from_mapping({k: v for k, v in vars(args).items() if k in names})


def options_from_args(args: argparse.Namespace) -> SeparationOptions:
    """The SeparationOptions for the flags given, with a warning per value above the service's limits."""
    options = given_options(args, SeparationOptions)
    for message in options.over_limits():  # allowed here, refused by the service
        log.warning("warning: %s (the service refuses it; this may take very long or much memory)", message)
    return options
