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


def test_demo_hwsim_rows(tmp_path, capsys):
    import jax.numpy as jnp

    from hwsim import systolic

    assert cli.main(["demo", "--out", str(tmp_path), "--no-progress", "--only", "hwsim", "--json"]) == 0
    rows = {r["task"]: r for r in json.loads(capsys.readouterr().out)}
    cycles = rows["systolic: ResNet-18, 32x32 array, OS"]["value"]
    ref = systolic.simulate(systolic.load_topology("resnet18"), systolic.SystolicArray(32, 32),
                            dataflow="os", compat=True)
    assert cycles == float(jnp.sum(ref.cycles))
    assert rows["photonic: GoogLeNet, 64 4x4 PTCs, 8x8 vs 1x64 grid"]["value"] > 1.0


@pytest.mark.slow  # ~75 s: digit-sum training, an MCI search and three CT reconstructions
def test_demo_ct_and_symbolic(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--no-progress", "--only", "ct", "symbolic",
                     "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    psnr = {r["task"].split(": ")[-1]: r["value"] for r in rows if r["system"] == "ct"}
    assert psnr["CDPA, 4 samples"] > psnr["FBP"] + 5  # the gate, on one held-out phantom
    sym = [r for r in rows if r["system"] == "symbolic"]
    assert sym[0]["value"] > 0.85 and sym[-1]["value"] < 1e-6  # digit-sum accuracy, MCI extrapolation


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


def test_demo_steps_must_be_positive(capsys):
    # --steps 0 used to be replaced silently by each system's default
    for bad in ("0", "-3", "x"):
        with pytest.raises(SystemExit):
            cli.main(["demo", "--steps", bad])
        assert "--steps: expected a positive int" in capsys.readouterr().err
