"""`sciml ct simulate | train | reconstruct` on tiny sizes: files written, metrics JSON, errors."""

import json

import jax
import numpy as np
import pytest

from sciml import cli, ct, nn
from sciml import diffusion as dm


def test_simulate_then_reconstruct(tmp_path, capsys):
    data = tmp_path / "data"
    assert cli.main(["ct", "simulate", "--size", "16", "--views", "8", "--phantom", "shepp-logan",
                     "--out", str(data)]) == 0
    assert (data / "geometry.json").is_file() and (data / "truth.npy").is_file()
    out = tmp_path / "rec"
    assert cli.main(["ct", "reconstruct", "--data", str(data), "--method", "tv", "--iterations", "50",
                     "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["views"] == 8 and result["psnr_tv"] > result["psnr_fbp"]  # TV beats FBP at 8 views
    assert {p.name for p in out.glob("*.png")} == {"truth.png", "fbp.png", "tv.png"}


@pytest.mark.slow  # ~25 s; the CLI path is covered by test_simulate_then_reconstruct
def test_reconstruct_with_a_diffusion_model(tmp_path, capsys):
    net = nn.UNet(3, 1, channels=(8, 16), groups=4, key=jax.random.key(0))
    model = dm.Denoiser(net, dm.VP(), channels=1, cond_channels=1)
    path = dm.save_denoiser(tmp_path / "m.eqx", model, metadata={"image_shape": [16, 16]})
    out = tmp_path / "rec"
    assert cli.main(["ct", "reconstruct", "--size", "16", "--views", "8", "--method", "cdpa", "--model",
                     str(path), "--samples", "2", "--steps", "2", "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert {"psnr_cdpa", "ssim_cdpa", "residual", "std_error_correlation", "coverage_2std"} <= set(result)
    assert (out / "std.png").is_file()
    # a model for another image size is refused with a clear message
    with pytest.raises(SystemExit, match="trained on"):
        cli.main(["ct", "reconstruct", "--size", "32", "--views", "8", "--method", "cdpa",
                  "--model", str(path), "--out", str(out)])


@pytest.mark.slow
def test_train_writes_a_loadable_model(tmp_path, capsys):
    path = tmp_path / "m.eqx"
    assert cli.main(["ct", "train", "--size", "16", "--train-views", "4,8", "--steps", "3",
                     "--batch-size", "2", "--pool", "4", "--channels", "8,16", "--no-progress",
                     "--out", str(path)]) == 0
    model, meta = dm.load_denoiser(path, image_shape=(16, 16))
    assert meta["steps"] == 3 and meta["task"]["views"] == [4, 8] and model.cond_channels == 1


def test_missing_data_folder_is_named(tmp_path):
    with pytest.raises(SystemExit, match="no folder at"):
        cli.main(["ct", "reconstruct", "--data", str(tmp_path / "nothing"), "--method", "fbp",
                  "--out", str(tmp_path / "o")])


def test_bad_options_exit_with_a_message(tmp_path):
    # user errors end in "sciml ct <verb>: ..." (no traceback), and an explicit 0 is not the default
    with pytest.raises(SystemExit, match=r"sciml ct train: `views` must be a positive int, got 0"):
        cli.main(["ct", "train", "--size", "8", "--train-views", "0,4", "--out", str(tmp_path / "m.eqx")])
    g = ct.parallel_beam(np.linspace(0, np.pi, 4, endpoint=False), 12, (8, 8))
    data = ct.save_projections(tmp_path / "data", np.ones(g.sinogram_shape, np.float32), g)
    with pytest.raises(SystemExit, match=r"`iterations` must be a positive int, got 0"):
        cli.main(["ct", "reconstruct", "--data", str(data), "--method", "cgls", "--iterations", "0",
                  "--out", str(tmp_path / "o")])
