"""A folder of matplotlib figures (a node returns a dict ``{file name: figure or PNG bytes}``) with a ``kedro viz``
preview.

kedro-datasets' ``matplotlib.MatplotlibDataset`` saves such a dict into the folder of its
``filepath``, but its ``preview()`` opens ``filepath`` as one image, which fails on a folder
(``IsADirectoryError`` in the kedro-viz log). :class:`FiguresDataset` saves the same way and
previews a contact sheet: the chosen figures (``preview_args: {figures: [...]}`` in the
catalog's ``kedro-viz`` metadata; default: the test split's PR curves, confusion matrix,
slices and first example), side by side, as one PNG.
"""
from __future__ import annotations

import base64
import fnmatch
import io
from pathlib import Path

from kedro.io import DatasetError
from kedro_datasets._typing import ImagePreview
from kedro_datasets.matplotlib import MatplotlibDataset

DEFAULT_FIGURES = ("pr_curves_test.png", "confusion_test.png", "slices_test.png", "test_example_*.png")


class FiguresDataset(MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` of a dict of figures (a folder), previewed as a contact sheet."""

    def _save_to_fs(self, full_key_path: str, plot) -> None:
        """A figure is drawn with the dataset's ``save_args``; PNG bytes (a figure the node drew already,
        e.g. once for MLflow and this folder alike) are written as they are."""
        if not isinstance(plot, (bytes, bytearray)):
            return super()._save_to_fs(full_key_path, plot)
        with self._fs.open(full_key_path, **self._fs_open_args_save) as fs_file:
            fs_file.write(bytes(plot))

    def preview(self, figures: list[str] | None = None, columns: int = 2, tile: int = 480) -> ImagePreview:
        """The first file matching each pattern of ``figures``, ``tile`` px at most each, ``columns`` per row."""
        from PIL import Image

        folder = Path(str(self._filepath))
        if not folder.is_dir():
            return super().preview()  # one figure saved as one file
        names = sorted(p.name for p in folder.glob("*.png"))
        chosen = []
        for pattern in figures or DEFAULT_FIGURES:
            match = next((n for n in names if fnmatch.fnmatch(n, pattern) and n not in chosen), None)
            if match:
                chosen.append(match)
        chosen = chosen or names[:4]
        if not chosen:
            raise DatasetError(f"no figure in {folder} yet")
        tiles = []
        for name in chosen:
            with Image.open(folder / name) as image:
                image = image.convert("RGB")
                image.thumbnail((tile, tile))
                tiles.append(image)
        columns = max(1, min(int(columns), len(tiles)))
        rows = -(-len(tiles) // columns)
        width, height = max(t.width for t in tiles), max(t.height for t in tiles)
        sheet = Image.new("RGB", (columns * width, rows * height), "white")
        for i, image in enumerate(tiles):
            sheet.paste(image, ((i % columns) * width, (i // columns) * height))
        out = io.BytesIO()
        sheet.save(out, format="PNG")
        return ImagePreview(base64.b64encode(out.getvalue()).decode("ascii"))
