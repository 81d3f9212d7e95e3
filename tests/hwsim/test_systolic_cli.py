"""``sciml hwsim systolic | sweep`` run in-process on a small topology."""

import csv

import numpy as np
import pytest

from hwsim import systolic
from sciml import cli

from .make_scalesim_reference import CONV_HEADER

CFG = """[general]
run_name = tiny
[architecture_presets]
ArrayHeight: 8
ArrayWidth: 4
IfmapSramSzkB: 64
FilterSramSzkB: 64
OfmapSramSzkB: 64
Bandwidth : 10
Dataflow : ws
[run_presets]
InterfaceBandwidth: CALC
"""
ROWS = ["c1, 10, 10, 3, 3, 4, 6, 1,", "c2, 9, 9, 2, 2, 3, 5, 2,"]

# the column names SCALE-Sim 3.0.0 writes (scalesim/simulator.py, generate_reports, dense)
SCALESIM_HEADERS = {
    "COMPUTE_REPORT.csv": ["LayerID", "Total Cycles (incl. prefetch)", "Total Cycles", "Stall Cycles",
                           "Overall Util %", "Mapping Efficiency %", "Compute Util %"],
    "BANDWIDTH_REPORT.csv": ["LayerID", "Avg IFMAP SRAM BW", "Avg FILTER SRAM BW", "Avg OFMAP SRAM BW",
                             "Avg IFMAP DRAM BW", "Avg FILTER DRAM BW", "Avg OFMAP DRAM BW"],
    "DETAILED_ACCESS_REPORT.csv": ["LayerID"] + [
        f"{mem} {op} {what}" for mem in ("SRAM", "DRAM") for op in ("IFMAP", "Filter", "OFMAP")
        for what in ("Start Cycle", "Stop Cycle", "Writes" if op == "OFMAP" else "Reads")],
}


def _read(path):
    with open(path) as f:
        rows = [[x.strip() for x in r] for r in csv.reader(f)]
    return rows[0][:-1], [r[:-1] for r in rows[1:]]  # SCALE-Sim ends every line with a comma


@pytest.fixture
def files(tmp_path):
    (tmp_path / "run.cfg").write_text(CFG)
    (tmp_path / "net.csv").write_text("\n".join([CONV_HEADER, *ROWS]) + "\n")
    return tmp_path


def test_systolic_writes_scalesim_reports(files, capsys):
    assert cli.main(["hwsim", "systolic", "-c", str(files / "run.cfg"), "-t", str(files / "net.csv"),
                     "-o", str(files / "out")]) == 0
    printed = capsys.readouterr().out
    assert "c1" in printed and "total cycles" in printed
    reports = {name: _read(files / "out" / "tiny" / name) for name in SCALESIM_HEADERS}
    for name, header in SCALESIM_HEADERS.items():
        assert reports[name][0] == header, name
        assert [r[0] for r in reports[name][1]] == ["0", "1"]
    text = "\n".join([CONV_HEADER, *ROWS])
    r = systolic.simulate(systolic.parse_topology(text), systolic.SystolicArray(8, 4), dataflow="ws",
                          compat=True, memory=systolic.Memory(64, 64, 64))
    compute = np.array(reports["COMPUTE_REPORT.csv"][1], float)
    detail = np.array(reports["DETAILED_ACCESS_REPORT.csv"][1], float)
    assert compute[:, 2].tolist() == np.asarray(r.memory.cycles).tolist() == np.asarray(r.cycles).tolist()
    assert compute[:, 3].tolist() == [0, 0]
    np.testing.assert_allclose(compute[:, 5], 100 * np.asarray(r.mapping_efficiency), rtol=1e-6)
    assert detail[:, 3].tolist() == np.asarray(r.ifmap_reads).tolist()
    assert detail[:, 12].tolist() == np.asarray(r.memory.ifmap_dram_reads).tolist()
    assert detail[:, 15].tolist() == np.asarray(r.memory.filter_dram_reads).tolist()
    assert detail[:, 18].tolist() == np.asarray(r.memory.ofmap_dram_writes).tolist()


@pytest.mark.slow  # 14 s; the CLI's report path is covered by test_systolic_writes_scalesim_reports
def test_sweep_grid_and_sparsity_option(files, capsys):
    out = files / "sweep.csv"
    assert cli.main(["hwsim", "sweep", "-t", str(files / "net.csv"), "--arrays", "8x8,4x32",
                     "--dataflows", "os,is", "-o", str(out)]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [(r["array_rows"], r["array_cols"], r["dataflow"]) for r in rows] == [
        ("8", "8", "os"), ("4", "32", "os"), ("8", "8", "is"), ("4", "32", "is")]
    topo = systolic.parse_topology("\n".join([CONV_HEADER, *ROWS]))
    ref = systolic.simulate(topo, systolic.SystolicArray(4, 32), dataflow="is", compat=True)
    assert int(rows[3]["total_cycles"]) == int(np.asarray(ref.cycles).sum())
    with pytest.raises(SystemExit, match="not modelled yet"):
        cli.main(["hwsim", "sweep", "-t", str(files / "net.csv"), "--sparsity", "2:4", "-o", str(out)])


def test_bad_dataflows_and_model_errors_exit_cleanly(files, capsys):
    """A bad ``--dataflows`` entry is an argparse error before anything runs; a config the memory model
    rejects, or counts past int32, end with a one-line message instead of a traceback."""
    out = str(files / "sweep.csv")
    with pytest.raises(SystemExit):
        cli.main(["hwsim", "sweep", "-t", str(files / "net.csv"), "--dataflows", "os,xs", "-o", out])
    assert "--dataflows: expected dataflows among is, os, ws" in capsys.readouterr().err
    (files / "user.cfg").write_text(CFG.replace("CALC", "USER").replace("Bandwidth : 10\n", ""))
    with pytest.raises(SystemExit, match="sciml hwsim systolic: InterfaceBandwidth is USER"):
        cli.main(["hwsim", "systolic", "-c", str(files / "user.cfg"), "-t", str(files / "net.csv"),
                  "-o", str(files / "out")])
    (files / "big.csv").write_text(CONV_HEADER + "\nbig, 4000, 4000, 3, 3, 64, 4, 1,\n")
    with pytest.raises(SystemExit, match="overflow int32.*JAX_ENABLE_X64=1"):
        cli.main(["hwsim", "systolic", "-c", str(files / "run.cfg"), "-t", str(files / "big.csv"),
                  "-o", str(files / "out")])
