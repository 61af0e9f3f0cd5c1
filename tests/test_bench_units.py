"""The bench's arithmetic (no timing is measured or asserted here)."""

from bench.inputs import unique_jpeg
from bench.stats import Row, percentile, ratios, table


def test_percentile_interpolates():
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.99) == 5.0


def test_ratios_and_table_are_against_the_baseline():
    rows = [Row("ours", [0.1, 0.1], wall=1.0), Row("ref", [0.05, 0.05], wall=0.5)]
    rel = ratios(rows, "ref")
    assert rel["ours"] == {"p50": 2.0, "rps": 0.5}
    assert rel["ref"] == {"p50": 1.0, "rps": 1.0}
    assert "2.00\u00d7" in table("t", rows, "ref")


def test_unique_jpeg_changes_bytes_not_the_start_marker():
    data = b"\xff\xd8\xff\xdbrest"
    one, two = unique_jpeg(data, 1), unique_jpeg(data, 2)
    assert one != two and one.startswith(b"\xff\xd8\xff\xfe") and one.endswith(data[2:])


def test_the_table_adds_a_throughput_ratio_against_each_reference():
    rows = [
        Row("ours", [0.1], wall=0.5),
        Row("ceiling", [0.1], wall=0.4),
        Row("thumbor", [0.1], wall=1.0),
    ]
    text = table("t", rows, "ceiling", versus=("thumbor", "absent"))
    assert "req/s vs thumbor" in text and "vs absent" not in text
    ours = next(line for line in text.splitlines() if line.startswith("ours"))
    # ours: 2 req/s; the ceiling 2.5 (0.80x), thumbor 1 (2.00x)
    assert ours.split()[-2:] == ["0.80\u00d7", "2.00\u00d7"]


def test_recovery_is_the_first_moment_after_which_every_request_is_within_the_goal():
    from bench.overload import _recovered_at

    after = [(0.0, 1.0), (0.3, 0.1), (0.6, 0.9), (0.9, 0.1), (1.2, 0.12)]
    assert _recovered_at(after, quiet=0.1) == 0.9
    assert _recovered_at([(0.0, 1.0)], quiet=0.1) is None


def test_render_rows_count_examples_and_pair_rounds():
    from bench.rendering import chunks, median_ratio, per_example

    row = per_example("ours", [2.0, 4.0], examples=40)
    assert len(row.latencies) == 80 and row.rps == 80 / 6.0  # examples per second
    assert round(row.p50_ms, 6) == 75.0  # halfway between 50 and 100 ms per example
    # median rounds: ours 3 s, the bare loop's 1.5 s: half its examples per second
    assert median_ratio([2.0, 3.0, 9.0], [1.0, 1.5, 1.5]) == 0.5
    assert chunks(1) == [None]
    assert chunks(2) == [{"index": 0, "total": 2}, {"index": 1, "total": 2}]
