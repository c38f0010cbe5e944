"""Weights: safe loading, formats, architecture checks, verified downloads, the weights CLI."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import tempfile
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch

import rvrt
from rvrt import zoo
from rvrt.api import identify_state_dict, model_spec
from rvrt.checkpoint import load_state_dict_file, read_metadata, save_safetensors
from rvrt.cli import main as cli
from rvrt.errors import DownloadError, WeightsError
from rvrt.files import default_file_mode
from rvrt.hub import download, pin_path

TINY = dict(upscale=4, embed_dims=[24, 24, 24], num_heads=[2, 2, 2], attention_heads=4, deformable_groups=4)


@pytest.fixture
def tiny_spec(tmp_path) -> zoo.ModelSpec:
    return zoo.ModelSpec(name="rvrt:tiny", arch="rvrt", kwargs=TINY, task="sr", scale=4, description="tiny")


@pytest.fixture
def tiny_model(tiny_spec):
    torch.manual_seed(0)
    return rvrt.create_model(tiny_spec)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("wrap", ["params", "bare", "module"])
def test_pth_formats_load(tmp_path, tiny_spec, tiny_model, wrap):
    sd = tiny_model.state_dict()
    obj = {"params": sd} if wrap == "params" else sd
    if wrap == "module":
        obj = {f"module.{k}": v for k, v in sd.items()}
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    assert _same(rvrt.create_model(tiny_spec, weights=path), tiny_model)


def test_pth_safetensors_round_trip_keeps_config(tmp_path, tiny_spec, tiny_model):
    pth = tmp_path / "w.pth"
    torch.save({"params": tiny_model.state_dict()}, pth)
    out = tmp_path / "w.safetensors"
    save_safetensors(
        rvrt.create_model(tiny_spec, weights=pth),
        out,
        arch="rvrt",
        config=tiny_model.config.to_kwargs(),
        name="rvrt:tiny",
    )
    assert json.loads(read_metadata(out)["rvrt.config"])["embed_dims"] == [24, 24, 24]
    assert out.stat().st_mode & 0o777 == default_file_mode() and sorted(tmp_path.iterdir()) == sorted([pth, out])
    stored = load_state_dict_file(out)
    assert not any(k.endswith("relative_position_index") for k in stored)  # constants are rebuilt on load
    back = rvrt.load_model(out)  # no model name needed: the config travels in the file
    assert back.config == tiny_model.config and _same(back, tiny_model)
    torch.save(stored, tmp_path / "again.pth")
    assert _same(rvrt.create_model(tiny_spec, weights=tmp_path / "again.pth"), tiny_model)


def test_official_checkpoint_is_recognised_from_its_keys(tmp_path):
    model = rvrt.create_model("rvrt.deblur_dvd")
    path = tmp_path / rvrt.get_spec("rvrt.deblur_dvd").weights.filename  # 004_RVRT_videodeblurring_DVD_16frames.pth
    torch.save({"params": model.state_dict()}, path)
    loaded = rvrt.load_model(path)
    assert model_spec(loaded).name == "rvrt.deblur_dvd" and loaded.config == model.config
    unique = {"params": rvrt.create_model("rvrt.denoise_davis").state_dict()}  # 006: no other task has its shapes
    assert identify_state_dict(unique["params"]) is rvrt.get_spec("rvrt.denoise_davis")
    torch.save(unique, tmp_path / "mine.pth")
    assert model_spec(rvrt.load_model(tmp_path / "mine.pth")).name == "rvrt.denoise_davis"


@pytest.mark.parametrize(
    ("a", "b"), [("rvrt.deblur_dvd", "rvrt.deblur_gopro"), ("rvrt.sr_bi_vimeo", "rvrt.sr_bd_vimeo")]
)
def test_official_files_with_the_same_shapes_are_told_apart_by_name_or_not_guessed(tmp_path, a, b, capsys):
    """Two official tasks with one network: the official file name decides; any other name asks for -m."""
    sd = {"params": rvrt.create_model(a).state_dict()}
    for name in (a, b):
        official = tmp_path / rvrt.get_spec(name).weights.filename
        torch.save(sd, official)
        assert model_spec(rvrt.load_model(official)).name == name
    renamed = tmp_path / "my_weights.pth"
    torch.save(sd, renamed)
    with pytest.raises(WeightsError, match=f"my_weights.pth fits several models .*{a}, {b}.* -m/--model"):
        rvrt.load_model(renamed)
    assert model_spec(rvrt.load_model(renamed, model=b)).name == b


def test_weights_of_another_architecture_are_rejected_with_the_key_lists(tmp_path, tiny_model):
    path = tmp_path / "sr.pth"
    torch.save({"params": tiny_model.state_dict()}, path)
    deblur = zoo.ModelSpec(
        name="rvrt:tiny_deblur", arch="rvrt", kwargs=dict(TINY, upscale=1), task="deblur", scale=1, description="tiny"
    )
    with pytest.raises(WeightsError) as err:
        rvrt.create_model(deblur, weights=path)
    msg = str(err.value)
    assert "missing key(s): feat_extract.1.weight" in msg
    assert "unexpected key(s): feat_extract.main.1.weight" in msg
    bigger = zoo.ModelSpec(
        name="rvrt:tiny48", arch="rvrt", kwargs=dict(TINY, embed_dims=[48] * 3), task="sr", scale=4, description="tiny"
    )
    with pytest.raises(WeightsError, match="mismatched shape.*expected \\[48"):
        rvrt.create_model(bigger, weights=path)
    with pytest.raises(WeightsError, match="cannot tell which model"):
        rvrt.load_model(path)


def test_unsafe_missing_and_corrupt_files_are_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_state_dict_file(tmp_path / "nope.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WeightsError, match="cannot read"):
        load_state_dict_file(corrupt)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(WeightsError, match="safetensors"):
        load_state_dict_file(bad_st)
    # a pickle that would run code when unpickled without weights_only
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "hook": Path("x")}, unsafe)
    with pytest.raises(WeightsError, match="weights_only"):
        load_state_dict_file(unsafe)


# ---------------------------------------------------------------------------- downloads


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """A local HTTP server (the session runs with RVRT_OFFLINE=1, which this fixture lifts)."""
    monkeypatch.delenv("RVRT_OFFLINE", raising=False)
    root = tmp_path / "srv"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_from_local_http_server_is_verified_and_atomic(tmp_path, http_server):
    root, base = http_server
    payload = root / "weights.bin"
    payload.write_bytes(b"x" * 100_000)
    dest = tmp_path / "cache" / "weights.bin"
    assert download(f"{base}/weights.bin", dest, sha256=_sha(payload), progress=False) == dest
    assert dest.read_bytes() == payload.read_bytes()
    assert list(dest.parent.iterdir()) == [dest]  # no temporary file left behind
    assert dest.stat().st_mode & 0o777 == default_file_mode()  # as open() would create it, not mkstemp's 0600
    dest.unlink()
    with pytest.raises(DownloadError, match="sha256"):
        download(f"{base}/weights.bin", dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{base}/missing.bin", dest, progress=False)


def test_offline_and_unreachable_errors_tell_what_to_do(tmp_path, monkeypatch):
    dest = tmp_path / "001.pth"
    monkeypatch.setenv("RVRT_OFFLINE", "1")
    with pytest.raises(DownloadError) as err:
        download("https://example.invalid/releases/001.pth", dest, progress=False)
    assert "https://example.invalid/releases/001.pth" in str(err.value)
    assert "001.pth" in str(err.value) and "--weights" in str(err.value)
    assert "RVRT_OFFLINE is set" in str(err.value)  # said before trying the network, not a DNS failure
    monkeypatch.delenv("RVRT_OFFLINE")
    with socket.socket() as s:  # a port that was free a moment ago: refused at once, no waiting on a timeout
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=f"cannot download http://127.0.0.1:{port}/x.pth"):
        download(f"http://127.0.0.1:{port}/x.pth", dest, progress=False, timeout=1)
    assert not dest.exists()


def test_tests_cannot_reach_the_network(monkeypatch):
    monkeypatch.delenv("RVRT_OFFLINE")
    with pytest.raises(DownloadError, match="tests must not use the network"):
        download("http://192.0.2.1/x.pth", Path("unused"), progress=False, timeout=1)
    assert str(rvrt.hub.cache_dir()).startswith(tempfile.gettempdir())  # never the user's ~/.cache/rvrt


def test_a_download_without_published_digest_is_pinned_and_the_pin_checked(tmp_path, caplog):
    src = tmp_path / "release" / "w.pth"
    src.parent.mkdir()
    src.write_bytes(b"weights" * 1000)
    dest = tmp_path / "cache" / "w.pth"
    download(src.as_uri(), dest, progress=False)
    assert dest.read_bytes() == src.read_bytes()
    assert pin_path(dest).read_text() == f"{_sha(src)}  w.pth\n"
    assert download(src.as_uri(), dest, progress=False) == dest  # unchanged: used as it is
    dest.write_bytes(b"weights" * 999 + b"damaged")  # bit rot, a half-copied file, a replaced file
    with pytest.raises(DownloadError) as err:
        download(src.as_uri(), dest, progress=False)
    message = str(err.value)
    assert str(dest) in message and "changed since it was downloaded" in message and "Delete it" in message
    assert dest.read_bytes().endswith(b"damaged")  # the user's file is not deleted behind their back
    dest.unlink()
    pin_path(dest).unlink()
    # a file placed by hand (as the offline error suggests) is pinned as it is, with a log line saying so
    dest.write_bytes(b"by hand")
    with caplog.at_level("INFO", logger="rvrt.hub"):
        assert download("https://example.invalid/w.pth", dest, progress=False) == dest
    assert "pinning the sha256" in caplog.text and pin_path(dest).read_text().startswith(_sha(dest))


def _downloadable():
    return [n for n in rvrt.list_models() if rvrt.get_spec(n).weights and rvrt.get_spec(n).weights.url]


@pytest.mark.parametrize("name", _downloadable())
def test_every_downloadable_zoo_entry_is_verified_before_use(name, tmp_path, monkeypatch):
    """Each official file is served from a local "release" (same file name) into a private cache: the
    download is pinned (or checked against the published digest) and a damaged cache file is refused."""
    spec = rvrt.get_spec(name)
    release = tmp_path / "release" / spec.weights.filename
    release.parent.mkdir()
    release.write_bytes(name.encode() * 100)
    sha = spec.weights.sha256
    if sha is not None:  # a published digest: serve a file with that digest is impossible, so check the refusal
        local = replace(spec, weights=replace(spec.weights, url=release.as_uri()))
        with pytest.raises(DownloadError, match="sha256"):
            rvrt.api.fetch_weights(local, progress=False)
        return
    local = replace(spec, weights=replace(spec.weights, url=release.as_uri()))
    monkeypatch.setenv("RVRT_HOME", str(tmp_path / "home"))
    path = rvrt.api.fetch_weights(local, progress=False)
    assert path == tmp_path / "home" / "weights" / spec.weights.filename and path.read_bytes() == release.read_bytes()
    assert pin_path(path).read_text().split()[0] == _sha(release)
    with open(path, "r+b") as f:  # one flipped byte
        f.seek(7)
        f.write(b"\x00")
    with pytest.raises(DownloadError, match="changed since it was downloaded"):
        rvrt.api.fetch_weights(local, progress=False)


def test_official_weights_via_file_url_into_cache(tmp_path, monkeypatch, tiny_model):
    src = tmp_path / "release" / "tiny_task.pth"
    src.parent.mkdir()
    torch.save({"params": tiny_model.state_dict()}, src)
    spec = zoo.ModelSpec(
        name="rvrt:tiny",
        arch="rvrt",
        kwargs=TINY,
        task="sr",
        scale=4,
        description="tiny",
        weights=zoo.WeightsSpec(url=src.as_uri(), sha256=_sha(src)),
    )
    monkeypatch.setenv("RVRT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RVRT_OFFLINE", "1")  # file:// still works offline
    model = rvrt.create_model(spec, weights="official")
    assert _same(model, tiny_model)
    assert (tmp_path / "home" / "weights" / "tiny_task.pth").is_file()
    bad = zoo.ModelSpec(**{**spec.__dict__, "weights": zoo.WeightsSpec(url=src.as_uri(), sha256="1" * 64)})
    (tmp_path / "home" / "weights" / "tiny_task.pth").unlink()
    with pytest.raises(DownloadError, match="sha256"):
        rvrt.create_model(bad, weights="official")


def test_zoo_names_aliases_and_weights_are_consistent():
    names = rvrt.list_models()
    assert {
        "rvrt.sr_bi_reds",
        "rvrt.sr_bi_vimeo",
        "rvrt.sr_bd_vimeo",
        "rvrt.deblur_dvd",
        "rvrt.deblur_gopro",
        "rvrt.denoise_davis",
    } <= set(names)
    for n in names:
        spec = rvrt.get_spec(n)
        for alias in spec.aliases:
            assert rvrt.get_spec(alias) is spec
        if spec.weights.bundled:  # ours, shipped inside the package
            assert spec.weights.license == "Apache-2.0" and not spec.weights.url
            assert rvrt.api.fetch_weights(spec).is_file()
        elif spec.arch == "rvrt" and not spec.build_config().mindspore_compat:
            assert spec.weights.url.endswith(f"/{spec.aliases[0]}.pth") and spec.weights.license == "CC-BY-NC-4.0"
            assert spec.build_config().upscale == spec.scale
        elif spec.arch in ("rvrt", "rvrt_light"):  # mindediting's MindSpore ports
            assert spec.weights.url.endswith(".ckpt") and spec.weights.license.startswith("Apache-2.0")
    with pytest.raises(rvrt.errors.InputError, match="unknown model 'nope'"):
        rvrt.get_spec("nope")


# ---------------------------------------------------------------------------- CLI


def _serve_release(tmp_path, monkeypatch, name: str, state_dict) -> zoo.ModelSpec:
    """``name``'s spec with its URL pointing at a local "release" holding ``state_dict`` under the official name."""
    spec = rvrt.get_spec(name)
    release = tmp_path / "release" / spec.weights.filename
    release.parent.mkdir(exist_ok=True)
    torch.save({"params": state_dict}, release)
    local = replace(spec, weights=replace(spec.weights, url=release.as_uri()))
    monkeypatch.setattr(zoo.spec, "_REGISTRY", {**zoo.spec._REGISTRY, name: local})
    return local


