"""A plain install (no extras) separates; a command whose extra is missing names it in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from demixer.extras import EXTRAS, extra_for_module, missing_modules, require_extra

from .conftest import ROOT

ALL_EXTRA_MODULES = sorted({m for modules in EXTRAS.values() for m in modules})

# Runs the real CLI with every extra's modules made unimportable, as in a plain `pip install demixer`.
PLAIN = """
import importlib.abc, runpy, sys
BLOCKED = set(sys.argv[1].split(","))
class Plain(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Plain())
sys.argv = ["demixer", *sys.argv[2:]]
runpy.run_module("demixer", run_name="__main__")
"""


def plain_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PLAIN, ",".join(ALL_EXTRA_MODULES), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_extra_module_maps_back_to_its_extra():
    for modules in EXTRAS.values():
        for module in modules:
            extra = extra_for_module(f"{module}.sub")
            assert extra is not None and module in EXTRAS[extra]
    assert extra_for_module("numpy") is None


def test_require_extra_names_the_extra(monkeypatch):
    monkeypatch.setattr("demixer.extras._importable", lambda module: module != "uvicorn")
    assert missing_modules("serve") == ["uvicorn"]
    with pytest.raises(ImportError, match=r"pip install 'demixer\[serve\]' \(missing: uvicorn\)"):
        require_extra("serve", "demixer serve")


def test_a_missing_module_deep_in_a_command_names_its_extra(monkeypatch, capsys):
    from demixer.cli import env, main

    def needs_matplotlib(args):
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr(env, "run", needs_matplotlib)
    assert main.main(["env"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'demixer[eval]'" in err and "Traceback" not in err


@pytest.mark.slow
def test_plain_install_separates_and_names_missing_extras(tmp_path):
    r = plain_cli("separate", "--example", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "out").rglob("*.wav"))) == 4
    r = plain_cli("models", "list")
    assert r.returncode == 0 and "demixer-4stem" in r.stdout, r.stderr
    for args, extra in (
        (["serve"], "serve"),
        (["train", "-c", ROOT / "configs" / "tiny-test.yaml"], "train"),
        (["data", "synth", "music", "--out", tmp_path / "synth"], "synth"),
        (["evaluate", "-n", "hpss", tmp_path, "-o", tmp_path / "eval"], "eval"),
        (["batch", tmp_path, "--engine", "ray", "-o", tmp_path / "batch"], "ray"),
    ):
        r = plain_cli(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert f"pip install 'demixer[{extra}]'" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert r.stderr.strip().count("\n") == 0, r.stderr
