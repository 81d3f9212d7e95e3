"""SCALE-Sim's ``.cfg`` files (INI): the field names and defaults of ``scalesim.scale_config`` (v3.0.0).

A SCALE-Sim config looks like::

    [general]
    run_name = scale_example_run_32x32_os

    [architecture_presets]
    ArrayHeight:    32
    ArrayWidth:     32
    IfmapSramSzkB:  64
    FilterSramSzkB: 64
    OfmapSramSzkB:  64
    IfmapOffset:    0
    FilterOffset:   10000000
    OfmapOffset:    20000000
    Bandwidth : 10
    Dataflow : os
    ReadRequestBuffer: 512
    WriteRequestBuffer: 512

    [layout]
    IfmapCustomLayout: False
    ...

    [sparsity]
    SparsitySupport : false
    ...

    [run_presets]
    InterfaceBandwidth: CALC
    UseRamulatorTrace: False
"""

from __future__ import annotations

import configparser
import os

import equinox as eqx

from ._dataflow import DATAFLOWS, AbstractDataflow, SystolicArray


class ScaleSimConfig(eqx.Module):
    """The contents of a SCALE-Sim ``.cfg`` file; build with :func:`read_config`.

    Field defaults are those of ``scalesim.scale_config.scale_config()``. ``array`` and ``dataflow``
    enter the cycle model, ``memory`` the SRAM/DRAM model.

    Attributes:
        run_name: ``[general] run_name``.
        array_rows, array_cols: ``ArrayHeight``, ``ArrayWidth``.
        ifmap_sram_kb, filter_sram_kb, ofmap_sram_kb: ``IfmapSramSzkB``, ``FilterSramSzkB``,
            ``OfmapSramSzkB``.
        ifmap_offset, filter_offset, ofmap_offset: address offsets of the three operands.
        dataflow_name: ``Dataflow``: ``"os"``, ``"ws"`` or ``"is"``.
        bandwidths: ``Bandwidth`` (words/cycle; read only in ``USER`` mode by SCALE-Sim).
        read_request_buffer, write_request_buffer: ``ReadRequestBuffer``, ``WriteRequestBuffer``.
        interface_bandwidth: ``[run_presets] InterfaceBandwidth``: ``"CALC"`` or ``"USER"``.
        use_ramulator_trace: ``UseRamulatorTrace``.
        ifmap_custom_layout, filter_custom_layout, ifmap_sram_bank_bandwidth, ifmap_sram_bank_num,
        ifmap_sram_bank_port, filter_sram_bank_bandwidth, filter_sram_bank_num,
        filter_sram_bank_port: the ``[layout]`` section.
        sparsity_support, sparse_rep, optimized_mapping, block_size, random_seed: ``[sparsity]``.
        topology_path: ``[network_presets] TopologyCsvLoc`` (without its quotes), or ``""``.
    """

    run_name: str = eqx.field(default="scale_run", static=True)
    array_rows: int = eqx.field(default=4, static=True)
    array_cols: int = eqx.field(default=4, static=True)
    ifmap_sram_kb: int = eqx.field(default=256, static=True)
    filter_sram_kb: int = eqx.field(default=256, static=True)
    ofmap_sram_kb: int = eqx.field(default=128, static=True)
    ifmap_offset: int = eqx.field(default=0, static=True)
    filter_offset: int = eqx.field(default=10000000, static=True)
    ofmap_offset: int = eqx.field(default=20000000, static=True)
    dataflow_name: str = eqx.field(default="ws", static=True)
    bandwidths: tuple[int, ...] = eqx.field(default=(), static=True)
    read_request_buffer: int = eqx.field(default=60, static=True)
    write_request_buffer: int = eqx.field(default=60, static=True)
    interface_bandwidth: str = eqx.field(default="CALC", static=True)
    use_ramulator_trace: bool = eqx.field(default=False, static=True)
    ifmap_custom_layout: bool = eqx.field(default=False, static=True)
    filter_custom_layout: bool = eqx.field(default=False, static=True)
    ifmap_sram_bank_bandwidth: int = eqx.field(default=10, static=True)
    ifmap_sram_bank_num: int = eqx.field(default=10, static=True)
    ifmap_sram_bank_port: int = eqx.field(default=2, static=True)
    filter_sram_bank_bandwidth: int = eqx.field(default=10, static=True)
    filter_sram_bank_num: int = eqx.field(default=10, static=True)
    filter_sram_bank_port: int = eqx.field(default=2, static=True)
    sparsity_support: bool = eqx.field(default=False, static=True)
    sparse_rep: str = eqx.field(default="", static=True)
    optimized_mapping: bool = eqx.field(default=False, static=True)
    block_size: int = eqx.field(default=4, static=True)
    random_seed: int = eqx.field(default=40, static=True)
    topology_path: str = eqx.field(default="", static=True)

    def __check_init__(self):
        for f in ("array_rows", "array_cols", "ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{f}` must be a positive int, got {v!r}")
        if self.dataflow_name not in DATAFLOWS:
            raise ValueError(f"`dataflow_name` must be one of {sorted(DATAFLOWS)}, got "
                             f"{self.dataflow_name!r}")
        if self.interface_bandwidth not in ("CALC", "USER"):
            raise ValueError(f"`interface_bandwidth` must be 'CALC' or 'USER', got "
                             f"{self.interface_bandwidth!r}")

    @property
    def array(self) -> SystolicArray:
        """The PE array, ``ArrayHeight x ArrayWidth``."""
        return SystolicArray(self.array_rows, self.array_cols)

    @property
    def memory(self):
        """The :class:`Memory` SCALE-Sim simulates: the three SRAM sizes and, in ``USER`` mode, the
        DRAM bandwidths it uses (ifmap and filter from the ``[layout]`` bank bandwidths, ofmap from
        the first ``Bandwidth``; its word size is one byte)."""
        from ._memory import Memory

        kw = {}
        if self.interface_bandwidth == "USER":
            if not self.bandwidths:
                raise ValueError("InterfaceBandwidth is USER but the config has no `Bandwidth`")
            kw = dict(ifmap_bandwidth=self.ifmap_sram_bank_bandwidth,
                      filter_bandwidth=self.filter_sram_bank_bandwidth, ofmap_bandwidth=self.bandwidths[0])
        return Memory(self.ifmap_sram_kb, self.filter_sram_kb, self.ofmap_sram_kb, **kw)

    @property
    def dataflow(self) -> AbstractDataflow:
        """The dataflow object named by ``Dataflow``."""
        return DATAFLOWS[self.dataflow_name]()


