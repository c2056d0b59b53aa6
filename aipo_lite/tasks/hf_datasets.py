"""Hugging Face dataset folders (save_to_disk) and parquet files as task sources: which form a
source has, and its rows for one split (through `datasets`, an optional dependency)."""

from __future__ import annotations

from pathlib import Path


def hf_source(source, split: str) -> tuple[str, object] | None:
    """('disk', folder) for a `datasets` save_to_disk folder, ('parquet', [files]) for parquet
    files (one file, a '{split}' path, or a folder whose files are named by split as on the
    hub: train-00000-of-00001.parquet, test-...), else None (JSONL)."""
    text = str(source)
    path = Path(text.replace("{split}", split))
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        return "disk", path
    if path.suffix == ".parquet":
        if not path.exists():
            raise FileNotFoundError(f"tasks={text!r}: the {split} file {str(path)!r} does not exist")
        return "parquet", [path]
    if path.is_dir() and not (path / f"{split}.jsonl").exists():
        files = sorted(f for f in path.rglob("*.parquet") if f.name.split("-")[0].split(".")[0] == split)
        if files:
            return "parquet", files
        if any(path.rglob("*.parquet")):
            found = sorted({f.name.split("-")[0].split(".")[0] for f in path.rglob("*.parquet")})
            raise FileNotFoundError(f"tasks={text!r} has parquet files for splits {found}, none for {split!r}")
    return None


def hf_rows(hf: tuple[str, object], source, split: str) -> list[dict]:
    """The split's rows through `datasets` (pip install datasets; in the dev extra)."""
    try:
        import datasets
    except ImportError:
        raise ImportError(f"tasks={str(source)!r} is a Hugging Face dataset: `pip install datasets` "
                          "(it is in this kit's dev extra)") from None
    kind, where = hf
    if kind == "parquet":
        return list(datasets.load_dataset("parquet", data_files={split: [str(f) for f in where]}, split=split))
    ds = datasets.load_from_disk(str(where))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"tasks={str(source)!r} has splits {list(ds)}, not {split!r} "
                             "(the kit needs 'train' and 'test')")
        ds = ds[split]
    elif split != "test":
        raise ValueError(f"tasks={str(source)!r} is one dataset without splits: save a DatasetDict "
                         "with 'train' and 'test'")
    return list(ds)
