"""distill: knowledge distillation into MobileNet students, one recipe per application of the MobileNet paper."""

from distill.models.checkpoint import load_student
from distill.models.preprocess import predict

__all__ = ["load_student", "predict", "__version__"]

__version__ = "0.1.0"
