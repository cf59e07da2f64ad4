"""Where draw_detections puts a box outline, for tests that check drawn colours."""
import numpy as np


def outline_mask(box, h, w, line_width=2):
    """Pixels of the left, right and bottom outline of ``box`` as draw_detections draws it
    (the top edge carries the caption band); rows near the corners left out."""
    ymin, xmin, ymax, xmax = box
    x0, y0 = round(xmin * w), round(ymin * h)
    x1, y1 = round(xmax * w) - 1, round(ymax * h) - 1
    mask = np.zeros((h, w), bool)
    rows = slice(y0 + 2 * line_width, y1 - line_width)
    mask[rows, x0:x0 + line_width] = True
    mask[rows, x1 - line_width + 1:x1 + 1] = True
    mask[y1 - line_width + 1:y1 + 1, x0 + line_width:x1 - line_width] = True
    return mask