# (section, key, field, kind); configparser keys are case-insensitive, as in SCALE-Sim.
_FIELDS = (
    ("general", "run_name", "run_name", str),
    ("architecture_presets", "ArrayHeight", "array_rows", int),
    ("architecture_presets", "ArrayWidth", "array_cols", int),
    ("architecture_presets", "IfmapSramSzkB", "ifmap_sram_kb", int),
    ("architecture_presets", "FilterSramSzkB", "filter_sram_kb", int),
    ("architecture_presets", "OfmapSramSzkB", "ofmap_sram_kb", int),
    ("architecture_presets", "IfmapOffset", "ifmap_offset", int),
    ("architecture_presets", "FilterOffset", "filter_offset", int),
    ("architecture_presets", "OfmapOffset", "ofmap_offset", int),
    ("architecture_presets", "Dataflow", "dataflow_name", str),
    ("architecture_presets", "ReadRequestBuffer", "read_request_buffer", int),
    ("architecture_presets", "WriteRequestBuffer", "write_request_buffer", int),
    ("run_presets", "InterfaceBandwidth", "interface_bandwidth", str),
    ("run_presets", "UseRamulatorTrace", "use_ramulator_trace", bool),
    ("layout", "IfmapCustomLayout", "ifmap_custom_layout", bool),
    ("layout", "FilterCustomLayout", "filter_custom_layout", bool),
    ("layout", "IfmapSRAMBankBandwidth", "ifmap_sram_bank_bandwidth", int),
    ("layout", "IfmapSRAMBankNum", "ifmap_sram_bank_num", int),
    ("layout", "IfmapSRAMBankPort", "ifmap_sram_bank_port", int),
    ("layout", "FilterSRAMBankBandwidth", "filter_sram_bank_bandwidth", int),
    ("layout", "FilterSRAMBankNum", "filter_sram_bank_num", int),
    ("layout", "FilterSRAMBankPort", "filter_sram_bank_port", int),
    ("sparsity", "SparsitySupport", "sparsity_support", bool),
    ("sparsity", "SparseRep", "sparse_rep", str),
    ("sparsity", "OptimizedMapping", "optimized_mapping", bool),
    ("sparsity", "BlockSize", "block_size", int),
    ("sparsity", "RandomNumberGeneratorSeed", "random_seed", int),
)

