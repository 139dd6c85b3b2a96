"""Reading the rows a Delta table gained since a checkpoint, in batches, from the table's log."""

from __future__ import annotations

from pathlib import Path

import pytest
from delta.tables import DeltaTable

from governance.stream_offsets import stream_lags
from lakehouse.config import load_config
from lakehouse.delta_increments import DeltaIncrements, UnreadableIncrement
from lakehouse.tables import current_version


def append(spark, path: str, *rows: str, files: int = 1) -> int:
    spark.createDataFrame([(r,) for r in rows], "raw string").repartition(files).write.format("delta").mode("append").save(path)
    return current_version(spark, _ref(path))


def _ref(path: str):
    from lakehouse.config import TableRef

    return TableRef(name="bronze.t", path=path)


def drain(spark, path: str, checkpoint: Path, max_bytes: int = 1 << 30) -> list[tuple[int, list[str]]]:
    """One run of a reader: (batch id, its rows) per batch, each committed after it is read."""
    increments = DeltaIncrements(spark, path, checkpoint, max_bytes, upto=current_version(spark, _ref(path)))
    out = []
    for batch in increments.batches():
        increments.begin(batch)
        out.append((batch.id, sorted(r.raw for r in increments.read(batch).collect()) if batch.files else []))
        increments.commit(batch)
    return out


def test_a_first_run_reads_the_snapshot_and_later_runs_only_what_later_commits_added(spark, tmp_path):
    # Given a table of two commits
    path = str(tmp_path / "t")
    append(spark, path, "a", "b")
    append(spark, path, "c")
    cfg = load_config("local", root=tmp_path)
    checkpoint = cfg.checkpoint_dir("refine_silver", "t")
    # When a reader runs, then it gets every row in one batch
    assert drain(spark, path, checkpoint) == [(0, ["a", "b", "c"])]
    # and a second run with nothing new gets nothing
    assert drain(spark, path, checkpoint) == []
    # When a commit adds rows and a DELETE rewrites a file, then only the added rows come, the delete is passed over
    append(spark, path, "d", "e")
    DeltaTable.forPath(spark, path).delete("raw = 'a'")
    append(spark, path, "f")
    # (governance reads the checkpoint as a stream's: the versions after the first run's are unread)
    ref = _ref(path)
    assert [lag.unread for lag in stream_lags(cfg, [ref], {ref.name: current_version(spark, ref)})] == [[2, 3, 4]]
    assert drain(spark, path, checkpoint) == [(1, ["d", "e", "f"])]
    # and once read, nothing is left unread for an erasure to wait for
    assert stream_lags(cfg, [ref], {ref.name: current_version(spark, ref)}) == []
    # When only a DELETE comes, then a batch of no rows moves past it: a second erasure need not wait
    DeltaTable.forPath(spark, path).delete("raw = 'b'")
    assert drain(spark, path, checkpoint) == [(2, [])]
    assert stream_lags(cfg, [ref], {ref.name: current_version(spark, ref)}) == []
    assert drain(spark, path, checkpoint) == []


def test_a_first_run_over_rows_deleted_in_place_reads_the_snapshot_as_delta_means_it(spark, tmp_path):
    # Given a table with deletion vectors, one row deleted in place before any reader ran
    path = str(tmp_path / "t")
    append(spark, path, "a", "b", "c")
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    DeltaTable.forPath(spark, path).delete("raw = 'a'")
    checkpoint = tmp_path / "cp"
    # When a reader runs, then the deleted row is not among its rows
    assert drain(spark, path, checkpoint) == [(0, ["b", "c"])]
    # and a later commit comes alone
    append(spark, path, "d")
    assert drain(spark, path, checkpoint) == [(1, ["d"])]


def test_a_batch_takes_files_until_it_holds_max_bytes_and_a_killed_batch_is_replayed_whole(spark, tmp_path):
    # Given a commit of four files
    path = str(tmp_path / "t")
    append(spark, path, *[f"r{i}" for i in range(40)], files=4)
    checkpoint = tmp_path / "cp"
    sizes = [f.stat().st_size for f in Path(path).glob("*.parquet")]
    assert max(sizes) < 2 * min(sizes)  # near-equal files: one holds less than 2 * the smallest, two at least that
    increments = DeltaIncrements(spark, path, checkpoint, max_bytes=2 * min(sizes), upto=0)
    batches = list(increments.batches())
    # Then a batch takes files until it holds max_bytes: two per batch, never a file across batches
    assert [len(b.files) for b in batches] == [2, 2]
    # When a run records its first batch and dies before committing it
    increments.begin(batches[0])
    first_rows = sorted(r.raw for r in increments.read(batches[0]).collect())
    # Then the next run replays that batch, same id and same rows, then the rest
    again = drain(spark, path, checkpoint, max_bytes=2 * min(sizes))
    assert [b for b, _ in again] == [0, 1] and again[0][1] == first_rows
    assert sorted(r for _, rows in again for r in rows) == sorted(f"r{i}" for i in range(40))


def test_a_checkpoint_a_delta_stream_left_resumes_with_the_rows_it_had_not_read(spark, tmp_path):
    # Given a Delta stream (skipChangeCommits) that read a table's first commit into its checkpoint
    path = str(tmp_path / "t")
    append(spark, path, "a", "b")
    checkpoint = tmp_path / "cp"
    (spark.readStream.format("delta").option("skipChangeCommits", "true").load(path).writeStream
     .format("noop").option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start()
     .awaitTermination())
    # When the table gains a commit and a reader runs on that checkpoint
    append(spark, path, "c")
    # Then it reads only the new commit, as batch 1
    assert drain(spark, path, checkpoint) == [(1, ["c"])]


def test_a_replaced_table_or_a_log_that_lost_unread_versions_is_a_clear_error(spark, tmp_path):
    # Given a reader that read a table
    path = str(tmp_path / "t")
    append(spark, path, "a")
    checkpoint = tmp_path / "cp"
    drain(spark, path, checkpoint)
    # When the log no longer holds a version it has not read (ten commits later, a Delta checkpoint
    # stands in for the commits before it, and log clean-up took them)
    for i in range(10):
        append(spark, path, f"b{i}")
    for version in range(1, 10):
        (Path(path) / "_delta_log" / f"{version:020d}.json").unlink()
    # Then the run stops with what is missing and what to do
    with pytest.raises(UnreadableIncrement, match="version 1 of .* is no longer in its log") as err:
        drain(spark, path, checkpoint)
    assert "remove" in err.value.hint
    # When the table is replaced by another at the same place
    other = str(tmp_path / "other")
    append(spark, other, "x")
    with pytest.raises(UnreadableIncrement, match="the table was replaced"):
        drain(spark, other, checkpoint)
