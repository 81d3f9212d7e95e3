"""`sciml klue train`: the KLUE digit benchmarks from the command line (tiny sizes: the wiring, not the
accuracy, which tests/symbolic/test_klue.py and experiments/klue_digits.py cover)."""

import json

import pytest

from sciml import cli

pytest.importorskip("sklearn")

PNG = b"\x89PNG\r\n\x1a\n"


def _train(*args):
    return cli.main(["klue", "train", *args])


def test_digit_sum_json_out_and_summary(tmp_path, capsys):
    assert _train("--task", "digit-sum", "--encoding", "plain", "--pairs", "32", "--steps", "10",
                  "--restarts", "2", "--test-pairs", "20", "--json", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    data = json.loads(out)  # exactly one JSON object on stdout
    assert {"task", "encoding", "seed", "pairs", "steps", "restarts", "select_after", "accuracies",
            "collapsed", "final_loss", "restart_losses", "seconds"} <= data.keys()
    assert (data["task"], data["encoding"], data["seed"], data["pairs"], data["steps"]) == (
        "digit-sum", "plain", 0, 32, 10)
    assert (data["restarts"], len(data["restart_losses"]), data["select_after"]) == (2, 2, None)
    assert 0 <= data["accuracies"]["sum"] <= 1 and data["seconds"] > 0
    # the plain network has no latent digits: null, not NaN (which is not JSON)
    assert data["accuracies"]["digit"] is None and data["collapsed"] is None
    assert json.loads((tmp_path / "result.json").read_text()) == data
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG
    # the same run without --json: a readable summary (compiled already)
    assert _train("--task", "digit-sum", "--encoding", "plain", "--pairs", "32", "--steps", "10",
                  "--restarts", "2", "--test-pairs", "20") == 0
    out = capsys.readouterr().out
    assert "digit-sum, plain encoding (seed 0)" in out and "sum acc" in out
    assert "n/a (no digit classifier)" in out


@pytest.mark.slow  # ~7 s: compiling the LTN loss
def test_digit_sum_ltn_selects_after(capsys):
    assert _train("--task", "digit-sum", "--encoding", "ltn", "--pairs", "64", "--steps", "20", "--restarts",
                  "2", "--select-after", "10", "--test-pairs", "50", "--seed", "1", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["encoding"], data["seed"], data["steps"]) == ("ltn", 1, 20)
    assert (data["restarts"], len(data["restart_losses"]), data["select_after"]) == (2, 2, 10)
    assert 0 <= data["accuracies"]["digit"] <= 1 and isinstance(data["collapsed"], bool)


@pytest.mark.slow  # ~5 s: a training compile and the robustness evaluation
def test_concepts_baseline_json(capsys):
    assert _train("--task", "concepts", "--method", "baseline", "--steps", "5", "--seed", "2", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["task"], data["method"], data["seed"], data["label_noise"]) == ("concepts", "baseline", 2, 0)
    acc = data["accuracies"]
    assert {"clean", "noise", "shift", "occlusion", "hardest20"} <= acc.keys() and "purity" not in acc
    assert all(0 <= v <= 1 for v in acc.values())
    assert sorted(d for pair in data["hidden_pairs"] for d in pair) == list(range(10))


@pytest.mark.slow  # ~15 s: compiling the DKU's training loop
def test_concepts_klue_json_and_rules(tmp_path, capsys):
    assert _train("--task", "concepts", "--steps", "20", "--seed", "2", "--label-noise", "0.1", "--json",
                  "--out", str(tmp_path)) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["method"], data["label_noise"]) == ("klue", 0.1)
    assert 0 <= data["accuracies"]["purity"] <= 1 and len(data["concept_classes"]) == 10
    assert "c0" in (tmp_path / "rules.txt").read_text()
    assert json.loads((tmp_path / "result.json").read_text()) == data


@pytest.mark.parametrize(
    "args,message",
    [
        (["--task", "digit-product"], "invalid choice: 'digit-product'"),
        ([], "the following arguments are required: --task"),
        (["--task", "digit-sum", "--encoding", "fuzzy"], "invalid choice: 'fuzzy'"),
        (["--task", "digit-sum", "--pairs", "0"], "expected a positive int, got '0'"),
        (["--task", "digit-sum", "--seed", "-1"], "expected an int >= 0"),
        (["--task", "concepts", "--label-noise", "1.5"], "expected a number in [0, 1)"),
        (["--task", "concepts", "--method", "dku"], "invalid choice: 'dku'"),
        (["--task", "digit-sum", "--select-after", "x"], "expected a positive int, got 'x'"),
    ],
)
def test_bad_options_are_argparse_errors(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        _train(*args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_options_of_the_other_task_are_rejected():
    with pytest.raises(SystemExit, match="apply to --task digit-sum"):
        _train("--task", "concepts", "--encoding", "ltn")
    with pytest.raises(SystemExit, match="apply to --task concepts"):
        _train("--task", "digit-sum", "--method", "klue")


def test_library_errors_become_messages():
    with pytest.raises(SystemExit, match=r"sciml klue train: .*`select_after` must be None or an int in \[1, "
                       r"steps=10\]"):
        _train("--task", "digit-sum", "--steps", "10", "--select-after", "20")


def test_help_lists_klue(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "klue" in capsys.readouterr().out
