"""Downloads and the weights cache, against a local HTTP server (no real network): the
<cache>/<host>/<path> layout, atomic downloads, offline use of a filled cache, short errors for
unreachable URLs, and the weights_only/trust policy of zoo downloads; the one atomic write
(io.atomic_write): the normal file mode for pictures, published files and downloads, and an
interrupted write keeping the previous file."""

import collections
import fractions
import functools
import hashlib
import http.server
import os
import socket
import stat
import threading
from pathlib import Path

import pytest
import torch

from mobile_cv_nas import io, model_zoo
from mobile_cv_nas.arch import CheckpointError, load_checkpoint, read_checkpoint_state_dict


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        if self.path.endswith("/short/model.pth"):  # the connection drops mid-transfer
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"PK\x03\x04" + b"\0" * 1000)
            return
        super().do_GET()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(root folder, base URL) of a local HTTP server: a good checkpoint, one that also
    pickles a Python object, an HTML page saved as model.pth; anything else is a 404."""
    root = tmp_path_factory.mktemp("www")
    model = model_zoo.get("FBNetV2_F1")
    weights = {"module." + k: v for k, v in model.state_dict().items()}
    for name, data in {
        "good": {"model_ema": weights, "state_dict": None},
        "pickled": {"model_ema": weights, "note": fractions.Fraction(1, 3)},
    }.items():
        (root / "fbnet" / name).mkdir(parents=True)
        torch.save(data, root / "fbnet" / name / "model.pth")
    (root / "fbnet" / "html").mkdir()
    (root / "fbnet" / "html" / "model.pth").write_text("<!DOCTYPE html><html>Sign in</html>\n")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def files_in(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/fbnet/good/model.pth"


def assert_short(err):
    """One short error: a few lines, no chained traceback."""
    assert len(str(err).splitlines()) <= 3, str(err)
    assert err.__cause__ is None and (err.__suppress_context__ or err.__context__ is None)


# --------------------------------------------------------------------------- cache layout


def test_cache_path_has_the_host(tmp_path):
    url = "https://dl.fbaipublicfiles.com/fbnet/models/20200325/dktSJh/FBNetV2_F4_f167001913/model.pth"
    assert io.url_cache_path(url, tmp_path) == str(
        tmp_path
        / "dl.fbaipublicfiles.com/fbnet/models/20200325/dktSJh/FBNetV2_F4_f167001913/model.pth"
    )
    # two hosts (or ports) serving the same path do not collide
    paths = {
        io.url_cache_path(f"{base}/a/model.pth", tmp_path)
        for base in ("https://one.example", "https://two.example", "http://one.example:8080")
    }
    assert len(paths) == 3
    with pytest.raises(ValueError, match="needs a host and a file path"):
        io.url_cache_path("https://example.com/", tmp_path)


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILE_CV_NAS_CACHE", str(tmp_path / "env"))
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "fvcore"))
    assert io.resolve_cache_dir(tmp_path / "arg") == str(tmp_path / "arg")
    assert io.resolve_cache_dir() == str(tmp_path / "env")
    monkeypatch.delenv("MOBILE_CV_NAS_CACHE")
    assert io.resolve_cache_dir() == str(tmp_path / "fvcore")  # iopath's default honours it


def test_local_paths_and_file_urls(tmp_path, no_network):
    path = tmp_path / "x.pth"
    path.write_bytes(b"x")
    assert io.local_path(path) == str(path)
    assert io.local_path(f"file://{path}") == str(path)
    assert no_network == []


# --------------------------------------------------------------------------- downloads


def test_download_is_cached_under_the_host_and_reused_offline(served, tmp_path, monkeypatch):
    root, base = served
    url = f"{base}/fbnet/good/model.pth"
    local = io.local_path(url, cache_dir=tmp_path)
    port = base.rsplit(":", 1)[1]
    assert local == str(tmp_path / f"127.0.0.1_{port}" / "fbnet" / "good" / "model.pth")
    assert Path(local).read_bytes() == (root / "fbnet/good/model.pth").read_bytes()
    assert files_in(tmp_path) == [f"127.0.0.1_{port}/fbnet/good/model.pth"]  # no lock, no temp

    def refuse(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr("iopath.common.download.download", refuse)
    assert io.local_path(url, cache_dir=tmp_path) == local
    model = model_zoo.get("FBNetV2_F1", weights=url, cache_dir=tmp_path)
    assert torch.equal(
        model.head.conv.bias, torch.load(local)["model_ema"]["module.head.conv.bias"]
    )


@pytest.mark.parametrize("where", ["404", "closed port", "cut off"])
def test_unreachable_url_is_one_short_error(served, tmp_path, where):
    _, base = served
    url = {
        "404": f"{base}/fbnet/absent/model.pth",
        "closed port": closed_port_url(),
        "cut off": f"{base}/fbnet/short/model.pth",
    }[where]
    with pytest.raises(CheckpointError) as err:
        read_checkpoint_state_dict(url, cache_dir=tmp_path)
    msg = str(err.value)
    assert_short(err.value)
    assert url in msg and "Could not fetch checkpoint" in msg and err.value.__suppress_context__
    assert io.url_cache_path(url, tmp_path) in msg  # where to put the file by hand
    if where == "404":
        assert "404" in msg
    assert files_in(tmp_path) == []  # no partial file, no temp, no lock


def test_download_error_is_short_through_the_zoo(tmp_path):
    url = closed_port_url()
    with pytest.raises(CheckpointError) as err:
        model_zoo.get("FBNetV2_F1", weights=url, cache_dir=tmp_path)
    assert_short(err.value)
    assert io.url_cache_path(url, tmp_path) in str(err.value)


def test_crash_during_download_leaves_no_file(served, tmp_path, monkeypatch):
    _, base = served
    real = io.iopath_download.download

    def crash(url, folder, **kwargs):
        real(url, folder, **kwargs)  # the whole file arrived, then the process died
        raise KeyboardInterrupt

    monkeypatch.setattr("iopath.common.download.download", crash)
    with pytest.raises(KeyboardInterrupt):
        io.local_path(f"{base}/fbnet/good/model.pth", cache_dir=tmp_path)
    assert files_in(tmp_path) == []


def test_downloaded_html_page_is_reported_as_not_a_checkpoint(served, tmp_path):
    _, base = served
    url = f"{base}/fbnet/html/model.pth"
    with pytest.raises(CheckpointError) as err:
        read_checkpoint_state_dict(url, cache_dir=tmp_path)
    msg = str(err.value)
    assert "HTML" in msg and "not a PyTorch checkpoint" in msg and "trusted" not in msg
    assert io.url_cache_path(url, tmp_path) in msg  # the cached file to delete
    assert f"Delete the downloaded copy {io.url_cache_path(url, tmp_path)}" in msg
    assert_short(err.value)


# --------------------------------------------------------------------------- trust policy


def _catalog_with(monkeypatch, url, sha256=None):
    catalog = model_zoo._catalog()
    patched = dict(catalog, models=dict(catalog["models"]))
    patched["models"]["FBNetV2_F1"] = dict(
        catalog["models"]["FBNetV2_F1"], weights={"url": url, "sha256": sha256}
    )
    monkeypatch.setattr(model_zoo, "_catalog", lambda: patched)


def test_zoo_download_of_plain_weights_needs_no_trust(served, tmp_path, monkeypatch):
    _, base = served
    _catalog_with(monkeypatch, f"{base}/fbnet/good/model.pth")
    model_zoo.get("fbnetv2_f1", pretrained=True, cache_dir=tmp_path)


def test_zoo_download_with_python_objects_is_refused_unless_trusted_or_pinned(
    served, tmp_path, monkeypatch
):
    root, base = served
    url = f"{base}/fbnet/pickled/model.pth"
    digest = hashlib.sha256((root / "fbnet/pickled/model.pth").read_bytes()).hexdigest()
    _catalog_with(monkeypatch, url)
    with pytest.raises(CheckpointError) as err:
        model_zoo.get("FBNetV2_F1", pretrained=True, cache_dir=tmp_path)
    msg = str(err.value)
    assert "fractions.Fraction" in msg and "trusted=True" in msg and digest in msg
    assert_short(err.value)

    model = model_zoo.get("FBNetV2_F1", pretrained=True, cache_dir=tmp_path, trusted=True)
    _catalog_with(monkeypatch, url, sha256=digest)  # a pinned file is unpickled fully
    pinned = model_zoo.get("FBNetV2_F1", pretrained=True, cache_dir=tmp_path)
    assert torch.equal(pinned.head.conv.bias, model.head.conv.bias)
    _catalog_with(monkeypatch, url, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="sha256") as err:
        model_zoo.get("FBNetV2_F1", pretrained=True, cache_dir=tmp_path, trusted=True)
    # a downloaded copy that is not the pinned file may be deleted and fetched again
    cached = io.url_cache_path(url, tmp_path)
    assert f"The downloaded copy {cached} of {url}" in str(err.value)
    assert f"Delete {cached} to download it again" in str(err.value)


def test_weights_file_follows_the_same_rule(served, tmp_path):
    root, _ = served
    path = root / "fbnet/pickled/model.pth"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match="trusted=True"):
        model_zoo.get("FBNetV2_F1", weights=str(path))
    model_zoo.get("FBNetV2_F1", weights=str(path), sha256=digest)
    model_zoo.get("FBNetV2_F1", weights=str(path), trusted=True)
    with pytest.raises(CheckpointError, match="trusted=True"):
        load_checkpoint(model_zoo.get("FBNetV2_F1"), str(path))
    load_checkpoint(model_zoo.get("FBNetV2_F1"), str(path), sha256=digest)


def test_plain_weights_load_without_trust(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"state_dict": collections.OrderedDict(w=torch.ones(2))}, path)
    assert torch.equal(read_checkpoint_state_dict(str(path))["w"], torch.ones(2))


# --------------------------------------------------------------------------- one atomic write


@pytest.fixture
def umask_022():
    """The usual umask (022), whatever the test runner's is."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(folder):
    """{relative path: permission bits} of every file under `folder`."""
    return {
        p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


class Interrupted(KeyboardInterrupt):
    pass


def half_then_interrupt(data):
    def write(f):
        f.write(data[: len(data) // 2])
        raise Interrupted

    return write


def test_atomic_write_gives_the_normal_mode_and_an_interrupted_write_keeps_the_old_file(
    tmp_path, umask_022
):
    path = tmp_path / "sub" / "state.bin"
    io.atomic_write(path, lambda f: f.write(b"old" * 100))
    io.write_json(tmp_path / "metrics.json", {"top1": 1.5})
    assert modes(tmp_path) == {"metrics.json": 0o644, "sub/state.bin": 0o644}  # not 0600
    with pytest.raises(Interrupted):
        io.atomic_write(path, half_then_interrupt(b"new" * 100))
    assert path.read_bytes() == b"old" * 100
    assert files_in(tmp_path) == ["metrics.json", "sub/state.bin"]  # no temporary left
    os.umask(0o077)  # a private umask is honoured too
    io.atomic_write(path, lambda f: f.write(b"new"))
    assert modes(tmp_path)["sub/state.bin"] == 0o600 and path.read_bytes() == b"new"


def test_pictures_get_the_normal_mode_and_an_interrupted_one_keeps_the_old_file(
    tmp_path, umask_022, monkeypatch
):
    from mobile_cv_nas.visualization import plot_architecture, plot_search_curves

    arch_png = tmp_path / "run" / "arch.png"
    curves_png = tmp_path / "run" / "search_curves.png"
    plot_architecture(model_zoo.get_arch_def("FBNetV2_F1"), arch_png)
    records = [{"iter": i, "tau": 5.0 - i, "probs": {"op:a": [0.5 + 0.1 * i, 0.5 - 0.1 * i]}}
               for i in range(3)]  # fmt: skip
    plot_search_curves(records, curves_png)
    assert modes(tmp_path) == {"run/arch.png": 0o644, "run/search_curves.png": 0o644}

    before = arch_png.read_bytes()
    from matplotlib.figure import Figure

    real = Figure.savefig

    def savefig_then_interrupt(self, f, **kwargs):
        real(self, f, **kwargs)
        f.truncate(f.tell() // 2)  # half of a PNG, then the process is stopped
        raise Interrupted

    monkeypatch.setattr(Figure, "savefig", savefig_then_interrupt)
    with pytest.raises(Interrupted):
        plot_architecture(model_zoo.get_arch_def("FBNetV2_F4"), arch_png)
    assert arch_png.read_bytes() == before
    assert files_in(tmp_path) == ["run/arch.png", "run/search_curves.png"]


def _tiny_published(tmp_path, zoo, overwrite=False, seed=0):
    from mobile_cv_nas.arch import build_model
    from mobile_cv_nas.publish import publish_model

    arch = {
        "name": "tiny_io",
        "input_size": 16,
        "in_channels": 1,
        "num_classes": 4,
        "stages": [[{"op": "conv_k3", "out_channels": 8, "stride": 2}]],
    }
    torch.manual_seed(seed)
    weights = tmp_path / f"weights_{seed}.pth"
    torch.save({"state_dict": build_model(arch).state_dict()}, weights)
    return publish_model("tiny_io", arch, weights, zoo, overwrite=overwrite)


def test_published_files_get_the_normal_mode_and_an_interrupted_publish_keeps_the_old_ones(
    tmp_path, umask_022, monkeypatch
):
    from mobile_cv_nas import publish

    zoo = tmp_path / "zoo"
    _tiny_published(tmp_path, zoo)
    assert modes(zoo) == {
        "archs/tiny_io.yaml": 0o644,
        "catalog.yaml": 0o644,
        "weights/tiny_io.pth": 0o644,
    }
    before = {p: (zoo / p).read_bytes() for p in files_in(zoo)}

    def copy_half_then_interrupt(src, dst):
        dst.write(src.read(100))
        raise Interrupted

    monkeypatch.setattr(publish.shutil, "copyfileobj", copy_half_then_interrupt)
    with pytest.raises(Interrupted):  # the new weights are being staged
        _tiny_published(tmp_path, zoo, overwrite=True, seed=1)
    assert {p: (zoo / p).read_bytes() for p in files_in(zoo)} == before  # nothing replaced


def test_a_download_gets_the_normal_mode(served, tmp_path, umask_022, monkeypatch):
    _, base = served
    real = io.iopath_download.download

    def private(url, folder, **kwargs):
        fetched = real(url, folder, **kwargs)
        os.chmod(fetched, 0o600)  # whatever mode the transfer left
        return fetched

    monkeypatch.setattr("iopath.common.download.download", private)
    local = io.local_path(f"{base}/fbnet/good/model.pth", cache_dir=tmp_path)
    assert stat.S_IMODE(os.stat(local).st_mode) == 0o644
