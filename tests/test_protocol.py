import io
import json

import pytest

from voicelane.protocol import Emitter, fold, iter_lines, parse_line


def test_emit_and_parse_roundtrip():
    buf = io.StringIO()
    em = Emitter(buf)
    em.set_total(3)
    em.progress(1)
    em.stats({"b": 2, "a": {"z": 1, "y": [1, 2]}})
    em.artifact("bundles/x/voice_bundle/manifest.json")
    lines = buf.getvalue().splitlines()
    assert lines == [
        "PROGRESS 1 3",
        'STATS {"a":{"y":[1,2],"z":1},"b":2}',
        "ARTIFACT bundles/x/voice_bundle/manifest.json",
    ]
    view = fold(lines)
    assert (view.current, view.total) == (1, 3)
    assert view.metadata == {"a": {"y": [1, 2], "z": 1}, "b": 2}
    assert view.artifacts == ["bundles/x/voice_bundle/manifest.json"]
    assert view.message == "Step 1/3"


def test_stats_keys_sorted_and_compact():
    buf = io.StringIO()
    Emitter(buf).stats({"z": 1.5, "a": "é"})
    assert buf.getvalue() == 'STATS {"a":"é","z":1.5}\n'


@pytest.mark.parametrize("bad", [-1, 4])
def test_progress_bounds(bad):
    em = Emitter(io.StringIO(), total=3)
    with pytest.raises(ValueError):
        em.progress(bad)


def test_total_is_fixed():
    em = Emitter(io.StringIO(), total=3)
    with pytest.raises(ValueError):
        em.set_total(4)
    with pytest.raises(ValueError):
        Emitter(io.StringIO()).progress(0)


@pytest.mark.parametrize("path", ["/abs/x", "../x", "a/../../b", ""])
def test_artifact_must_be_relative(path):
    with pytest.raises(ValueError):
        Emitter(io.StringIO()).artifact(path)


def test_parser_tolerates_garbage():
    lines = [
        "STATS {not json",
        "PROGRESS x 3",
        "PROGRESS 5 3",
        "hello world",
        "STATS [1,2]",
        "PROGRESS 2 3",
        'STATS {"ok":true}',
    ]
    view = fold(lines)
    assert (view.current, view.total) == (2, 3)
    assert view.metadata == {"ok": True}
    assert len(view.warnings) == 4
    assert parse_line("hello").kind == "OTHER"
    assert parse_line("STATS {bad").warning.startswith("malformed STATS")


def test_parser_accepts_old_line_extras():
    ev = parse_line("PROGRESS 5 100 LOSS 0.3")
    assert (ev.kind, ev.current, ev.total, ev.extras, ev.warning) == ("PROGRESS", 5, 100, {"loss": 0.3}, None)
    assert parse_line("PROGRESS 5 100 PHASE train").extras == {"phase": "train"}
    assert parse_line("PROGRESS 5 100 LOSS").kind == "OTHER"  # not KEY VALUE pairs
    assert parse_line("PROGRESS 5 100 LOSS nan").extras == {"loss": "nan"}  # never a NaN in metadata
    assert parse_line("DONE").kind == "DONE" and parse_line("DONE").warning is None
    view = fold(["PROGRESS 1 2 LOSS 0.5", "PROGRESS 2 2 LOSS 0.25", "DONE"])
    assert (view.current, view.total, view.metadata, view.done, view.warnings) == (2, 2, {"loss": 0.25}, True, [])


def test_iter_lines_splits_real_lines_across_chunks():
    chunks = [b"PROGRESS 1 ", b'2\nSTATS {"a"', b":1}\nARTIF", b"ACT x.json\n", b"tail"]
    assert list(iter_lines(chunks)) == ["PROGRESS 1 2", 'STATS {"a":1}', "ARTIFACT x.json", "tail"]


def test_metadata_merges_in_order():
    view = fold(["STATS " + json.dumps({"a": 1, "b": 1}), "STATS " + json.dumps({"b": 2})])
    assert view.metadata == {"a": 1, "b": 2}


def test_emitter_survives_a_reader_that_went_away():
    """A killed service closes the job's stdout pipe; the run must go on (status JSON is the record)."""
    import os

    r, w = os.pipe()
    os.close(r)
    stream = os.fdopen(w, "w")
    em = Emitter(stream, total=2)
    em.progress(1)  # EPIPE (Python ignores SIGPIPE) -> swallowed
    em.stats({"a": 1})
    assert em.reader_gone
    try:
        stream.close()
    except OSError:
        pass
