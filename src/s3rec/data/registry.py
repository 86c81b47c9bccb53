"""The five public benchmark datasets: where they live, how to fetch and verify them, how to load them.

A dataset NAME on the command line is a registered name (Beauty, Sports, Toys, Yelp, LastFM; any
case) or the file stem of a dataset in the data folder. Folders searched, in order: ``--data-dir``,
then ``$S3REC_DATA_DIR``, then the cache (``$S3REC_CACHE_DIR``, default ``~/.cache/s3rec``) where
``s3rec data fetch`` puts downloads. A dataset's files there: ``NAME.txt`` (required),
``NAME_item2attributes.json`` (optional: a dataset without one has no attributes) and
``NAME_sample.txt`` (the sampled protocol's negatives, made when missing). Only a name that does not
exist counts as missing: one that is not a regular file is an error (:func:`.formats.present`).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, S3RecError
from ..fileio import atomic_path
from .formats import present
from .store import Dataset, load_files

# The authors' repository (RUCAIBox/CIKM2020-S3Rec), data/ folder on branch master.
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data/"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    stem: str
    sha256: dict[str, str]  # file name -> digest, for every file published upstream that we fetch
    pretrain_epochs: int  # the released checkpoints' schedule (docs/semantics.md, #pre-training)
    # fine-tuning never stops early before this epoch (TrainConfig.min_epochs = -1). LastFM: 50. Its
    # validation set is 1,090 users and models trained from scratch sit at popularity level from about
    # epoch 10 to 30 before they climb; patience 10 alone stopped 7 of 10 baselines there (SASRec seed
    # 42: stopped at 21, test NDCG@10 0.161; seeds 43 and 44 got past it: 0.278 and 0.265, paper 0.2755)
    min_finetune_epochs: int = 0

    @property
    def files(self) -> list[str]:
        return list(self.sha256)


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo(
            "Beauty",
            "Beauty",
            {
                "Beauty.txt": "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
                "Beauty_item2attributes.json": "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
            },
            150,
        ),
        DatasetInfo(
            "Sports",
            "Sports_and_Outdoors",
            {
                "Sports_and_Outdoors.txt": "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
                "Sports_and_Outdoors_item2attributes.json": (
                    "7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b"
                ),
            },
            100,
        ),
        DatasetInfo(
            "Toys",
            "Toys_and_Games",
            {
                "Toys_and_Games.txt": "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
                "Toys_and_Games_item2attributes.json": (
                    "d371acd25101eedac04afc727626464b7acec770c4eda708705d51eb76eb1ad0"
                ),
            },
            150,
        ),
        DatasetInfo(
            "Yelp",
            "Yelp",
            {
                "Yelp.txt": "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
                "Yelp_item2attributes.json": "f25acd5e1e680e0b22fd4e3f4fb6be4b2a7461e9222610616e3e1ee6702dd58d",
            },
            100,
        ),
        DatasetInfo(
            "LastFM",
            "LastFM",
            {
                "LastFM.txt": "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
                "LastFM_item2attributes.json": "a4ccd678dc9ff6d43fe5073f491db5c9b02eb98dfa4f8c0382913a784be217ef",
                "LastFM_sample.txt": "60194cc2e4fd1aa8b5dc8872e1f3af9c6abd09c39d478d3df9337cb97e6e2f0d",
            },
            150,
            min_finetune_epochs=50,
        ),
    ]
}


def registered(name: str) -> DatasetInfo | None:
    """The registered dataset called ``name`` (case-insensitive; the file stem works too)."""
    for d in DATASETS.values():
        if name.lower() in (d.name.lower(), d.stem.lower()):
            return d
    return None


def min_finetune_epochs(name: str) -> int:
    """The epochs before which fine-tuning on this dataset never stops early (0 when unregistered)."""
    info = registered(name)
    return info.min_finetune_epochs if info else 0


def cache_dir() -> Path:
    return Path(os.environ.get("S3REC_CACHE_DIR") or Path.home() / ".cache" / "s3rec")


def data_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for dataset files, in order."""
    dirs = []
    if data_dir:
        dirs.append(Path(data_dir))
    if os.environ.get("S3REC_DATA_DIR"):
        dirs.append(Path(os.environ["S3REC_DATA_DIR"]))
    dirs.append(cache_dir() / "data")
    return dirs


@dataclass(frozen=True)
class DatasetFiles:
    name: str  # registered name, or the stem for an unregistered dataset
    stem: str
    folder: Path
    sequences: Path
    attributes: Path | None
    negatives: Path | None  # None when no negatives file exists yet


def negatives_cache_path(stem: str) -> Path:
    return cache_dir() / "negatives" / f"{stem}_sample.txt"


