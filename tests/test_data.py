"""The classification data package: the embedded Fashion-MNIST subset, the full-set and
folder datasets and their errors, class subsets and the 80/20 split, the resumable seeded
batches, and the loaders over workers and ranks."""

import gzip
import hashlib
import logging
import re
import shutil
import subprocess
from itertools import islice

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from mobile_cv_nas.data import (
    FASHION_MNIST_CLASSES,
    DatasetError,
    EpochBatchSampler,
    SeededTransformDataset,
    apply_class_subset,
    build_classification_dataset,
    build_eval_loader,
    build_train_loader,
    choose_classes,
    class_subset,
    default_mean_std,
    eval_transform,
    fashion_mnist,
    split_indices,
    train_transform,
)
from mobile_cv_nas.data import fashion_mnist_fetch as fetch
from mobile_cv_nas.data.idx import encode_idx


@pytest.fixture(scope="module")
def subset_train():
    return build_classification_dataset("fashion_mnist_subset_train")


@pytest.fixture(scope="module")
def subset_val():
    return build_classification_dataset("fashion_mnist_subset_val")


# --- the embedded subset -------------------------------------------------------------------


def test_subset_counts_balance_and_items(subset_train, subset_val, no_network):
    for dataset, count, name in (
        (subset_train, 10000, "fashion_mnist_subset_train"),
        (subset_val, 2000, "fashion_mnist_subset_val"),
    ):
        assert len(dataset) == len(dataset.targets) == count
        assert np.bincount(dataset.targets).tolist() == [count // 10] * 10
        assert dataset.images.shape == (count, 28, 28) and dataset.images.dtype == np.uint8
        assert dataset.classes == FASHION_MNIST_CLASSES and dataset.in_channels == 1
        assert dataset.name == name
        image, label = dataset[7]
        assert image.mode == "L" and image.size == (28, 28)
        assert label == dataset.targets[7] and isinstance(label, int)
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top" and FASHION_MNIST_CLASSES[9] == "Ankle boot"
    # a fresh load with the network refused (the fixtures above loaded before it was)
    assert len(build_classification_dataset("fashion_mnist_subset_val")) == 2000
    assert not no_network
    # real images: not blank, not all alike
    assert 0.2 < subset_train.images.mean() / 255 < 0.4
    assert subset_train.images[0].tobytes() != subset_train.images[1].tobytes()


def test_subset_files_match_readme_checksums():
    folder = fashion_mnist.SUBSET_DIR
    readme = (folder / "README.md").read_text()
    rows = re.findall(r"\| `([\w.-]+-ubyte\.(?:gz|xz))` \| ([\d,]+) \| `(\w{64})` \|", readme)
    shipped = sorted(p.name for p in folder.glob("*-ubyte.*"))
    assert sorted(name for name, _, _ in rows) == shipped and len(shipped) == 4
    for name, size, digest in rows:
        data = (folder / name).read_bytes()
        assert len(data) == int(size.replace(",", ""))
        assert hashlib.sha256(data).hexdigest() == digest
    assert "Zalando SE" in (folder / "LICENSE").read_text()


# --- the full set and the fallback -----------------------------------------------------------


def _write_fake_full_set(folder, n_train=30, n_val=20):
    rng = np.random.default_rng(0)
    arrays = {}
    for stem, n in (("train", n_train), ("t10k", n_val)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{stem}-images-idx3-ubyte.gz").write_bytes(gzip.compress(encode_idx(images)))
        (folder / f"{stem}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(labels)))
        arrays[stem] = images
    return arrays


def test_full_set_from_env_var(tmp_path, monkeypatch, caplog):
    arrays = _write_fake_full_set(tmp_path)
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(tmp_path))
    with caplog.at_level(logging.INFO, logger="mobile_cv_nas.data"):
        train = build_classification_dataset("fashion_mnist_train")
        val = build_classification_dataset("fashion_mnist", split="val")
    assert (len(train), len(val)) == (30, 20)
    assert val.name == "fashion_mnist_val" and train.targets[:3] == [0, 1, 2]
    assert np.array_equal(np.asarray(train[5][0]), arrays["train"][5])
    assert str(tmp_path) in caplog.text
    # the subset names ignore the full set
    assert len(build_classification_dataset("fashion_mnist_subset_val")) == 2000


def test_full_set_env_var_to_incomplete_folder_is_an_error(tmp_path, monkeypatch):
    _write_fake_full_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(tmp_path))
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path))):
        build_classification_dataset("fashion_mnist_val")


