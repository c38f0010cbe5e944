"""``rvrt compare`` (side-by-side and wipe pictures and videos) and ``rvrt eval --plot``.

Pixels are checked against the sources themselves: a panel pixel must be the source pixel at the
crop position (MATLAB bicubic, :func:`rvrt.data.degradations.imresize`, for a smaller input), so a
shifted crop, a wrong frame, a label drawn over the picture or a misplaced panel shows.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from rvrt.api import create_model
from rvrt.cli import main
from rvrt.data.degradations import imresize
from rvrt.media import open_reader
from rvrt.media.compare import BACKGROUND, LINE, Layout, Source, compose, fit
from rvrt.media.images import read_image, write_png

LR_SIZE = (16, 12)  # W, H
HR_SIZE = (64, 48)


def _noise(rng, w, h):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """lr/ (3 frames 16x12), out/ (3 frames 64x48), gt.png (64x48): random pixels, every frame different."""
    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(7)
    frames = {"lr": [], "out": []}
    for i in range(3):
        for name, (w, h) in (("lr", LR_SIZE), ("out", HR_SIZE)):
            f = _noise(rng, w, h)
            write_png(root / name / f"f{i:02d}.png", f)
            frames[name].append(f)
    gt = _noise(rng, *HR_SIZE)
    write_png(root / "gt.png", gt)
    return root, frames, gt


def _run(capsys, *args) -> tuple[int, str]:
    code = main(["compare", *map(str, args), "--quiet"])
    return code, capsys.readouterr().err


def _panel(image, panel):
    x, y, w, h = panel.box
    return image[y : y + h, x : x + w]


def _expected(source, panel, zoom):
    """The source pixels a panel must show: its source region, zoomed by repeating pixels."""
    sx, sy, sw, sh = panel.source
    region = source[sy : sy + sh, sx : sx + sw]
    return np.repeat(np.repeat(region, zoom, 0), zoom, 1)


def test_side_by_side_panels_show_the_source_pixels_at_the_crop(clips, tmp_path, capsys):
    root, frames, gt = clips
    dest = tmp_path / "c.png"
    code, err = _run(capsys, root / "lr", root / "out", root / "gt.png", "-o", dest,
                     "--frame", 1, "--crop", "9,5,20,14", "--zoom", 3)  # fmt: skip
    assert code == 0, err
    image = read_image(dest)[0]

    lr_up = imresize(frames["lr"][1], 4)  # MATLAB bicubic x4, checked byte-exact elsewhere
    ref = compose([frames["lr"][1], frames["out"][1], gt], ["lr", "out", "gt"], Layout(crop=(9, 5, 20, 14), zoom=3))
    assert np.array_equal(image, ref.image)  # default labels: the folder name / file stem
    strip = ref.strip
    assert strip > 0 and image.shape == (strip + 14 * 3, 3 * 20 * 3 + 2 * 4, 3)
    xs = []
    for panel, source in zip(ref.panels, (lr_up, frames["out"][1], gt)):
        x, y, w, h = panel.box
        assert (y, w, h) == (strip, 60, 42) and panel.source == (9, 5, 20, 14)
        xs.append(x)
        assert np.array_equal(_panel(image, panel), _expected(source, panel, 3))
        # nearest zoom: the top-left pixel of the panel is the source pixel at the crop position
        assert np.array_equal(image[y, x], source[5, 9]) and np.array_equal(image[y + 41, x + 59], source[18, 28])
        assert panel.label_box == (x, 0, w, strip)
    assert xs == [0, 64, 128]  # left to right, 4-pixel gaps
    assert (image[strip:, 60:64] == BACKGROUND).all() and (image[strip:, 124:128] == BACKGROUND).all()
    # another frame would not match: frame selection is real
    assert not np.array_equal(_panel(image, ref.panels[1]), _expected(frames["out"][0], ref.panels[1], 3))


def test_labels_sit_in_the_strip_above_the_pictures(clips, tmp_path, capsys):
    root, frames, gt = clips
    pics = {}
    for labels in (("bicubic", "rvrt", "GT"), ("A", "B", "C")):
        dest = tmp_path / f"{labels[0]}.png"
        code, err = _run(capsys, root / "lr", root / "out", root / "gt.png", "-o", dest, "--labels", *labels)
        assert code == 0, err
        pics[labels] = read_image(dest)[0]
    ref = compose([frames["lr"][0], frames["out"][0], gt], ["bicubic", "rvrt", "GT"])
    strip = ref.strip
    a, b = pics[("bicubic", "rvrt", "GT")], pics[("A", "B", "C")]
    assert np.array_equal(a, ref.image)
    # the pictures are untouched by the text; the strips differ where the texts do
    assert np.array_equal(a[strip:], b[strip:])
    for panel in ref.panels:
        x, _, w, _ = panel.label_box
        assert not np.array_equal(a[:strip, x : x + w], b[:strip, x : x + w])
        text = a[:strip, x : x + w]
        assert (np.abs(text.astype(int) - BACKGROUND).sum(-1) > 200).sum() > 20  # light text on the dark strip


def test_default_labels_are_file_stems_or_folder_names(clips):
    root, _, _ = clips
    assert Source.open(root / "gt.png").label == "gt" and Source.open(root / "gt.png").still
    assert Source.open(root / "out").label == "out" and not Source.open(root / "out").still
    assert Source.open(f"{root / 'lr'}/*.png").label == "lr"


def test_nearest_upscale_repeats_each_low_resolution_pixel(clips, tmp_path, capsys):
    root, frames, gt = clips
    dest = tmp_path / "n.png"
    code, err = _run(capsys, root / "lr", root / "gt.png", "-o", dest, "--upscale", "nearest", "--crop", "4,8,12,8")
    assert code == 0, err
    image = read_image(dest)[0]
    ref = compose([frames["lr"][0], gt], ["lr", "gt"], Layout(crop=(4, 8, 12, 8), upscale="nearest"))
    assert np.array_equal(image, ref.image)
    lr = frames["lr"][0]
    panel = _panel(image, ref.panels[0])
    for j in range(8):
        for i in range(12):
            assert np.array_equal(panel[j, i], lr[(8 + j) // 4, (4 + i) // 4])


def test_wipe_splits_one_picture_at_the_given_position(clips, tmp_path, capsys):
    root, frames, gt = clips
    dest = tmp_path / "w.png"
    code, err = _run(capsys, root / "out", root / "gt.png", "-o", dest, "--wipe", "0.25", "--zoom", 2,
                     "--frame", 2)  # fmt: skip
    assert code == 0, err
    image = read_image(dest)[0]
    out = frames["out"][2]
    ref = compose([out, gt], ["out", "gt"], Layout(wipe=(0.25,), zoom=2))
    assert np.array_equal(image, ref.image)
    strip = ref.strip
    assert image.shape == (strip + 96, 128, 3)
    cut = 16 * 2  # a quarter of the 64-pixel width, zoomed
    left, right = ref.panels
    assert left.box == (0, strip, cut, 96) and left.source == (0, 0, 16, 48)
    assert right.box == (cut + 2, strip, 128 - cut - 2, 96) and right.source == (17, 0, 47, 48)
    assert (image[strip:, cut] == LINE).all()
    assert np.array_equal(image[strip:, :cut], np.repeat(np.repeat(out[:, :16], 2, 0), 2, 1))
    assert np.array_equal(image[strip:, cut + 1 :], np.repeat(np.repeat(gt, 2, 0), 2, 1)[:, cut + 1 :])
    assert np.array_equal(_panel(image, right), _expected(gt, right, 2))


def test_wipe_of_three_has_equal_bands_by_default(clips):
    _, frames, gt = clips
    lr = frames["lr"][0]
    ref = compose([lr, frames["out"][0], gt], list("abc"), Layout(wipe=()))
    boxes = [p.box for p in ref.panels]
    assert [b[0] for b in boxes] == [0, 22, 44] and [b[2] for b in boxes] == [21, 21, 20]
    sources = (imresize(lr, 4), frames["out"][0], gt)
    for panel, source in zip(ref.panels, sources):
        assert np.array_equal(_panel(ref.image, panel), _expected(source, panel, 1))
    with pytest.raises(ValueError, match="needs 2 position"):
        compose([lr, frames["out"][0], gt], list("abc"), Layout(wipe=(0.5,)))


def test_mismatched_sizes_are_brought_to_the_largest(tmp_path, capsys):
    rng = np.random.default_rng(3)
    small, big = _noise(rng, 17, 11), _noise(rng, 60, 50)  # other aspect ratio, no whole factor
    write_png(tmp_path / "small.png", small)
    write_png(tmp_path / "big.png", big)
    dest = tmp_path / "m.png"
    code, err = _run(capsys, tmp_path / "small.png", tmp_path / "big.png", "-o", dest)
    assert code == 0, err
    image = read_image(dest)[0]
    ref = compose([small, big], ["small", "big"])
    assert np.array_equal(image, ref.image) and ref.size == (60, 50)
    up = imresize(small, (50 / 11, 60 / 17))[:50, :60]
    assert np.array_equal(_panel(image, ref.panels[0]), up)
    assert np.array_equal(_panel(image, ref.panels[1]), big)
    # ceil(177 * (704 / 177)) is 705 in floating point: the frame is still exactly 704 wide
    assert fit(np.zeros((144, 177, 3), np.uint8), 704, 576).shape == (576, 704, 3)


def test_16_bit_frames_are_rounded_to_8_bits(tmp_path):
    deep = np.array([[[0, 128, 129], [385, 386, 65535]]], np.uint16)  # / 257: 0.498, 0.502, 1.498, 1.502
    eight = np.zeros((1, 2, 3), np.uint8)
    ref = compose([deep, eight], ["16", "8"])
    assert _panel(ref.image, ref.panels[0]).tolist() == [[[0, 0, 1], [1, 2, 255]]]


def _flat_clip(folder, values, size=(64, 48)):
    for i, v in enumerate(values):
        write_png(folder / f"{i:03d}.png", np.full((size[1], size[0], 3), v, np.uint8))


def test_video_output_has_one_frame_per_compared_frame(tmp_path, capsys):
    # flat frames, a different grey each, so the decoded (lossy) video still tells which frame it shows
    _flat_clip(tmp_path / "a", [20, 60, 100, 140, 180])
    _flat_clip(tmp_path / "b", [30, 90, 150, 210], size=(32, 24))
    write_png(tmp_path / "still.png", np.full((48, 64, 3), 240, np.uint8))
    dest = tmp_path / "v.mp4"
    code, err = _run(capsys, tmp_path / "a", tmp_path / "b", tmp_path / "still.png", "-o", dest, "--frame", 1)
    assert code == 0, err
    ref = compose([np.zeros((48, 64, 3), np.uint8)] * 3, ["a", "b", "still"])
    with open_reader(dest) as reader:
        decoded = [f.data for f in reader]
    assert len(decoded) == 3  # frames 1..3: b has 4
    assert decoded[0].shape == ref.image.shape
    for k, frame in enumerate(decoded):
        means = [_panel(frame, p)[4:-4, 4:-4].mean() for p in ref.panels]
        assert np.allclose(means, [[60, 100, 140][k], [90, 150, 210][k], 240], atol=3), (k, means)
    code, err = _run(capsys, tmp_path / "a", tmp_path / "b", "-o", tmp_path / "two.mkv", "--frames", 2)
    assert code == 0, err
    with open_reader(tmp_path / "two.mkv") as reader:
        assert sum(1 for _ in reader) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["{a}", "-o", "{o}"], "two or three inputs"),
        (["{a}", "{a}", "{a}", "{a}", "-o", "{o}"], "two or three inputs"),
        (["{a}", "{missing}", "-o", "{o}"], "not found"),
        (["{a}", "{b}", "-o", "{o}", "--crop", "60,40,10,10"], "reaches past the 64x48"),
        (["{a}", "{b}", "-o", "{o}", "--frame", "9"], "frame 9 does not exist"),
        (["{a}", "{b}", "-o", "{o}", "--crop", "1,2,3"], "x,y,w,h"),
        (["{a}", "{b}", "-o", "{o}", "--zoom", "0"], "1 to 16"),
        (["{a}", "{b}", "-o", "{o}", "--labels", "one"], "one text per input"),
        (["{a}", "{b}", "-o", "{dir}/c.xyz"], "picture"),
        (["{a}", "{b}", "-o", "{exists}"], "exists"),
        (["{a}", "{b}", "-o", "{o}", "--wipe", "0.5", "0.6"], "1 position"),
        (["{a}", "{b}", "-o", "{o}", "--wipe", "1.5"], "between 0 and 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    _flat_clip(tmp_path / "a", [10, 20])
    _flat_clip(tmp_path / "b", [10, 20])
    (tmp_path / "exists.png").write_bytes(b"x")
    names = dict(a=tmp_path / "a", b=tmp_path / "b", o=tmp_path / "c.png", missing=tmp_path / "nope",
                 dir=tmp_path, exists=tmp_path / "exists.png")  # fmt: skip
    code = main(["compare", *(a.format(**names) for a in args)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "c.png").exists()


# ---------------------------------------------------------------------------------------------
# rvrt eval --plot
# ---------------------------------------------------------------------------------------------

TINY_SR = {
    "upscale": 4, "clip_size": 2, "img_size": [2, 64, 64], "window_size": [2, 8, 8], "num_blocks": [1, 2, 1],
    "depths": [2, 2, 2], "embed_dims": [24, 24, 24], "num_heads": [2, 2, 2], "inputconv_groups": [1] * 6,
    "deformable_groups": 4, "attention_heads": 4, "attention_window": [3, 3], "max_residue_magnitude": 10,
    "cpu_cache_length": 100,
}  # fmt: skip


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    cfg = root / "tiny_sr.json"
    cfg.write_text(json.dumps(TINY_SR))
    torch.manual_seed(0)
    weights = root / "tiny_sr.pth"
    torch.save(create_model(cfg).state_dict(), weights)
    rng = np.random.default_rng(0)
    for seq, n in (("a", 3), ("b", 2)):
        for i in range(n):
            gt = rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)
            write_png(root / "gt" / seq / f"{i:03d}.png", gt)
            write_png(root / "lq" / seq / f"{i:03d}.png", imresize(gt, 0.25))
    return root, cfg, weights


def test_eval_plot_draws_the_numbers_of_the_table(bench, tmp_path, capsys, monkeypatch):
    import rvrt.plots

    root, cfg, weights = bench
    drawn = []
    real = rvrt.plots.plot_eval
    monkeypatch.setattr(rvrt.plots, "plot_eval", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    plot, report = tmp_path / "plot.png", tmp_path / "r.json"
    args = ["eval", "-m", cfg, "--weights", weights, "--lq", root / "lq", "--gt", root / "gt", "--protocol", "vid4",
            "--json", report, "--plot", plot, "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(list(map(str, args))) == 0
    table = capsys.readouterr().out
    (result,) = drawn
    assert result.channel == "Y"  # Vid4 reports Y
    from PIL import Image

    with Image.open(plot) as im:
        assert im.format == "PNG" and im.size == result.size == (900, 600)
    scores = json.loads(report.read_text())
    assert list(result.series) == ["a", "b"]
    for seq in scores["sequences"]:
        series = result.series[seq["name"]]
        assert series["psnr"] == tuple(f["psnr_y"] for f in seq["frames"])
        assert series["ssim"] == tuple(f["ssim_y"] for f in seq["frames"])
        row = next(line for line in table.splitlines() if line.startswith(seq["name"] + " "))
        cells = row.split()
        assert cells[1] == str(len(series["psnr"]))
        assert cells[4] == f"{np.mean(series['psnr']):.2f}" and cells[5] == f"{np.mean(series['ssim']):.4f}"
    assert all(math.isfinite(v) for s in result.series.values() for v in s["psnr"])


def test_eval_plot_without_matplotlib_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    code = main(["eval", "-m", "no-such-model", "--gt", str(tmp_path), "--plot", str(tmp_path / "p.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert 'pip install "rvrt[plot]"' in err and "no-such-model" not in err
