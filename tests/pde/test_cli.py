"""`sciml pde list|solve`: output, JSON, and clean one-line errors for configurations a method rejects."""

import json

import pytest

from sciml import cli


def test_list_names_every_problem(capsys):
    from pde.problems import PROBLEMS

    assert cli.main(["pde", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PROBLEMS)


def test_solve_mlp_json_against_the_reference(capsys):
    # multilevel Picard needs no training: a real solve in a second
    assert cli.main(["pde", "solve", "--problem", "heat-paraboloid", "--dim", "3", "--method", "mlp",
                     "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["problem"] == "heat-paraboloid" and out["dim"] == 3 and out["method"] == "mlp"
    # u(0, x) = |x|^2 + 2 d T at x0 = 0.5 * 1, d = 3, T = 1: 0.75 + 6
    assert out["reference"] == pytest.approx(6.75, rel=1e-6)
    assert out["rel_error"] < 0.05


def test_solve_errors_exit_with_one_line():
    with pytest.raises(SystemExit, match="sciml pde solve: .*x0 lies outside HeatParaboloid's box"):
        cli.main(["pde", "solve", "--problem", "heat-paraboloid", "--dim", "2", "--method",
                  "deep-kolmogorov", "--x0", "2", "--steps", "1", "--no-progress"])
    with pytest.raises(SystemExit, match="sciml pde solve: "):
        cli.main(["pde", "solve", "--problem", "nope", "--dim", "2", "--method", "mlp"])