def test_falls_back_to_subset_without_full_set(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(fashion_mnist.ENV_VAR, raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("MOBILE_CV_NAS_CACHE", str(tmp_path / "empty_cache"))
    with caplog.at_level(logging.INFO, logger="mobile_cv_nas.data"):
        val = build_classification_dataset("fashion_mnist_val")
    assert len(val) == 2000 and val.name == "fashion_mnist_val"
    assert "embedded subset" in caplog.text
    assert "tools/fetch_fashion_mnist.py" in caplog.text


def _deb_of(folder, tmp_path):
    """A .deb laid out like dataset-fashion-mnist's, holding `folder`'s idx files."""
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: dataset-fashion-mnist\nVersion: 0.0-test\nArchitecture: all\n"
        "Maintainer: tests <tests@example.org>\nDescription: test package\n"
    )
    data = root / fetch.PACKAGE_DIR
    data.mkdir(parents=True)
    for f in folder.glob("*.gz"):
        shutil.copy(f, data / f.name)
    deb = tmp_path / "dataset-fashion-mnist_0.0-test_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


def test_fetched_full_set_is_verified_installed_and_used(tmp_path, monkeypatch):
    files = tmp_path / "files"
    files.mkdir()
    arrays = _write_fake_full_set(files)
    expected = {f.name: fetch.content_sha256(f) for f in files.glob("*.gz")}
    deb = _deb_of(files, tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MOBILE_CV_NAS_CACHE", str(cache))
    monkeypatch.delenv(fashion_mnist.ENV_VAR, raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "absent"))

    # a content that differs from the expected checksums is refused, nothing installed
    wrong = dict(expected, **{"t10k-labels-idx1-ubyte.gz": "0" * 64})
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz.*not installed"):
        fetch.install_from_deb(deb, fetch.user_cache_dir(), expected=wrong)
    assert fashion_mnist.full_set_dir() is None

    target = fetch.install_from_deb(deb, fetch.user_cache_dir(), expected=expected)
    assert target == cache / "fashion-mnist"
    assert sorted(p.name for p in target.iterdir()) == sorted(expected)  # no scratch left
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in target.iterdir())
    assert fashion_mnist.full_set_dir() == target
    train = build_classification_dataset("fashion_mnist_train")
    assert len(train) == 30 and np.array_equal(np.asarray(train[7][0]), arrays["train"][7])


def test_published_checksums_are_not_the_subset():
    """The pinned checksums are the full set's: the embedded subset must not pass as it."""
    with pytest.raises(DatasetError, match="sha256"):
        fetch.verify(
            fashion_mnist.SUBSET_DIR,
            expected={
                "t10k-labels-idx1-ubyte.gz": (fetch.CONTENT_SHA256["t10k-labels-idx1-ubyte.gz"])
            },
        )


def test_corrupt_idx_file_is_a_dataset_error(tmp_path, monkeypatch):
    _write_fake_full_set(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03xx"))
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(tmp_path))
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        build_classification_dataset("fashion_mnist_train")


# --- folders of images -------------------------------------------------------------------


def _write_image_folder(root, classes=("cat", "dog"), per_class=4):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            mode = "L" if i == 0 else "RGB"  # a grayscale file is read as RGB too
            color = 40 * c + 10 * i if mode == "L" else (40 * c, 10 * i, 99)
            Image.new(mode, (8, 8), color).save(root / name / f"{i}.png")
    return root


