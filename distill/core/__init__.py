"""The bottom layer: plain utilities every other layer may import (and nothing of distill's above it)."""
