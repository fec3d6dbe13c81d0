"""prefetch: order, errors at their position, bounded look-ahead, early close."""
import pytest

from mimamo_ops.runtime.prefetch import prefetch


def test_items_come_out_in_order():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))


def test_an_error_is_raised_where_the_producer_raised_it():
    def produce():
        yield 1
        yield 2
        raise OSError("frame 3 is damaged")

    out = []
    with pytest.raises(OSError, match="frame 3 is damaged"):
        for item in prefetch(produce(), depth=8):
            out.append(item)
    assert out == [1, 2]


def test_the_producer_runs_at_most_depth_items_ahead_and_stops_on_close():
    produced = []

    def produce():
        for i in range(1000):
            produced.append(i)
            yield i

    stream = prefetch(produce(), depth=4)
    assert next(stream) == 0
    stream.close()  # the consumer stops early: the producer must not run on to 1000
    # one item consumed, at most 4 buffered, one more being put when the buffer was full
    assert len(produced) <= 1 + 4 + 2


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        list(prefetch([], depth=0))
