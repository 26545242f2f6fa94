"""Synthetic MoE GGUF models and the model inspector.

- `write_synthetic_model` / `synthetic_model`: random-weight MoE GGUFs of a preset's shapes.
- `PRESETS`, `get_preset`, `preset_tensors_named`: what a preset contains, without writing it.
- `inspect_model` / `inspect_preset` -> `ModelInfo`: where a model's bytes are, by group and layer.
- `classify_tensor`, `layer_index`, `ffn_matrix`: tensor-name rules placement code reuses.
"""

from harness.models.inspect import LayerInfo, ModelInfo, TensorRecord, inspect_model, inspect_preset, summarize
from harness.models.preset_tensors import TensorSpec, tensor_specs_bytes, preset_tensors_named, preset_tensors
from harness.models.presets import PRESETS, MoePreset, get_preset
from harness.models.report import format_bytes, render_model_info
from harness.models.synth import synthetic_model, synthetic_model_path, write_synthetic_model
from harness.models.tensor_groups import (
    GROUP_NAMES,
    TensorGroup,
    classify_tensor,
    ffn_matrix,
    layer_index,
    tensor_stem,
)

__all__ = [
    "GROUP_NAMES", "LayerInfo", "ModelInfo", "MoePreset", "PRESETS", "TensorGroup", "TensorRecord", "TensorSpec",
    "classify_tensor", "ffn_matrix", "format_bytes", "get_preset", "inspect_model", "inspect_preset",
    "layer_index", "tensor_specs_bytes", "preset_tensors_named", "render_model_info", "summarize",
    "synthetic_model", "synthetic_model_path", "preset_tensors", "tensor_stem", "write_synthetic_model",
]
