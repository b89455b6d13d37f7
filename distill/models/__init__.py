"""Student networks: the paper-exact MobileNetV1 and a factory that also builds any timm model."""

from distill.models.factory import create_student, list_students
from distill.models.mobilenet import MobileNetV1

__all__ = ["MobileNetV1", "create_student", "list_students"]
