"""Detection library: model, augmentations, input pipeline, training, COCO evaluation, drawing and video. No Kedro here."""