def test_image_folder_loads_as_rgb(tmp_path):
    root = _write_image_folder(tmp_path / "pets")
    dataset = build_classification_dataset(str(root))
    assert dataset.classes == ["cat", "dog"] and dataset.in_channels == 3
    assert dataset.targets == [0, 0, 0, 0, 1, 1, 1, 1] and dataset.name == str(root)
    image, label = dataset[0]
    assert image.mode == "RGB" and image.size == (8, 8) and label == 0
    # split= picks the ImageNet-style subfolder
    _write_image_folder(tmp_path / "imagenet" / "val", classes=("a", "b", "c"), per_class=1)
    assert build_classification_dataset(str(tmp_path / "imagenet"), split="val").classes == [
        "a",
        "b",
        "c",
    ]


def test_missing_path_names_path_builtins_and_suggestion(tmp_path):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(DatasetError) as info:
        build_classification_dataset(str(missing))
    message = str(info.value)
    assert str(missing) in message and "fashion_mnist_subset_train" in message
    assert "Did you mean" not in message
    with pytest.raises(DatasetError, match="Did you mean 'fashion_mnist_train'"):
        build_classification_dataset("fashion_mnst_train")


def test_folder_without_class_folders(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")
    with pytest.raises(DatasetError, match="no class subfolders") as info:
        build_classification_dataset(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_class_folders_without_images(tmp_path):
    _write_image_folder(tmp_path, classes=("cat",))
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError) as info:
        build_classification_dataset(str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "dog") in message and ".png" in message and ".jpg" in message
    assert message.startswith("1 class folder(s)")  # cat/ holds images and is not listed


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK")
    with pytest.raises(DatasetError, match="not a folder"):
        build_classification_dataset(str(path))


# --- class subsets and the 80/20 split -------------------------------------------------------


def test_class_subset_deterministic_and_shared_by_train_and_val(subset_train, subset_val):
    train = class_subset(subset_train, 0.3, seed=5)
    val = class_subset(subset_val, 0.3, seed=5)
    assert train.classes == val.classes == class_subset(subset_train, 0.3, seed=5).classes
    assert len(train.classes) == 3
    assert [FASHION_MNIST_CLASSES.index(c) for c in train.classes] == sorted(
        FASHION_MNIST_CLASSES.index(c) for c in train.classes
    )
    assert (len(train), len(val)) == (3000, 600)
    assert sorted(set(train.targets)) == [0, 1, 2] and len(train.targets) == len(train)
    assert train.in_channels == 1 and train.name == "fashion_mnist_subset_train"
    # labels are remapped, images are those of the chosen classes
    image, label = train[10]
    base_index = train.indices[10]
    assert subset_train.classes[subset_train.targets[base_index]] == train.classes[label]
    assert np.array_equal(np.asarray(image), subset_train.images[base_index])
    # other seeds choose other classes; a count works too; 1.0 is the identity
    choices = {tuple(choose_classes(FASHION_MNIST_CLASSES, 0.3, s)) for s in range(10)}
    assert len(choices) > 1
    assert len(class_subset(subset_val, 2, seed=0).classes) == 2
    assert class_subset(subset_val, 1.0, seed=0) is subset_val
    with pytest.raises(DatasetError):
        apply_class_subset(subset_val, ["Trouser", "Socks"])
    with pytest.raises(DatasetError):
        choose_classes(FASHION_MNIST_CLASSES, 0.0, 0)


def test_split_indices_disjoint_cover_deterministic():
    first, second = split_indices(1000, 0.8, seed=3)
    assert (len(first), len(second)) == (800, 200)
    assert not set(first) & set(second) and sorted(first + second) == list(range(1000))
    assert (first, second) == split_indices(1000, 0.8, seed=3)
    assert first != split_indices(1000, 0.8, seed=4)[0]
    # stratified by class when given the targets
    targets = [i % 10 for i in range(500)]
    a, b = split_indices(targets, 0.8, seed=0)
    assert sorted(a + b) == list(range(500)) and (len(a), len(b)) == (400, 100)
    assert np.bincount([targets[i] for i in b]).tolist() == [10] * 10
    with pytest.raises(DatasetError, match="empty"):
        split_indices(1, 0.8, seed=0)
    with pytest.raises(DatasetError):
        split_indices(10, 1.0, seed=0)


# --- the batch sampler ---------------------------------------------------------------------


def _take(sampler, n):
    return list(islice(iter(sampler), n))


def test_sampler_resumes_exactly():
    full = _take(EpochBatchSampler(50, 4, seed=1), 40)  # 12 iterations per epoch: 3+ epochs
    for k in (0, 5, 12, 13, 30):
        resumed = _take(EpochBatchSampler(50, 4, seed=1, start_iter=k), 40 - k)
        assert resumed == full[k:]
    sampler = EpochBatchSampler(50, 4, seed=1)
    restored = EpochBatchSampler(50, 4, seed=1)
    restored.load_state_dict(sampler.state_dict(), start_iter=7)
    assert _take(restored, 3) == full[7:10]
    with pytest.raises(DatasetError, match="seed"):
        EpochBatchSampler(50, 4, seed=2).load_state_dict(sampler.state_dict(), 0)


def test_sampler_epochs_ranks_and_seeds():
    sampler = EpochBatchSampler(10, 3, seed=0)
    assert sampler.iters_per_epoch == 3
    batches = _take(sampler, 6)
    epoch0 = [i for b in batches[:3] for i, _ in b]
    epoch1 = [i for b in batches[3:] for i, _ in b]
    assert len(set(epoch0)) == len(set(epoch1)) == 9  # no repeats; the last partial dropped
    assert epoch0 != epoch1
    seeds = [s for b in batches for _, s in b]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)
    # two ranks split each global batch of 2 x 4 into disjoint halves of the same stream
    ranks = [EpochBatchSampler(20, 4, seed=9, rank=r, world_size=2) for r in (0, 1)]
    single = EpochBatchSampler(20, 8, seed=9)
    assert ranks[0].iters_per_epoch == 2
    batches = zip(_take(ranks[0], 5), _take(ranks[1], 5), _take(single, 5), strict=True)
    for step, (b0, b1, whole) in enumerate(batches):
        assert not {i for i, _ in b0} & {i for i, _ in b1}, step
        assert b0 + b1 == whole
    with pytest.raises(DatasetError, match="10 samples.*global batch of 12"):
        EpochBatchSampler(10, 6, seed=0, world_size=2)


