"""Student and teacher networks behind one registry: the paper-exact MobileNetV1 (also registered with timm as
``mobilenet_v1_100`` .. ``mobilenet_v1_025``), any timm model, the teachers and the detectors.

Importing this package registers the timm names (``distill.models.timm_models``).
"""

from distill.models.factory import create_student, list_students, student_builder
from distill.models.mobilenet import MobileNetV1
from distill.models.registry import (
           UnknownBuilderError,
           build_model,
           builder_path,
           list_builders,
           register_builder,
)
from distill.models.timm_models import create_timm_model

__all__ = ["MobileNetV1", "UnknownBuilderError", "build_model", "builder_path", "create_student", "create_timm_model",
           "list_builders", "list_students", "register_builder", "student_builder"]
