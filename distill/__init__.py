"""distill: knowledge distillation into MobileNet students, one recipe per application of the MobileNet paper."""

from distill.models.checkpoint import load_student

__all__ = ["load_student", "__version__"]

__version__ = "0.1.0"
