"""A minimal, wire-compatible schema of the Waymo Open Dataset v1 ``Frame`` proto.

The official ``waymo_open_dataset`` package pins old TensorFlow/protobuf versions, so
this module declares the subset of ``dataset.proto`` and ``label.proto`` that camera
work needs, with the *same* package, message names, field numbers and field types as
the official files (``waymo_open_dataset/dataset.proto``, ``label.proto``). Bytes
written by one parse with the other; fields this schema leaves out (lidar, poses,
maps, ...) are kept as unknown fields when a real segment is parsed, so nothing is
lost on re-serialisation.

The descriptors are built at import time with ``descriptor_pb2`` in a private
descriptor pool (no ``protoc``, no clash with the official package when both are
imported in one process).

Enum value names follow the official files too: ``CameraName.Name`` uses ``FRONT``,
``FRONT_LEFT``..., ``Label.Type`` uses ``TYPE_VEHICLE``... (the ``TYPE_`` prefix is
required because proto2 enum values share the scope of ``Label`` with
``Label.DifficultyLevel.UNKNOWN``). The Python enums :class:`CameraName` and
:class:`LabelType` give the short names (``LabelType.VEHICLE`` == 1).
"""

from __future__ import annotations

from enum import IntEnum

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "waymo.open_dataset"

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_SCALARS = {
    "double": _F.TYPE_DOUBLE,
    "float": _F.TYPE_FLOAT,
    "int64": _F.TYPE_INT64,
    "int32": _F.TYPE_INT32,
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}


def _field(msg, name: str, number: int, ftype: str, repeated: bool = False, packed: bool = False):
    """Add a field to a DescriptorProto.

    ``ftype`` is a scalar name, ``"message:<Full.Name>"`` or ``"enum:<Full.Name>"``
    (names relative to the package).
    """
    f = msg.field.add(name=name, number=number, label=_REPEATED if repeated else _OPTIONAL)
    if ftype in _SCALARS:
        f.type = _SCALARS[ftype]
    else:
        kind, type_name = ftype.split(":", 1)
        f.type = _F.TYPE_MESSAGE if kind == "message" else _F.TYPE_ENUM
        f.type_name = f".{PACKAGE}.{type_name}"
    if packed:
        f.options.packed = True
    return f


def _enum(parent, name: str, values: dict[str, int]):
    e = parent.enum_type.add(name=name)
    for value_name, number in values.items():
        e.value.add(name=value_name, number=number)
    return e


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="urban_detection/waymo_open_dataset_v1_minimal.proto", package=PACKAGE, syntax="proto2"
    )

    # --- label.proto -------------------------------------------------------------
    label = fdp.message_type.add(name="Label")
    box = label.nested_type.add(name="Box")
    _field(box, "center_x", 1, "double")
    _field(box, "center_y", 2, "double")
    _field(box, "center_z", 3, "double")
    _field(box, "width", 4, "double")  # dim y (image: vertical size)
    _field(box, "length", 5, "double")  # dim x (image: horizontal size)
    _field(box, "height", 6, "double")
    _field(box, "heading", 7, "double")
    _enum(box, "Type", {"TYPE_UNKNOWN": 0, "TYPE_3D": 1, "TYPE_2D": 2, "TYPE_AA_2D": 3})
    meta = label.nested_type.add(name="Metadata")
    for name, number in (
        ("speed_x", 1),
        ("speed_y", 2),
        ("accel_x", 3),
        ("accel_y", 4),
        ("speed_z", 5),
        ("accel_z", 6),
    ):
        _field(meta, name, number, "double")
    _enum(
        label,
        "Type",
        {"TYPE_UNKNOWN": 0, "TYPE_VEHICLE": 1, "TYPE_PEDESTRIAN": 2, "TYPE_SIGN": 3, "TYPE_CYCLIST": 4},
    )
    _enum(label, "DifficultyLevel", {"UNKNOWN": 0, "LEVEL_1": 1, "LEVEL_2": 2})
    _field(label, "box", 1, "message:Label.Box")
    _field(label, "metadata", 2, "message:Label.Metadata")
    _field(label, "type", 3, "enum:Label.Type")
    _field(label, "id", 4, "string")
    _field(label, "detection_difficulty_level", 5, "enum:Label.DifficultyLevel")
    _field(label, "tracking_difficulty_level", 6, "enum:Label.DifficultyLevel")
    _field(label, "num_lidar_points_in_box", 7, "int32")
    _field(label, "most_visible_camera_name", 11, "string")
    _field(label, "camera_synced_box", 12, "message:Label.Box")
    _field(label, "num_top_lidar_points_in_box", 13, "int32")

    # --- dataset.proto -----------------------------------------------------------
    camera_name = fdp.message_type.add(name="CameraName")
    _enum(
        camera_name,
        "Name",
        {
            "UNKNOWN": 0,
            "FRONT": 1,
            "FRONT_LEFT": 2,
            "FRONT_RIGHT": 3,
            "SIDE_LEFT": 4,
            "SIDE_RIGHT": 5,
            "REAR_LEFT": 6,
            "REAR": 7,
            "REAR_RIGHT": 8,
        },
    )

    transform = fdp.message_type.add(name="Transform")
    _field(transform, "transform", 1, "double", repeated=True)

    calib = fdp.message_type.add(name="CameraCalibration")
    _field(calib, "name", 1, "enum:CameraName.Name")
    _field(calib, "intrinsic", 2, "double", repeated=True)
    _field(calib, "extrinsic", 3, "message:Transform")
    _field(calib, "width", 4, "int32")
    _field(calib, "height", 5, "int32")

    context = fdp.message_type.add(name="Context")
    stats = context.nested_type.add(name="Stats")
    count = stats.nested_type.add(name="ObjectCount")
    _field(count, "type", 1, "enum:Label.Type")
    _field(count, "count", 2, "int32")
    _field(stats, "laser_object_counts", 1, "message:Context.Stats.ObjectCount", repeated=True)
    _field(stats, "time_of_day", 2, "string")
    _field(stats, "location", 3, "string")
    _field(stats, "weather", 4, "string")
    _field(stats, "camera_object_counts", 5, "message:Context.Stats.ObjectCount", repeated=True)
    _field(context, "name", 1, "string")
    _field(context, "camera_calibrations", 2, "message:CameraCalibration", repeated=True)
    _field(context, "stats", 4, "message:Context.Stats")

    image = fdp.message_type.add(name="CameraImage")
    _field(image, "name", 1, "enum:CameraName.Name")
    _field(image, "image", 2, "bytes")
    _field(image, "pose", 3, "message:Transform")
    _field(image, "pose_timestamp", 5, "double")
    _field(image, "shutter", 6, "double")
    _field(image, "camera_trigger_time", 7, "double")
    _field(image, "camera_readout_done_time", 8, "double")

    labels = fdp.message_type.add(name="CameraLabels")
    _field(labels, "name", 1, "enum:CameraName.Name")
    _field(labels, "labels", 2, "message:Label", repeated=True)

    frame = fdp.message_type.add(name="Frame")
    _field(frame, "context", 1, "message:Context")
    _field(frame, "timestamp_micros", 2, "int64")
    _field(frame, "pose", 3, "message:Transform")
    _field(frame, "images", 4, "message:CameraImage", repeated=True)
    _field(frame, "laser_labels", 6, "message:Label", repeated=True)
    _field(frame, "camera_labels", 8, "message:CameraLabels", repeated=True)
    _field(frame, "projected_lidar_labels", 9, "message:CameraLabels", repeated=True)
    frame.extension_range.add(start=1000, end=536870912)  # "extensions 1000 to max"
    return fdp


