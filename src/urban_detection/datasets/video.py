"""An H.264 MP4 (browsers and the MLflow UI play it), optionally with a GIF beside it.

kedro-datasets' ``video.VideoDataset`` writes through OpenCV, whose pip wheels encode
``mp4v``, which browsers do not play; this one encodes H.264 with imageio-ffmpeg.
Saving takes a :class:`~urban_detection.detection.render.Video` (a GIF
``<name>.gif`` is written too when its ``gif_max_side`` is set); loading returns one
with the decoded frames. ``kedro viz`` previews a poster frame (PNG).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import ImagePreview

from urban_detection.detection.render import Video, gif_frames
from urban_detection.detection.video import write_video
from urban_detection.files import atomic_path


def _move_into(source: str | Path, target: Path) -> None:
    """Move the finished file ``source`` onto ``target``: atomic, recorded as the project's (a file there that
    the project did not write raises :class:`~urban_detection.files.ForeignFileError`, untouched)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, keep_suffix=True) as tmp:
        shutil.move(str(source), str(tmp))


class VideoDataset(AbstractDataset[Video, Video]):
    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        if self._filepath.suffix.lower() != ".mp4":
            raise DatasetError(f"VideoDataset writes .mp4 files, got {filepath}")
        self.metadata = metadata

    @property
    def path(self) -> Path:
        return self._filepath

    def load(self) -> Video:
        import imageio_ffmpeg

        if not self._filepath.is_file():
            raise DatasetError(f"no video at {self._filepath}: run `kedro run --pipeline=render` first")
        reader = imageio_ffmpeg.read_frames(str(self._filepath))
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in reader]
        return Video(frames=frames, fps=float(meta.get("fps") or 10.0))

    def save(self, data: Video) -> None:
        if data.file is not None:  # encoded already, frame by frame (render_video): moved into place
            _move_into(data.file, self._filepath)
            if data.gif_file is not None:
                _move_into(data.gif_file, self._filepath.with_suffix(".gif"))
            if data.temp_dir is not None:  # the render node's temporary folder
                shutil.rmtree(data.temp_dir, ignore_errors=True)
            return
        write_video(data.frames, self._filepath, fps=data.fps)  # atomic, recorded as the project's
        if data.gif_max_side is not None:
            write_video(gif_frames(data), self._filepath.with_suffix(".gif"), fps=data.fps)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def preview(self, frame: int = 10, max_side: int = 640) -> ImagePreview:
        """A poster frame: frame ``frame`` (1 s in at 10 frames/s; the last one of a shorter video),
        at most ``max_side`` px, as a base64 PNG. Decodes only the frames up to it."""
        import base64
        import io

        import imageio_ffmpeg
        from PIL import Image

        reader = imageio_ffmpeg.read_frames(str(self._filepath))
        try:
            width, height = next(reader)["size"]
            poster = None
            for i, buf in enumerate(reader):
                poster = buf
                if i >= frame:
                    break
        finally:
            reader.close()
        if poster is None:
            raise DatasetError(f"{self._filepath} has no frame")
        image = Image.fromarray(np.frombuffer(poster, np.uint8).reshape(height, width, 3))
        image.thumbnail((max_side, max_side))
        out = io.BytesIO()
        image.save(out, format="PNG")
        return ImagePreview(base64.b64encode(out.getvalue()).decode("ascii"))
