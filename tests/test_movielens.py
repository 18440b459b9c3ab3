"""MovieLens readers: RecBole atomic files and the original GroupLens files."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.ops.movielens import DatasetError, read_movielens


def test_reads_recbole_atomic_files_in_time_order_with_file_order_ties(tmp_path: Path):
    (tmp_path / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tGoldenEye\t1995\tAction Adventure Thriller\n"
    )
    (tmp_path / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n7\t2\t4\t900\n7\t1\t5\t800\n8\t1\t3\t800\n"
    )
    data = read_movielens(tmp_path)
    assert [(i.item_id, i.title, i.categories) for i in data.items][0] == ("1", "Toy Story (1995)", ["Animation", "Children's", "Comedy"])
    assert [(r.user_id, r.item_id) for r in data.ratings] == [("7", "1"), ("8", "1"), ("7", "2")]
    event = data.ratings[0].to_event()
    assert event.ts == 800_000 and event.value == 5.0 and event.event_id == "ml100k-7-1-800000"


def test_reads_grouplens_files(tmp_path: Path):
    flags = ["0"] * 19
    flags[1] = flags[15] = "1"  # Action, Sci-Fi
    (tmp_path / "u.item").write_bytes(("1|Star Wars (1977)|01-Jan-1977||http://x|" + "|".join(flags) + "\n").encode("latin-1"))
    (tmp_path / "u.data").write_text("196\t1\t3\t881250949\n")
    data = read_movielens(tmp_path)
    assert data.items[0].title == "Star Wars (1977)" and data.items[0].categories == ["Action", "Sci-Fi"]
    assert data.ratings[0].ts_ms == 881250949000


def test_missing_files_are_a_clear_error(tmp_path: Path):
    with pytest.raises(DatasetError):
        read_movielens(tmp_path)
