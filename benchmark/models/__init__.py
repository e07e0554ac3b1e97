"""Models: backbones (timm architectures with their weight sources and data configs) and task heads."""
from .backbones import BACKBONES, BackboneSpec, build_backbone, resolve_backbone
from .heads import Classifier
from .weights import WEIGHT_SOURCES, read_state_dict

__all__ = ["BACKBONES", "BackboneSpec", "Classifier", "WEIGHT_SOURCES", "build_backbone", "read_state_dict",
           "resolve_backbone"]