# --- seeded transforms and the loaders -------------------------------------------------------


@pytest.fixture(scope="module")
def small_train(subset_train):
    return SeededTransformDataset(subset_train, indices=range(64), transform=_random_transform())


def _random_transform():
    return T.Compose(
        [
            T.RandomResizedCrop(20),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize((0.5,), (0.5,)),
        ]
    )


def test_seeded_transform_is_reproducible(small_train):
    a, label = small_train[(3, 12345)]
    b, _ = small_train[(3, 12345)]
    assert torch.equal(a, b) and a.shape == (1, 20, 20) and isinstance(label, int)
    others = [small_train[(3, s)][0] for s in range(6)]
    assert any(not torch.equal(a, o) for o in others)
    # the caller's RNG is untouched
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    small_train[(4, 1)]
    assert torch.equal(torch.rand(3), expected)
    # indices map into the base
    image, label = SeededTransformDataset(small_train.base, [9], None)[(0, 1)]
    assert label == small_train.base.targets[9]
    assert np.array_equal(np.asarray(image), small_train.base.images[9])


def test_train_loader_same_batches_with_workers_and_resume(subset_train):
    transform = train_transform(20, 1, *default_mean_std(1, "fashion_mnist_train"), "imagenet")
    kwargs = dict(
        dataset=subset_train, transform=transform, batch_size=8, seed=4, indices=range(40)
    )
    plain = build_train_loader(**kwargs)
    assert plain.iters_per_epoch == 5 and plain.batch_sampler.iters_per_epoch == 5
    reference = list(islice(iter(plain), 7))  # crosses an epoch boundary
    images, labels = reference[0]
    assert images.shape == (8, 1, 20, 20) and images.dtype == torch.float32
    assert labels.dtype == torch.long and labels.shape == (8,)
    workers = list(islice(iter(build_train_loader(**kwargs, num_workers=2)), 7))
    resumed = list(islice(iter(build_train_loader(**kwargs, start_iter=4)), 3))
    for (ri, rl), (wi, wl) in zip(reference, workers, strict=True):
        assert torch.equal(ri, wi) and torch.equal(rl, wl)
    for (ri, rl), (si, sl) in zip(reference[4:], resumed, strict=True):
        assert torch.equal(ri, si) and torch.equal(rl, sl)


