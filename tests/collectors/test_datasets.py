"""Datasets: manifests, records and schemas of JSONL/CSV/Parquet, datasheets, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.datasets import collect_dataset, read_datasheet
from collectors.hashing import build_manifest
from evidence.errors import CollectorError, InputError
from schemas.dataset import DATASET
from schemas.statement import Statement
from tests.collectors.lineage_data import write_dataset


def test_a_dataset_directory_is_hashed_counted_and_described(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "tickets")
    statement = collect_dataset(directory)
    Statement.model_validate(statement)
    predicate = statement["predicate"]
    assert statement["predicateType"] == DATASET
    digest = build_manifest(directory).digest  # the same manifest as models
    assert statement["subject"] == [
        {"name": "dataset:support-tickets", "digest": {"sha256": digest}}
    ]
    files = {f["path"]: f for f in predicate["files"]}
    assert files["train.jsonl"]["records"] == 2
    assert files["train.jsonl"]["schema"] == {
        "id": "integer",
        "label": "boolean|null",
        "text": "string",
    }
    assert files["eval.csv"]["records"] == 3
    assert files["eval.csv"]["schema"] == {"id": "integer", "text": "string", "score": "number"}
    assert files["test.parquet"]["records"] == 3
    assert files["test.parquet"]["schema"] == {"id": "int64", "text": "string"}
    assert files["datasheet.yaml"]["format"] == "documentation"
    assert predicate["records"] == 8
    assert predicate["datasheet"] == "datasheet.yaml"  # inside the manifest
    assert predicate["licence"] == "CC-BY-4.0"
    assert predicate["legalBasis"] == "legitimate-interests"
    assert predicate["specialCategories"] == ["health"]
    assert predicate["personalData"] is True
    assert predicate["missing"] == ["description"]
    assert predicate["description"] is None  # kept, null: visibly missing


def test_missing_datasheet_fields_are_recorded_as_missing_not_guessed(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "d", datasheet="source: web crawl\n")
    predicate = collect_dataset(directory)["predicate"]
    assert predicate["missing"] == [
        "description",
        "licence",
        "legalBasis",
        "personalData",
        "specialCategories",
    ]
    assert predicate["licence"] is None and predicate["specialCategories"] is None
    assert predicate["name"] == "d"


def test_an_empty_special_categories_list_declares_none(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "d", datasheet="special_categories: []\n")
    predicate = collect_dataset(directory)["predicate"]
    assert predicate["specialCategories"] == []
    assert "specialCategories" not in predicate["missing"]


def test_a_single_file_with_a_datasheet_given(tmp_path: Path) -> None:
    data = tmp_path / "one.jsonl"
    data.write_text('{"a": 1}\n{"a": "x", "b": [1]}\n')
    sheet = tmp_path / "elsewhere.yaml"
    sheet.write_text("licence: MIT\n")
    predicate = collect_dataset(data, datasheet=sheet)["predicate"]
    assert [f["path"] for f in predicate["manifest"]["files"]] == ["one.jsonl"]
    assert predicate["files"][0]["schema"] == {"a": "integer|string", "b": "array"}
    assert predicate["datasheet"] == str(sheet.resolve())  # outside the manifest: its own digest
    assert len(predicate["datasheetSha256"]) == 64


def test_without_a_datasheet_everything_is_missing(tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("a,b\n1,2\n")
    predicate = collect_dataset(data)["predicate"]
    assert predicate["datasheet"] is None
    assert len(predicate["missing"]) == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n{"a": \n', "train.jsonl:2: not JSON"),
        (b'{"a": 1}\n[1, 2]\n', "train.jsonl:2: a JSON Lines record must be an object, not array"),
        (b'{"a": 1}\n{"a": "caf\xe9"}\n', "train.jsonl:2: byte 11 of the line is not UTF-8 (0xe9)"),
    ],
)
def test_bad_jsonl_lines_are_refused_with_file_and_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    directory = write_dataset(tmp_path / "d")
    (directory / "train.jsonl").write_bytes(content)
    with pytest.raises(CollectorError) as caught:
        collect_dataset(directory)
    assert message in str(caught.value)
    assert str(directory.resolve()) in str(caught.value)


def test_a_csv_row_with_the_wrong_number_of_fields_is_refused(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "d")
    (directory / "eval.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(CollectorError, match=r"eval.csv:3: 1 fields, the header has 2"):
        collect_dataset(directory)


def test_a_broken_parquet_file_is_refused(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "d")
    (directory / "test.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(CollectorError, match=r"test.parquet: not a readable Parquet file"):
        collect_dataset(directory)


def test_an_unknown_format_is_refused_unless_declared_binary(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "d")
    (directory / "images.bin").write_bytes(b"\x00\x01")
    with pytest.raises(CollectorError, match=r"images.bin: unknown dataset format"):
        collect_dataset(directory)
    (directory / "datasheet.yaml").write_text("format: binary\n")
    predicate = collect_dataset(directory)["predicate"]
    files = {f["path"]: f for f in predicate["files"]}
    assert files["images.bin"] == {
        "path": "images.bin",
        "format": "binary",
        "records": None,
        "schema": None,
    }


@pytest.mark.parametrize(
    ("sheet", "field"),
    [
        ("personal_data: yes please\n", "personal_data"),
        ("licence: 3\n", "licence"),
        ("special_categories: [heath]\n", "special_categories.0"),
        ("legal_basis: because\n", "legal_basis"),
        ("licnce: MIT\n", "licnce"),
    ],
)
def test_a_datasheet_with_wrong_types_names_file_and_field(
    tmp_path: Path, sheet: str, field: str
) -> None:
    directory = write_dataset(tmp_path / "d", datasheet=sheet)
    with pytest.raises(InputError, match=rf"datasheet.yaml: field {field}:"):
        collect_dataset(directory)


def test_a_datasheet_that_is_not_yaml_names_the_line(tmp_path: Path) -> None:
    sheet = tmp_path / "datasheet.yaml"
    sheet.write_text("source: ok\nlicence: [unclosed\n")
    with pytest.raises(InputError, match=r"datasheet.yaml:\d+: not valid YAML"):
        read_datasheet(sheet)


def test_a_file_that_changes_after_hashing_is_refused(tmp_path: Path) -> None:
    from collectors.dataset_formats import read_jsonl

    data = tmp_path / "a.jsonl"
    data.write_text('{"a": 1}\n')
    with pytest.raises(CollectorError, match="changed after it was hashed"):
        read_jsonl(data, "0" * 64)


def test_lines_longer_than_a_read_chunk_are_whole(tmp_path: Path) -> None:
    from collectors.dataset_formats import hashed_lines

    data = tmp_path / "long.jsonl"
    long_value = "x" * (3 << 20)  # three read chunks in one line
    data.write_text(f'{{"a": "{long_value}"}}\n{{"b": 1}}')
    digest = build_manifest(tmp_path).by_path()["long.jsonl"].sha256
    lines = list(hashed_lines(data, digest))
    assert [n for n, _ in lines] == [1, 2]
    assert len(lines[0][1]) == len(long_value) + 10
    assert lines[1][1] == b'{"b": 1}'


def test_without_pyarrow_a_parquet_file_is_a_clear_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    from collectors import dataset_formats

    real = importlib.import_module

    def no_pyarrow(name: str, package: str | None = None) -> object:
        if name.startswith("pyarrow"):
            raise ImportError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr(dataset_formats.importlib, "import_module", no_pyarrow)
    directory = write_dataset(tmp_path / "d")
    with pytest.raises(CollectorError, match=r"test.parquet: reading Parquet needs pyarrow"):
        collect_dataset(directory)
    (directory / "test.parquet").unlink()
    assert collect_dataset(directory)["predicate"]["records"] == 5  # the other formats need none
