"""Frame folders: natural sort, sequence discovery, image reading and atomic writing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rvrt.data.frames import find_sequences, image_to_float, list_frames, natural_key, read_image, write_image
from rvrt.errors import InputError


def _png(path, value=0, size=(6, 5), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode != "RGB" else (value, value, value)).save(path)
    return path


def test_natural_sort():
    names = ["f10.png", "f2.png", "F1.png", "f1b.png", "f01a.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f01a.png", "f1b.png", "f2.png", "f10.png"]


def test_list_frames_skips_hidden_and_non_images(tmp_path):
    for n in ("frame10.png", "frame9.png", ".hidden.png", "notes.txt"):
        _png(tmp_path / n) if n.endswith(".png") else (tmp_path / n).write_text("x")
    assert [p.name for p in list_frames(tmp_path)] == ["frame9.png", "frame10.png"]


def test_find_sequences_flat_nested_and_vimeo_depth(tmp_path):
    _png(tmp_path / "flat" / "a.png")
    assert list(find_sequences(tmp_path / "flat")) == [""]
    for seq in ("walk", "calendar"):
        _png(tmp_path / "nested" / seq / "0.png")
    assert list(find_sequences(tmp_path / "nested")) == ["calendar", "walk"]
    for seq in ("00002/0001", "00001/0266", "00001/0268"):
        _png(tmp_path / "vimeo" / seq / "im1.png")
    assert list(find_sequences(tmp_path / "vimeo")) == ["00001/0266", "00001/0268", "00002/0001"]


def test_find_sequences_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        find_sequences(tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(InputError, match="no image files"):
        find_sequences(tmp_path / "empty")


def test_read_converts_grey_and_rgba_to_rgb(tmp_path):
    grey = read_image(_png(tmp_path / "g.png", 7, mode="L"))
    assert grey.shape == (5, 6, 3) and grey.dtype == np.uint8 and (grey == 7).all()
    rgba = read_image(_png(tmp_path / "a.png", (1, 2, 3, 4), mode="RGBA"))
    assert rgba.shape == (5, 6, 3) and rgba[0, 0].tolist() == [1, 2, 3]


def test_write_read_roundtrip_8_and_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    img8 = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    write_image(tmp_path / "x.png", img8)
    assert np.array_equal(read_image(tmp_path / "x.png"), img8)
    img16 = rng.integers(0, 65536, (7, 9, 3), dtype=np.uint16)
    write_image(tmp_path / "y.png", img16)
    back = read_image(tmp_path / "y.png")
    assert back.dtype == np.uint16 and np.array_equal(back, img16)
    np.testing.assert_allclose(image_to_float(back), img16 / 65535.0, atol=1e-7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png", "y.png"]  # no temporary files left


def test_write_refuses_to_overwrite(tmp_path):
    img = np.zeros((3, 3, 3), np.uint8)
    write_image(tmp_path / "x.png", img)
    with pytest.raises(InputError, match="exists"):
        write_image(tmp_path / "x.png", img + 1)
    write_image(tmp_path / "x.png", img + 1, overwrite=True)
    assert (read_image(tmp_path / "x.png") == 1).all()
    with pytest.raises(InputError):
        write_image(tmp_path / "z.png", np.zeros((3, 3, 3), np.float32))


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "none.png")