class _Numbered(torch.utils.data.Dataset):
    """Sample i is (tensor [i], i): what a loader yields shows which samples it read."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([i]), i


def test_eval_loader_covers_every_sample_once_over_ranks(subset_val):
    seen = []
    for rank in (0, 1):
        loader = build_eval_loader(_Numbered(13), None, batch_size=4, rank=rank, world_size=2)
        batches = list(loader)
        assert [len(labels) for _, labels in batches] == ([4, 3] if rank == 0 else [4, 2])
        assert loader.num_samples == (7 if rank == 0 else 6)
        seen.extend(labels.tolist() for _, labels in batches)
    assert sorted(i for part in seen for i in part) == list(range(13))
    # with a real dataset and transform: tensors in order, the last partial batch kept
    loader = build_eval_loader(subset_val, eval_transform(16, 1, (0.3,), (0.4,)), batch_size=512)
    shapes = [tuple(images.shape) for images, _ in loader]
    assert shapes == [(512, 1, 16, 16)] * 3 + [(464, 1, 16, 16)]


# --- transforms ----------------------------------------------------------------------------


def test_transforms_shapes_channels_and_stats():
    gray = Image.fromarray((np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28))
    color = Image.new("RGB", (40, 30), (200, 100, 50))
    assert eval_transform(32, 3, *default_mean_std(3, "x"))(gray).shape == (3, 32, 32)
    assert eval_transform(16, 3, *default_mean_std(3, "x"), resize=20)(color).shape == (3, 16, 16)
    assert eval_transform(24, 1, *default_mean_std(1, "x"))(color).shape == (1, 24, 24)
    for augment in ("none", "flip", "imagenet"):
        assert train_transform(24, 1, (0.5,), (0.5,), augment)(color).shape == (1, 24, 24)
    assert default_mean_std(1, "fashion_mnist_subset_val") == ((0.2860,), (0.3530,))
    assert default_mean_std(3, "fashion_mnist_train") == ((0.2860,) * 3, (0.3530,) * 3)
    assert default_mean_std(3, "/data/imagenet") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    # "none" is eval without resize: identical output
    tr = train_transform(20, 1, (0.3,), (0.4,), "none")
    assert torch.equal(tr(gray), eval_transform(20, 1, (0.3,), (0.4,))(gray))
    with pytest.raises(DatasetError, match="augment"):
        train_transform(20, 1, (0.3,), (0.4,), "mixup")
    # the input is divided by the std: zero, negative or not finite is refused when built
    for mean, std in (((0.3,), (0.0,)), ((0.3,), (-0.4,)), ((float("nan"),), (0.4,))):
        with pytest.raises(DatasetError, match="every std > 0"):
            eval_transform(20, 1, mean, std)
