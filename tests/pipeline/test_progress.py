"""The progress side channel: workers' records add up, and the bars reach the totals."""
import io

from beam_pipeline.cli.progress import ProgressBars
from beam_pipeline.progress_records import ProgressWriter, read_progress


def test_records_of_several_writers_add_up_and_frames_flush_at_video_end(tmp_path):
    first, second = ProgressWriter(str(tmp_path), flush_frames=10), ProgressWriter(str(tmp_path), flush_frames=10)
    first.add_frames(25)
    first.finish_video("ok")
    second.add_frames(3)
    assert read_progress(str(tmp_path)).frames_decoded == 25  # second's 3 frames are still buffered
    second.finish_video("failed")
    first.close()
    second.close()
    counts = read_progress(str(tmp_path))
    assert (counts.videos_done, counts.frames_decoded, counts.videos_failed) == (2, 28, 1)


def test_bars_end_at_the_recorded_totals(tmp_path):
    stream = io.StringIO()
    with ProgressBars(str(tmp_path), total_videos=2, stream=stream, interval_s=0.01):
        writer = ProgressWriter(str(tmp_path), flush_frames=1)
        writer.add_frames(7)
        writer.finish_video("ok")
        writer.finish_video("no_face")
        writer.close()
    text = stream.getvalue()
    assert "videos: 100%" in text and "2/2" in text
    assert "7frame" in text.replace(" ", "")
