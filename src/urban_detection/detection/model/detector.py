"""The detector task model: KerasHub's RetinaNet with configurable heads (:class:`RetinaNetDetector`)."""
from __future__ import annotations

import keras
import keras_hub
from keras_hub.src.models.object_detector import ObjectDetector
from keras_hub.src.models.retinanet.prediction_head import PredictionHead
from keras_hub.src.models.retinanet.retinanet_label_encoder import RetinaNetLabelEncoder
from keras_hub.src.utils.tensor_utils import assert_bounding_box_support

from urban_detection.detection.model.conventions import BOX_FORMAT, KERAS_PACKAGE
from urban_detection.detection.model.nms import MultiClassNMS


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class RetinaNetDetector(keras_hub.models.RetinaNetObjectDetector):
    """``RetinaNetObjectDetector`` with configurable head width and a correct prior.

    Differences from the KerasHub class (whose ``__init__`` is replaced, the rest
    -- losses, decoding, serialisation -- is inherited):

    * ``head_filters`` sets the width of the shared heads (KerasHub: fixed 256);
    * the prior-probability bias ``-log((1 - p) / p)`` goes to the
      *classification* logits, as in the RetinaNet paper (KerasHub 0.32 puts it
      on the box-regression head and leaves the class logits at 0, which gives
      a huge initial focal loss);
    * head kernels start from N(0, ``head_kernel_stddev``) (0.01 as in the paper);
    * anchor generator, label encoder and decoder compute in float32 even under a
      mixed-precision policy.
    """

    def __init__(
        self,
        backbone,
        num_classes,
        bounding_box_format=BOX_FORMAT,
        anchor_generator=None,
        label_encoder=None,
        use_prediction_head_norm=False,
        classification_head_prior_probability=0.01,
        pre_logits_num_conv_layers=4,
        head_filters=256,
        head_kernel_stddev=0.01,
        preprocessor=None,
        activation=None,
        dtype=None,
        prediction_decoder=None,
        **kwargs,
    ):
        assert_bounding_box_support(self.__class__.__name__)
        image_input = keras.layers.Input(backbone.image_shape, name="images")
        head_dtype = dtype or backbone.dtype_policy
        anchor_generator = anchor_generator or keras_hub.layers.AnchorGenerator(
            bounding_box_format,
            min_level=backbone.min_level,
            max_level=backbone.max_level,
            num_scales=3,
            aspect_ratios=[0.5, 1.0, 2.0],
            anchor_size=4,
            dtype="float32",
        )
        label_encoder = label_encoder or RetinaNetLabelEncoder(
            anchor_generator, bounding_box_format=bounding_box_format, encoding_format="center_xywh", dtype="float32"
        )
        init = keras.initializers.RandomNormal(stddev=head_kernel_stddev)

        def head(outputs_per_anchor, name, bias):
            return PredictionHead(
                output_filters=anchor_generator.num_base_anchors * outputs_per_anchor,
                num_conv_layers=pre_logits_num_conv_layers,
                num_filters=head_filters,
                use_group_norm=use_prediction_head_norm,
                kernel_initializer=init,
                # The logits layer takes ``prior_probability``; ``bias`` only picks which head.
                use_prior_probability=bias,
                prior_probability=classification_head_prior_probability,
                dtype=head_dtype,
                name=name,
            )

        box_head = head(4, "box_head", bias=False)
        classification_head = head(num_classes, "classification_head", bias=True)

        outputs = _head_outputs(backbone(image_input), box_head, classification_head, num_classes)
        kwargs.setdefault("compile", False)
        ObjectDetector.__init__(self, inputs=image_input, outputs=outputs, **kwargs)

        self.bounding_box_format = bounding_box_format
        self.use_prediction_head_norm = use_prediction_head_norm
        self.num_classes = num_classes
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.activation = activation
        self.pre_logits_num_conv_layers = pre_logits_num_conv_layers
        self.head_filters = head_filters
        self.head_kernel_stddev = head_kernel_stddev
        self.classification_head_prior_probability = classification_head_prior_probability
        self.box_head = box_head
        self.classification_head = classification_head
        self.anchor_generator = anchor_generator
        self.label_encoder = label_encoder
        self._prediction_decoder = prediction_decoder or MultiClassNMS(bounding_box_format=bounding_box_format)

    def decode_predictions(self, predictions, data):
        # KerasHub unpacks ``data`` as ``(images, labels)``; predict_on_batch passes ``(images,)``.
        images = data[0] if isinstance(data, (list, tuple)) else data
        # Under a mixed policy the heads output float16/bfloat16; anchors and decoding are float32.
        predictions = {k: keras.ops.cast(v, "float32") for k, v in predictions.items()}
        return super().decode_predictions(predictions, keras.ops.cast(images, "float32"))

    def get_config(self):
        config = super().get_config()
        config.update(
            head_filters=self.head_filters,
            head_kernel_stddev=self.head_kernel_stddev,
            classification_head_prior_probability=self.classification_head_prior_probability,
        )
        return config


def _head_outputs(feature_map, box_head, classification_head, num_classes):
    """The heads applied to every FPN level, concatenated over levels: ``bbox_regression``, ``cls_logits``."""
    class_predictions, box_predictions = [], []
    for level in feature_map:
        box_predictions.append(
            keras.layers.Reshape((-1, 4), name=f"box_pred_{level}")(box_head(feature_map[level]))
        )
        class_predictions.append(
            keras.layers.Reshape((-1, num_classes), name=f"cls_pred_{level}")(
                classification_head(feature_map[level])
            )
        )
    return {
        "bbox_regression": keras.layers.Concatenate(axis=1, name="bbox_regression")(box_predictions),
        "cls_logits": keras.layers.Concatenate(axis=1, name="cls_logits")(class_predictions),
    }
