"""The `sciml` command line: --help, info, demo."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from sciml import cli


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "info" in out and "demo" in out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "usage: sciml" in capsys.readouterr().out


def test_info_json(capsys):
    assert cli.main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["precision"] == "float32"
    assert data["versions"]["jax"] and len(data["devices"]) == 4


def test_demo_prints_table_and_writes_png(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--steps", "300", "--no-progress",
                     "--only", "sciml"]) == 0
    out = capsys.readouterr().out
    assert "relative L2 error" in out and "system" in out.splitlines()[0]
    rows = json.loads((tmp_path / "results.json").read_text())
    err = next(r for r in rows if r["metric"] == "relative L2 error")
    assert 0 < err["value"] < 0.2  # 300 Adam steps on a smooth 1-D function
    png = tmp_path / "fit_mlp.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_rejects_unknown_system(tmp_path):
    with pytest.raises(SystemExit, match="--only must name systems"):
        cli.main(["demo", "--out", str(tmp_path), "--only", "nope"])


def test_console_script_is_installed():
    exe = shutil.which("sciml", path=str(pathlib.Path(sys.executable).parent))
    assert exe is not None, "the `sciml` console script is not installed next to the interpreter"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    res = subprocess.run([exe, "info"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "precision  float32" in res.stdout