_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
          "on": True, "off": False}


def _convert(raw: str, kind, where: str):
    value = raw.strip()
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{where} must be an integer, got {raw!r}") from None
    if kind is bool:
        if value.lower() not in _BOOLS:
            raise ValueError(f"{where} must be True or False, got {raw!r}")
        return _BOOLS[value.lower()]
    return value


def parse_config(text: str, *, source: str = "<string>") -> ScaleSimConfig:
    """Parse the text of a SCALE-Sim ``.cfg`` file; see :func:`read_config`."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source=source)
    except configparser.Error as e:
        raise ValueError(f"{source}: not a valid INI file: {e}") from None
    values: dict = {}
    for section, key, field, kind in _FIELDS:
        if parser.has_option(section, key):
            where = f"{source}: [{section}] {key}"
            values[field] = _convert(parser.get(section, key), kind, where)
    if "dataflow_name" in values:
        df = values["dataflow_name"].lower()
        if df not in DATAFLOWS:
            raise ValueError(f"{source}: [architecture_presets] Dataflow must be one of "
                             f"{sorted(DATAFLOWS)}, got {values['dataflow_name']!r}")
        values["dataflow_name"] = df
    if "interface_bandwidth" in values:
        mode = values["interface_bandwidth"].upper()
        if mode not in ("CALC", "USER"):
            raise ValueError(f"{source}: [run_presets] InterfaceBandwidth must be CALC or USER, got "
                             f"{values['interface_bandwidth']!r}")
        values["interface_bandwidth"] = mode
    if parser.has_option("architecture_presets", "Bandwidth"):
        raw = parser.get("architecture_presets", "Bandwidth")
        where = f"{source}: [architecture_presets] Bandwidth"
        values["bandwidths"] = tuple(_convert(x, int, where) for x in raw.split(","))
    if parser.has_option("network_presets", "TopologyCsvLoc"):
        values["topology_path"] = parser.get("network_presets", "TopologyCsvLoc").strip().strip('"')
    for f in ("array_rows", "array_cols", "ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb"):
        if f in values and values[f] < 1:
            key = next(k for s, k, fld, _ in _FIELDS if fld == f)
            raise ValueError(f"{source}: [architecture_presets] {key} must be a positive int, got "
                             f"{values[f]}")
    return ScaleSimConfig(**values)


def read_config(path: str | os.PathLike) -> ScaleSimConfig:
    """Read a SCALE-Sim ``.cfg`` file.

    Reads the keys of ``scalesim.scale_config.read_conf_file`` (v3.0.0), with its defaults for any that
    are missing. Differences from SCALE-Sim, all on the lenient or the loud side: the ``[layout]``,
    ``[sparsity]`` and ``[run_presets]`` sections may be left out (SCALE-Sim 3.0.0 stops with a
    ``NoSectionError``, even on the ``configs/scale.cfg`` of its own repository); ``Dataflow`` is
    case-insensitive and an unknown value is an error (SCALE-Sim warns and silently simulates output
    stationary); ``TopologyCsvLoc`` is read from ``[network_presets]``, where its writer puts it
    (its reader looks it up in ``[architecture_presets]``); ``MemoryBanks``, which SCALE-Sim ignores,
    is ignored.

    Args:
        path: the ``.cfg`` file.

    Returns:
        A :class:`ScaleSimConfig`; ``cfg.array`` and ``cfg.dataflow`` go to :func:`simulate`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a malformed file or value (the message names the section and key).

    Example:
        >>> import pathlib, tempfile
        >>> from hwsim import systolic
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "tpu.cfg"
        >>> _ = p.write_text("[general]\\nrun_name = tpu\\n[architecture_presets]\\nArrayHeight: 256\\n"
        ...                  "ArrayWidth: 256\\nDataflow : ws\\n")
        >>> cfg = systolic.read_config(p)
        >>> cfg.array_rows, cfg.array_cols, cfg.dataflow
        (256, 256, WeightStationary())
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"`path`: config file {p!r} does not exist")
    with open(p, encoding="utf-8") as f:
        text = f.read()
    return parse_config(text, source=p)