FILE_DESCRIPTOR_PROTO = _build_file()
DESCRIPTOR_POOL = descriptor_pool.DescriptorPool()
DESCRIPTOR_POOL.Add(FILE_DESCRIPTOR_PROTO)


def _message(name: str):
    return message_factory.GetMessageClass(DESCRIPTOR_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


Frame = _message("Frame")
Context = _message("Context")
CameraImage = _message("CameraImage")
CameraLabels = _message("CameraLabels")
CameraCalibration = _message("CameraCalibration")
Label = _message("Label")
Transform = _message("Transform")


class CameraName(IntEnum):
    """``waymo.open_dataset.CameraName.Name``."""

    UNKNOWN = 0
    FRONT = 1
    FRONT_LEFT = 2
    FRONT_RIGHT = 3
    SIDE_LEFT = 4
    SIDE_RIGHT = 5
    REAR_LEFT = 6
    REAR = 7
    REAR_RIGHT = 8


class LabelType(IntEnum):
    """``waymo.open_dataset.Label.Type`` (proto names carry a ``TYPE_`` prefix)."""

    UNKNOWN = 0
    VEHICLE = 1
    PEDESTRIAN = 2
    SIGN = 3
    CYCLIST = 4


def camera_id(camera: str | int) -> int:
    """Camera name (``"FRONT"``, ``"front_left"``) or number to the enum number."""
    if isinstance(camera, str):
        key = camera.strip().upper()
        if key not in CameraName.__members__:
            raise ValueError(f"unknown camera {camera!r}; expected one of {list(CameraName.__members__)}")
        return int(CameraName[key])
    value = int(camera)
    if value not in {c.value for c in CameraName}:
        raise ValueError(f"unknown camera number {camera!r}")
    return value


def parse_frame(data: bytes):
    """Parse serialized Frame bytes (raises ``google.protobuf.message.DecodeError``)."""
    return Frame.FromString(data)


def find_image(frame, camera: str | int) -> bytes | None:
    """The encoded image of ``camera`` in ``frame`` (``None`` when absent or empty)."""
    cid = camera_id(camera)
    for img in frame.images:
        if img.name == cid and img.image:
            return img.image
    return None


def find_labels(frame, camera: str | int) -> list | None:
    """All camera labels of ``camera`` (``None`` when the camera has no label entry)."""
    cid = camera_id(camera)
    entries = [cl for cl in frame.camera_labels if cl.name == cid]
    if not entries:
        return None
    return [label for cl in entries for label in cl.labels]


def make_label(center_x: float, center_y: float, length: float, width: float, type: int, id: str = ""):
    """A 2D camera label in Waymo pixel convention (length = x size, width = y size)."""
    label = Label(type=int(type), id=id)
    label.box.center_x = float(center_x)
    label.box.center_y = float(center_y)
    label.box.length = float(length)
    label.box.width = float(width)
    return label


def field_numbers(message_class) -> dict[str, int]:
    """``{field name: field number}`` of a message class (for checks and docs)."""
    return {f.name: f.number for f in message_class.DESCRIPTOR.fields}


__all__ = [
    "CameraCalibration",
    "CameraImage",
    "CameraLabels",
    "CameraName",
    "Context",
    "DESCRIPTOR_POOL",
    "FILE_DESCRIPTOR_PROTO",
    "Frame",
    "Label",
    "LabelType",
    "Transform",
    "camera_id",
    "field_numbers",
    "find_image",
    "find_labels",
    "make_label",
    "parse_frame",
]