def test_cli_weights_list(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RVRT_HOME", str(tmp_path / "home"))
    assert cli(["weights", "list"]) == 0
    captured = capsys.readouterr()
    rows = {line.split()[0]: line for line in captured.out.splitlines()[1:]}
    assert rows.keys() == set(rvrt.list_models())
    reds = rows["rvrt.sr_bi_reds"]
    for column in ("001_RVRT_videosr_bi_REDS_30frames", "sr x4", "10.8 M", "REDS4 32.75/0.9113 (RGB)", "CC-BY-NC-4.0"):
        assert column in reds
    assert reds.endswith("not downloaded")
    assert "(default)" in rows[zoo.DEFAULT_MODEL] and rows[zoo.DEFAULT_MODEL].endswith("ships with rvrt")
    assert sum("(default)" in r for r in rows.values()) == 1
    assert "pinned" in captured.err  # how official files are checked, said once
    _serve_release(tmp_path, monkeypatch, "rvrt.denoise_davis", rvrt.create_model("rvrt.denoise_davis").state_dict())
    rvrt.api.fetch_weights("rvrt.denoise_davis", progress=False)
    assert cli(["weights", "list", "--arch", "rvrt"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("rvrt.denoise_davis")][0].endswith("(sha256 pinned)")
    assert "vrt.vfi_vimeo" not in out


def test_the_zoo_parameter_counts_are_those_of_the_built_models():
    from rvrt.api import _build

    for name in rvrt.list_models():
        with torch.device("meta"):
            net = _build(rvrt.get_spec(name))
        assert sum(p.numel() for p in net.parameters()) == rvrt.get_spec(name).params, name


def test_weights_verify_checks_digest_and_every_key_and_shape(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RVRT_HOME", str(tmp_path / "home"))
    name = "rvrt.denoise_davis"
    _serve_release(tmp_path, monkeypatch, name, rvrt.create_model(name).state_dict())
    assert cli(["weights", "verify", name]) == 2
    assert "not downloaded" in capsys.readouterr().err
    path = rvrt.api.fetch_weights(name, progress=False)
    assert cli(["weights", "verify"]) == 0  # every file here: the shipped default and this one
    out = capsys.readouterr().out
    assert f"{name}: {path}: sha256 pinned at its first download and every key and shape of {name} match" in out
    assert f"{zoo.DEFAULT_MODEL}: " in out and "published sha256" in out
    assert cli(["weights", "verify", str(path)]) == 0
    assert f"keys and shapes of {name}; sha256 {_sha(path)}" in capsys.readouterr().out
    # the cache holds another model's file (pinned as it is, as if placed by hand): named, with the fix
    torch.save({"params": rvrt.create_model("rvrt.deblur_dvd").state_dict()}, path)
    pin_path(path).unlink()
    assert cli(["weights", "verify", name]) == 2
    err = capsys.readouterr().err
    assert f"{path} does not hold the published weights of {name}" in err and "delete it and" in err
    with pytest.raises(WeightsError, match="does not hold the published weights of rvrt.denoise_davis"):
        rvrt.create_model(name, weights="official")
    # a damaged file: its digest no longer matches the pin
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff")
    assert cli(["weights", "verify", name]) == 2
    assert "changed since it was downloaded" in capsys.readouterr().err
    assert cli(["weights", "verify", str(tmp_path / "nothing.pth")]) == 2
    assert "neither a weights file nor a registered model" in capsys.readouterr().err


def test_cli_convert_and_errors(tmp_path, capsys, tiny_model):
    pth = tmp_path / "w.pth"
    torch.save({"params": tiny_model.state_dict()}, pth)
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    out = tmp_path / "w.safetensors"
    assert cli(["weights", "convert", str(pth), str(out), "-m", str(cfg)]) == 0
    assert _same(rvrt.load_model(out), tiny_model)
    assert cli(["weights", "convert", str(pth), str(out), "-m", str(cfg)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    half = tmp_path / "half.safetensors"
    assert cli(["weights", "convert", str(pth), str(half), "-m", str(cfg), "--dtype", "fp16"]) == 0
    assert half.stat().st_size < 0.6 * out.stat().st_size
    loaded = rvrt.load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for (k, a), b in zip(tiny_model.named_parameters(), loaded.parameters()):
        assert torch.equal(a.half().float(), b), k
    for (k, a), b in zip(tiny_model.named_buffers(), loaded.buffers()):  # rebuilt in full precision
        assert torch.equal(a, b), k
    again = tmp_path / "again.safetensors"  # no --dtype: stored as the input stores it
    assert cli(["weights", "convert", str(half), str(again)]) == 0
    assert {v.dtype for v in load_state_dict_file(again).values()} == {torch.float16}
    assert {v.dtype for v in load_state_dict_file(out).values()} == {torch.float32}
    assert cli(["weights", "convert", str(tmp_path / "missing.pth"), str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err


def test_cli_average_is_the_weighted_mean_of_one_models_files(tmp_path, capsys, tiny_spec, tiny_model):
    torch.manual_seed(1)
    other = rvrt.create_model(tiny_spec)
    files = []
    for name, net, dtype in (("a", tiny_model, torch.float16), ("b", other, torch.float32)):
        files.append(tmp_path / f"{name}.safetensors")
        save_safetensors(net.to(dtype), files[-1], arch="rvrt", config=net.config.to_kwargs(), name="rvrt:tiny")
        net.float()
    a, b = files
    out = tmp_path / "mix.safetensors"
    assert cli(["weights", "average", str(a), str(b), "-o", str(out), "--shares", "0.25", "0.75"]) == 0
    assert "0.25 x a.safetensors, 0.75 x b.safetensors" in read_metadata(out)["rvrt.source"]
    stored = load_state_dict_file(out)
    assert {v.dtype for v in stored.values()} == {torch.float16}  # the first file's storage
    mixed = rvrt.load_model(out)
    assert mixed.config == tiny_model.config
    pa, pb = dict(tiny_model.named_parameters()), dict(other.named_parameters())
    for k, p in mixed.named_parameters():
        expected = 0.25 * pa[k].detach().half().double() + 0.75 * pb[k].detach().double()
        assert torch.equal(p, expected.float().half().float()), k
    # equal shares by default; a file averaged with itself is itself
    same = tmp_path / "same.safetensors"
    assert cli(["weights", "average", str(b), str(b), "-o", str(same), "--dtype", "fp32"]) == 0
    assert _same(rvrt.load_model(same), other)
    capsys.readouterr()
    for argv, says in (
        ([str(a), str(b), "-o", str(out)], "exists; pass --overwrite"),
        ([str(a), str(b), "-o", str(tmp_path / "x.safetensors"), "--shares", "0.5"], "2 input files"),
        ([str(a), str(b), "-o", str(tmp_path / "x.safetensors"), "--shares", "0.5", "0.6"], "sum to 1"),
        ([str(a), str(tmp_path / "no.safetensors"), "-o", str(tmp_path / "x.safetensors")], "not found"),
    ):
        assert cli(["weights", "average", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, (argv, err)
    assert not (tmp_path / "x.safetensors").exists()
    small = dict(TINY, embed_dims=[16, 16, 16])
    c = tmp_path / "c.safetensors"
    save_safetensors(
        rvrt.create_model(replace(tiny_spec, kwargs=small)), c, arch="rvrt", config=small, name="rvrt:tiny"
    )
    assert cli(["weights", "average", str(a), str(c), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "different models" in capsys.readouterr().err
