"""The tensor list of a preset: every tensor's name, ggml type, shape and size, without writing anything.

The layouts follow what the engines' loaders create (mainline `src/models/qwen3moe.cpp`,
`src/models/glm4-moe.cpp`; ik_llama.cpp `src/llama-load-tensors.cpp`):

- qwen3moe: per layer attn_norm, attn_q/k/v (no biases), attn_output, attn_q_norm, attn_k_norm,
  ffn_norm, ffn_gate_inp (router), ffn_gate_exps/ffn_up_exps/ffn_down_exps. Every layer is MoE.
- glm4moe: per layer attn_norm, attn_q/k/v with biases (ik requires them), attn_output,
  post_attention_norm (ik uses it as ffn_norm); layers < leading_dense_block_count have a dense
  ffn_gate/ffn_up/ffn_down, the others ffn_gate_inp, exp_probs_b.bias, the routed *_exps and the
  shared-expert *_shexp matrices (n_shared_experts * expert_ff wide). No q/k norms (GLM-4.5-Air
  has none; they are optional in both loaders). The last `nextn_predict_layers` blocks are NextN/MTP layers: a
  MoE block plus nextn.eh_proj (2 n_embd -> n_embd), nextn.enorm, nextn.hnorm and nextn.shared_head_norm
  (GLM-4.5's conversions have no nextn.embed_tokens or nextn.shared_head_head: the engines use token_embd/output).
- deepseek2 (mainline `src/models/deepseek2.cpp`, ik `create_deepseek2_tensors`), as current conversions
  write it for multi-head latent attention: per layer attn_norm, attn_q_a_norm, attn_kv_a_norm, attn_q_a,
  attn_q_b, attn_kv_a_mqa (n_embd -> kv_lora_rank + rope), attn_k_b (nope x kv_lora_rank x n_head) and
  attn_v_b (kv_lora_rank x v_head x n_head) instead of the fused attn_kv_b, attn_output, ffn_norm; dense
  layers as glm4moe, MoE layers ffn_gate_inp, exp_probs_b.bias, *_exps and *_shexp.
- gpt-oss (mainline `src/models/openai-moe.cpp`, ik `create_openai_moe_tensors`): per layer attn_norm,
  post_attention_norm (the FFN norm), attn_q/k/v and attn_output with biases, attn_sinks (n_head), ffn_gate_inp
  with a bias, the routed *_exps with biases (gate/up: expert_ff x n_experts, down: n_embd x n_experts). No
  dense layers, no shared experts.
- qwen3next (mainline `src/models/qwen3next.cpp`, ik `create_qwen3next_tensors`): per layer attn_norm,
  post_attention_norm (the FFN norm); a full-attention layer (each full_attention_interval-th) attn_q (n_head x
  head x 2: the query and its gate), attn_k, attn_v, attn_output, attn_q_norm, attn_k_norm; a gated delta-net
  layer attn_qkv (2 x key_dim + value_dim), attn_gate (value_dim), ssm_conv1d (d_conv x conv_dim), ssm_dt.bias,
  ssm_a, ssm_ba (2 x value heads), ssm_norm, ssm_out; every layer ffn_gate_inp, *_exps, the shared expert's
  gate ffn_gate_inp_shexp (n_embd) and *_shexp.
- qwen35moe (mainline `src/models/qwen35moe.cpp`, ik `create_qwen35moe_tensors`): as qwen3next, with ssm_beta and
  ssm_alpha (n_embd x value heads each) instead of ssm_ba, and `rope.dimension_sections` (required by both).
- llama4 (mainline `src/models/llama4.cpp`, ik `create_llama4_tensors`): llama attention (q/k/v/o, no biases;
  the q/k norms have no weights), ffn_norm; layers with (i + 1) % interleave_moe_layer_step == 0 ffn_gate_inp,
  *_exps and *_shexp (expert_ff wide), the others a dense ffn_gate/up/down (feed_forward_length).
- llama with merged experts (Mixtral; mainline `src/models/llama.cpp`): llama attention, ffn_norm, ffn_gate_inp
  and *_exps, feed_forward_length wide.
- minimax-m2 (mainline `src/models/minimax-m2.cpp`, ik `create_minimaxm2_tensors`): attn_q/k/v/output, q/k norms
  over the whole projection (n_head x head, n_head_kv x head), ffn_norm, ffn_gate_inp, exp_probs_b.bias, *_exps.
- ernie4_5-moe (mainline `src/models/ernie4-5.cpp`): llama attention, ffn_norm; leading dense layers, then
  ffn_gate_inp, exp_probs_b.bias, *_exps and *_shexp (expert_shared_feed_forward_length wide).
- all: token_embd, output_norm, output (untied; ik's deepseek2 requires it).

Shapes are in ggml order: shape[0] is the row length (the input dimension of a matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import MODEL_ARCH, MODEL_ARCH_NAMES, MODEL_TENSOR, MODEL_TENSORS, TENSOR_NAMES, GGMLQuantizationType

from harness.models.blocks import block_geometry, tensor_nbytes
from harness.models.presets import MoePreset, get_preset

T = GGMLQuantizationType

# llama-quantize's fallbacks for rows that are not a multiple of the type's block size
_FALLBACK_TYPE = {
    T.Q2_K: T.IQ4_NL, T.Q3_K: T.IQ4_NL, T.IQ4_XS: T.IQ4_NL,
    T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0,
}

_DELTA_NET = (MODEL_ARCH.QWEN3NEXT, MODEL_ARCH.QWEN35MOE)  # gated delta-net layers between attention layers
FILL_RANDOM = "random"  # random weights (std ~0.02) of the tensor's type
FILL_ONES = "ones"  # F32 1.0: norm weights


@dataclass(frozen=True)
class TensorSpec:
    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]  # ggml order
    n_bytes: int
    fill: str = FILL_RANDOM

    @property
    def type_name(self) -> str:
        return self.ggml_type.name


def fit_type(ggml_type: GGMLQuantizationType, row_length: int) -> GGMLQuantizationType:
    """`ggml_type`, or its llama-quantize fallback when `row_length` is not a multiple of its block size."""
    while row_length % block_geometry(ggml_type)[0]:
        ggml_type = _FALLBACK_TYPE.get(ggml_type, T.F16 if ggml_type != T.F16 else T.F32)
    return ggml_type


def _arch_of(preset: MoePreset) -> MODEL_ARCH:
    for arch, name in MODEL_ARCH_NAMES.items():
        if name == preset.architecture:
            return arch
    raise ValueError(f"unknown architecture {preset.architecture!r}")


class _PresetTensorsBuilder:
    def __init__(self, preset: MoePreset):
        self.preset = preset
        self.arch = _arch_of(preset)
        if self.arch not in (MODEL_ARCH.QWEN3MOE, MODEL_ARCH.GLM4_MOE, MODEL_ARCH.DEEPSEEK2,
                             MODEL_ARCH.GPT_OSS, *_DELTA_NET, MODEL_ARCH.LLAMA4, MODEL_ARCH.LLAMA,
                             MODEL_ARCH.MINIMAXM2, MODEL_ARCH.ERNIE4_5_MOE):
            raise ValueError(f"no tensor layout for architecture {preset.architecture!r}")
        self.specs: list[TensorSpec] = []

    def add(self, kind: MODEL_TENSOR, suffix: str, shape: tuple[int, ...], type_name: str | None,
            bid: int | None = None) -> None:
        if kind not in MODEL_TENSORS[self.arch]:
            raise AssertionError(f"{kind.name} is not a {self.preset.architecture} tensor")
        base = TENSOR_NAMES[kind].format(bid=bid) if bid is not None else TENSOR_NAMES[kind]
        if type_name is None:  # norms and biases
            ggml_type, fill = T.F32, (FILL_ONES if suffix == "weight" and len(shape) == 1 else FILL_RANDOM)
        else:
            ggml_type, fill = fit_type(T[type_name], shape[0]), FILL_RANDOM
        name = f"{base}.{suffix}" if suffix else base  # ssm_a has no suffix
        self.specs.append(TensorSpec(name, ggml_type, shape, tensor_nbytes(ggml_type, shape), fill))

    def add_router(self, shape: tuple[int, ...], bid: int) -> None:
        self.specs.append(TensorSpec(TENSOR_NAMES[MODEL_TENSOR.FFN_GATE_INP].format(bid=bid) + ".weight",
                                     T.F32, shape, tensor_nbytes(T.F32, shape)))

    def build(self) -> list[TensorSpec]:
        p = self.preset
        mat = p.matrix_type
        self.add(MODEL_TENSOR.TOKEN_EMBD, "weight", (p.n_embd, p.vocab_size), p.token_embd_type)
        for bid in range(p.n_layers):
            self._attention(bid)
            if self.arch in (MODEL_ARCH.GLM4_MOE, MODEL_ARCH.GPT_OSS, *_DELTA_NET):
                self.add(MODEL_TENSOR.ATTN_POST_NORM, "weight", (p.n_embd,), None, bid)
            else:
                self.add(MODEL_TENSOR.FFN_NORM, "weight", (p.n_embd,), None, bid)
            if not p.has_experts(bid):
                self.add(MODEL_TENSOR.FFN_GATE, "weight", (p.n_embd, p.dense_ff), mat, bid)
                self.add(MODEL_TENSOR.FFN_UP, "weight", (p.n_embd, p.dense_ff), mat, bid)
                self.add(MODEL_TENSOR.FFN_DOWN, "weight", (p.dense_ff, p.n_embd), mat, bid)
                continue
            self.add_router((p.n_embd, p.n_experts), bid)
            if self.arch in (MODEL_ARCH.GLM4_MOE, MODEL_ARCH.DEEPSEEK2, MODEL_ARCH.MINIMAXM2, MODEL_ARCH.ERNIE4_5_MOE):
                self.add(MODEL_TENSOR.FFN_EXP_PROBS_B, "bias", (p.n_experts,), None, bid)
            exps = p.expert_type or mat
            self.add(MODEL_TENSOR.FFN_GATE_EXP, "weight", (p.n_embd, p.expert_ff, p.n_experts), exps, bid)
            self.add(MODEL_TENSOR.FFN_UP_EXP, "weight", (p.n_embd, p.expert_ff, p.n_experts), exps, bid)
            self.add(MODEL_TENSOR.FFN_DOWN_EXP, "weight", (p.expert_ff, p.n_embd, p.n_experts), exps, bid)
            if self.arch == MODEL_ARCH.GPT_OSS:  # router and expert biases
                self.add(MODEL_TENSOR.FFN_GATE_INP, "bias", (p.n_experts,), None, bid)
                self.add(MODEL_TENSOR.FFN_GATE_EXP, "bias", (p.expert_ff, p.n_experts), None, bid)
                self.add(MODEL_TENSOR.FFN_UP_EXP, "bias", (p.expert_ff, p.n_experts), None, bid)
                self.add(MODEL_TENSOR.FFN_DOWN_EXP, "bias", (p.n_embd, p.n_experts), None, bid)
            if self.arch in _DELTA_NET:  # the shared expert's sigmoid gate
                self.add(MODEL_TENSOR.FFN_GATE_INP_SHEXP, "weight", (p.n_embd,), None, bid)
            if p.n_shared_experts:
                shexp_ff = p.expert_ff * p.n_shared_experts
                self.add(MODEL_TENSOR.FFN_GATE_SHEXP, "weight", (p.n_embd, shexp_ff), mat, bid)
                self.add(MODEL_TENSOR.FFN_UP_SHEXP, "weight", (p.n_embd, shexp_ff), mat, bid)
                self.add(MODEL_TENSOR.FFN_DOWN_SHEXP, "weight", (shexp_ff, p.n_embd), mat, bid)
            if bid >= p.n_layers - p.nextn_predict_layers:
                self._nextn(bid)
        self.add(MODEL_TENSOR.OUTPUT_NORM, "weight", (p.n_embd,), None)
        self.add(MODEL_TENSOR.OUTPUT, "weight", (p.n_embd, p.vocab_size), p.output_type)
        return self.specs

    def _attention(self, bid: int) -> None:
        if self.arch == MODEL_ARCH.DEEPSEEK2:
            self._latent_attention(bid)
            return
        p = self.preset
        if self.arch in _DELTA_NET and (bid + 1) % p.full_attention_interval:
            self._delta_net(bid)
            return
        q_dim, kv_dim = p.n_head * p.head_dim, p.n_head_kv * p.head_dim
        v_type = p.attn_v_type or p.matrix_type
        gated_q = 2 if self.arch in _DELTA_NET else 1  # the query and its output gate
        self.add(MODEL_TENSOR.ATTN_NORM, "weight", (p.n_embd,), None, bid)
        self.add(MODEL_TENSOR.ATTN_Q, "weight", (p.n_embd, q_dim * gated_q), p.matrix_type, bid)
        self.add(MODEL_TENSOR.ATTN_K, "weight", (p.n_embd, kv_dim), p.matrix_type, bid)
        self.add(MODEL_TENSOR.ATTN_V, "weight", (p.n_embd, kv_dim), v_type, bid)
        if self.arch in (MODEL_ARCH.GLM4_MOE, MODEL_ARCH.GPT_OSS):  # q/k/v biases; ik requires GLM's
            self.add(MODEL_TENSOR.ATTN_Q, "bias", (q_dim,), None, bid)
            self.add(MODEL_TENSOR.ATTN_K, "bias", (kv_dim,), None, bid)
            self.add(MODEL_TENSOR.ATTN_V, "bias", (kv_dim,), None, bid)
        self.add(MODEL_TENSOR.ATTN_OUT, "weight", (q_dim, p.n_embd), p.matrix_type, bid)
        if self.arch == MODEL_ARCH.GPT_OSS:
            self.add(MODEL_TENSOR.ATTN_OUT, "bias", (p.n_embd,), None, bid)
            self.add(MODEL_TENSOR.ATTN_SINKS, "weight", (p.n_head,), None, bid)
        if self.arch == MODEL_ARCH.MINIMAXM2:  # q/k norms over the whole projection
            self.add(MODEL_TENSOR.ATTN_Q_NORM, "weight", (q_dim,), None, bid)
            self.add(MODEL_TENSOR.ATTN_K_NORM, "weight", (kv_dim,), None, bid)
        if self.arch in (MODEL_ARCH.QWEN3MOE, *_DELTA_NET):
            self.add(MODEL_TENSOR.ATTN_Q_NORM, "weight", (p.head_dim,), None, bid)
            self.add(MODEL_TENSOR.ATTN_K_NORM, "weight", (p.head_dim,), None, bid)


    def _nextn(self, bid: int) -> None:
        p = self.preset
        self.add(MODEL_TENSOR.NEXTN_EH_PROJ, "weight", (2 * p.n_embd, p.n_embd), p.matrix_type, bid)
        for norm in (MODEL_TENSOR.NEXTN_ENORM, MODEL_TENSOR.NEXTN_HNORM, MODEL_TENSOR.NEXTN_SHARED_HEAD_NORM):
            self.add(norm, "weight", (p.n_embd,), None, bid)

    def _latent_attention(self, bid: int) -> None:
        p = self.preset
        rope = p.rope_dim or 0
        nope = p.head_dim - rope
        self.add(MODEL_TENSOR.ATTN_NORM, "weight", (p.n_embd,), None, bid)
        self.add(MODEL_TENSOR.ATTN_Q_A_NORM, "weight", (p.q_lora_rank,), None, bid)
        self.add(MODEL_TENSOR.ATTN_KV_A_NORM, "weight", (p.kv_lora_rank,), None, bid)
        self.add(MODEL_TENSOR.ATTN_Q_A, "weight", (p.n_embd, p.q_lora_rank), p.matrix_type, bid)
        self.add(MODEL_TENSOR.ATTN_Q_B, "weight", (p.q_lora_rank, p.n_head * p.head_dim), p.matrix_type, bid)
        self.add(MODEL_TENSOR.ATTN_KV_A_MQA, "weight", (p.n_embd, p.kv_lora_rank + rope), p.matrix_type, bid)
        self.add(MODEL_TENSOR.ATTN_K_B, "weight", (nope, p.kv_lora_rank, p.n_head), p.matrix_type, bid)
        self.add(MODEL_TENSOR.ATTN_V_B, "weight", (p.kv_lora_rank, p.value_head_dim, p.n_head),
                 p.attn_v_type or p.matrix_type, bid)
        self.add(MODEL_TENSOR.ATTN_OUT, "weight", (p.n_head * p.value_head_dim, p.n_embd), p.matrix_type, bid)


    def _delta_net(self, bid: int) -> None:
        p = self.preset
        key_dim, value_dim = p.ssm_d_state * p.ssm_n_group, p.ssm_d_state * p.ssm_n_v_heads
        conv_dim = 2 * key_dim + value_dim
        self.add(MODEL_TENSOR.ATTN_NORM, "weight", (p.n_embd,), None, bid)
        self.add(MODEL_TENSOR.ATTN_QKV, "weight", (p.n_embd, conv_dim), p.matrix_type, bid)
        self.add(MODEL_TENSOR.ATTN_GATE, "weight", (p.n_embd, value_dim), p.matrix_type, bid)
        self.add(MODEL_TENSOR.SSM_CONV1D, "weight", (p.ssm_d_conv, conv_dim), None, bid)
        self.add(MODEL_TENSOR.SSM_DT, "bias", (p.ssm_n_v_heads,), None, bid)
        self.add(MODEL_TENSOR.SSM_A, "", (p.ssm_n_v_heads,), None, bid)
        if self.arch == MODEL_ARCH.QWEN35MOE:  # beta and alpha apart
            self.add(MODEL_TENSOR.SSM_BETA, "weight", (p.n_embd, p.ssm_n_v_heads), p.matrix_type, bid)
            self.add(MODEL_TENSOR.SSM_ALPHA, "weight", (p.n_embd, p.ssm_n_v_heads), p.matrix_type, bid)
        else:
            self.add(MODEL_TENSOR.SSM_BETA_ALPHA, "weight", (p.n_embd, 2 * p.ssm_n_v_heads), p.matrix_type, bid)
        self.add(MODEL_TENSOR.SSM_NORM, "weight", (p.ssm_d_state,), None, bid)
        self.add(MODEL_TENSOR.SSM_OUT, "weight", (value_dim, p.n_embd), p.matrix_type, bid)


def preset_tensors(preset: MoePreset) -> list[TensorSpec]:
    """Every tensor a synthetic model of `preset` contains, in file order."""
    return _PresetTensorsBuilder(preset).build()


def preset_tensors_named(name: str) -> list[TensorSpec]:
    """`preset_tensors` of the preset called `name` (UserError if there is none)."""
    return preset_tensors(get_preset(name))


def tensor_specs_bytes(specs: list[TensorSpec]) -> int:
    """Bytes of tensor data the specs hold (the file adds a header and alignment padding)."""
    return sum(spec.n_bytes for spec in specs)
