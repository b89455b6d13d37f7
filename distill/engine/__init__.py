"""The training engine: what runs a distillation (the teacher-output cache lives in ``distill.engine.cache``)."""