def locate(name: str, data_dir: str | os.PathLike | None = None) -> DatasetFiles:
    """Find a dataset's files, or raise an error that says how to get them."""
    if data_dir and not Path(data_dir).is_dir():  # a typo must not fall back to $S3REC_DATA_DIR or the cache
        raise S3RecError(f"--data-dir {data_dir}: no such folder")
    info = registered(name)
    stem = info.stem if info else name
    dirs = data_dirs(data_dir)
    for folder in dirs:
        seq = folder / f"{stem}.txt"
        if present(seq):
            attr = folder / f"{stem}_item2attributes.json"
            neg = folder / f"{stem}_sample.txt"
            if not present(neg):
                neg = negatives_cache_path(stem)
            return DatasetFiles(
                info.name if info else stem,
                stem,
                folder,
                seq,
                attr if present(attr) else None,
                neg if present(neg) else None,
            )
    searched = ", ".join(str(d) for d in dirs)
    if info:
        how = f"run `s3rec data fetch {info.name}` or point --data-dir / S3REC_DATA_DIR at a folder holding {stem}.txt"
    else:
        known = ", ".join(DATASETS)
        how = f"it is not a registered dataset ({known}) and no {stem}.txt was found; check --data-dir / S3REC_DATA_DIR"
    raise S3RecError(f"dataset {name!r} not found (searched {searched}): {how}")


def datasets_in(folder: str | os.PathLike) -> list[str]:
    """The datasets of a folder, by name (registered name or file stem), sorted: one per ``NAME.txt``
    (negatives files, ``NAME_sample.txt``, are a dataset's companions, not datasets)."""
    stems = sorted(p.stem for p in Path(folder).glob("*.txt") if not p.stem.endswith("_sample"))
    return [registered(s).name if registered(s) else s for s in stems]


def only_dataset(data_dir: str | os.PathLike) -> str:
    """The dataset of ``--data-dir`` when no ``--dataset`` is given: its only one. A folder holding
    none or several is an error that lists what is there (never a silent fall-back to the default
    dataset, LastFM, found elsewhere)."""
    if not Path(data_dir).is_dir():
        raise S3RecError(f"--data-dir {data_dir}: no such folder")
    names = datasets_in(data_dir)
    if len(names) == 1:
        return names[0]
    there = f"it holds {len(names)} datasets ({', '.join(names)})" if names else "it holds no dataset (no NAME.txt)"
    raise S3RecError(f"--data-dir {data_dir} without --dataset: {there}; choose one with --dataset NAME")


def load(name: str, data_dir=None) -> Dataset:
    """Read and validate a dataset's sequences and attributes (nothing is written or printed). With
    the sampled protocol's negatives: :func:`.negatives.load_with_negatives`."""
    files = locate(name, data_dir)
    return load_files(files.name, files.sequences, files.attributes)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


URL_SCHEMES = ("http", "https", "file")


def check_url(url: str, where: str) -> str:
    """``url`` when it can be downloaded from (``http://HOST/...``, ``https://HOST/...`` or
    ``file:///...``), else a one-line error naming ``where`` it came from (a flag, a variable)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as e:
        raise S3RecError(f"{where} {url!r}: not a URL ({e})") from None
    if parts.scheme.lower() not in URL_SCHEMES or (parts.scheme.lower() != "file" and not parts.hostname):
        raise S3RecError(f"{where} {url!r}: not a URL to download from; give http://HOST/..., https://HOST/... "
                         "or file:///FOLDER/")
    return url


def fetch(
    name: str,
    base_url: str | None = None,
    dest: Path | None = None,
    data_dir=None,
    timeout: float = 60.0,
    quiet: bool = False,
) -> Path:
    """Make a registered dataset available locally, verified by SHA-256.

    If a searched data folder already holds files with the right digests, nothing is downloaded.
    Otherwise each file is downloaded from ``base_url`` (default: the authors' repository, or
    ``$S3REC_DATA_URL``) into ``dest`` (default: the cache), verified, and moved into place
    atomically; a file with the wrong digest is rejected and nothing of it is left behind.
    """
    info = registered(name)
    if info is None:
        raise S3RecError(f"{name!r} is not a registered dataset; known: {', '.join(DATASETS)}")
    if base_url is not None:
        check_url(base_url, "--url")
    log = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    for folder in data_dirs(data_dir):
        if all((folder / f).is_file() and sha256_file(folder / f) == d for f, d in info.sha256.items()):
            log(f"{info.name}: already present and verified in {folder}")
            return folder
    if base_url is None and os.environ.get("S3REC_DATA_URL"):
        base_url = check_url(os.environ["S3REC_DATA_URL"], "$S3REC_DATA_URL")
    base_url = base_url or DEFAULT_BASE_URL
    if not base_url.endswith("/"):
        base_url += "/"
    dest = Path(dest) if dest else cache_dir() / "data"
    made = [p for p in [dest, *dest.parents] if not p.exists()]  # deepest first
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for fname, digest in info.sha256.items():
            target = dest / fname
            if target.is_file() and sha256_file(target) == digest:
                log(f"{fname}: already in {dest}")
                continue
            log(f"downloading {base_url + fname}")
            download(base_url + fname, target, digest, timeout)
            log(f"{fname}: verified")
    except BaseException:
        for folder in made:  # a failed fetch leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return dest


def download(url: str, target: Path, digest: str, timeout: float = 60.0) -> None:
    """Download ``url`` to ``target`` atomically, refused (and nothing left) unless its SHA-256 is ``digest``."""
    with atomic_path(target) as tmp:
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            raise S3RecError(f"could not download {url}: {getattr(e, 'reason', e) or type(e).__name__}") from None
        if h.hexdigest() != digest:
            raise DataError(url, None, f"SHA-256 mismatch: expected {digest}, got {h.hexdigest()}; file rejected")
