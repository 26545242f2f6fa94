"""Shapes of the synthetic MoE models moebench can write: two tiny ones for CPU tests and full-size
ones with the real shapes of popular MoE models (random weights, realistic quantization)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import unknown_name


@dataclass(frozen=True)
class MoePreset:
    """The hyper-parameters and quantization recipe of one synthetic model.

    Quantization types are ggml type names. A matrix whose row length is not a multiple of the
    type's block size falls back the way llama-quantize does (Q4_K -> Q5_0, Q6_K -> Q8_0, ...).
    Norms, biases and the router (`ffn_gate_inp`) are always F32, as in real GGUFs.
    """

    name: str
    description: str
    architecture: str  # GGUF `general.architecture`: qwen3moe, glm4moe, deepseek2, gpt-oss
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_experts: int
    n_experts_used: int
    expert_ff: int  # rows of one routed expert's gate/up matrix (`expert_feed_forward_length`)
    vocab_size: int
    context_length: int
    n_leading_dense_layers: int = 0  # layers 0..k-1 have a dense FFN instead of experts
    dense_ff: int = 0  # `feed_forward_length`: the dense FFN width of the leading dense layers
    n_shared_experts: int = 0  # each shared expert is expert_ff wide
    rope_dim: int | None = None  # None: rotate the whole head
    rope_freq_base: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    matrix_type: str = "Q8_0"  # attention and FFN/expert matrices
    attn_v_type: str | None = None  # None: matrix_type
    token_embd_type: str = "Q8_0"
    output_type: str = "Q8_0"
    full_size: bool = False  # many GB: tests use its tensor list instead of writing it
    # multi-head latent attention (deepseek2): head_dim is the MLA key head (nope + rope), head_dim_v its value head
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    head_dim_v: int | None = None  # None: head_dim
    expert_gating: int = 0  # gguf ExpertGatingFuncType (1 softmax, 2 sigmoid); 0: the architecture's default
    sliding_window: int = 0  # gpt-oss: tokens a sliding-window layer attends to (every other layer from 0)
    expert_type: str | None = None  # routed experts' type; None: matrix_type
    # gated delta-net layers (qwen3next): every layer but each full_attention_interval-th is recurrent
    ssm_d_state: int = 0  # head_k_dim (= head_v_dim here: both engines agree on the state size then)
    ssm_n_group: int = 0  # key heads
    ssm_n_v_heads: int = 0  # value heads (`ssm.time_step_rank`)
    ssm_d_conv: int = 4
    full_attention_interval: int = 4
    moe_layer_step: int = 0  # llama4 `interleave_moe_layer_step`: layers with (i + 1) % step == 0 have experts
    # glm4moe `nextn_predict_layers`: the last ones of the n_layers blocks are NextN/MTP layers (a full MoE block
    # plus nextn.eh_proj/enorm/hnorm/shared_head_norm), which the engines skip unless MTP is switched on
    nextn_predict_layers: int = 0

    def has_experts(self, layer: int) -> bool:
        """Whether layer `layer` is a MoE layer (not a leading dense one, nor an interleaved dense one)."""
        if layer < self.n_leading_dense_layers:
            return False
        return self.moe_layer_step <= 1 or (layer + 1) % self.moe_layer_step == 0

    @property
    def value_head_dim(self) -> int:
        return self.head_dim_v or self.head_dim


PRESETS: dict[str, MoePreset] = {
    p.name: p
    for p in (
        MoePreset(
            name="tiny",
            description="Qwen3-MoE layout, 8 layers, 16 experts (4 used), Q8_0; loads in a second on a CPU",
            architecture="qwen3moe",
            n_layers=8, n_embd=256, n_head=4, n_head_kv=2, head_dim=64,
            n_experts=16, n_experts_used=4, expert_ff=128,
            vocab_size=2048, context_length=4096, dense_ff=512,
        ),
        MoePreset(
            name="tiny-glm",
            description="GLM-4.5 layout: 1 leading dense layer, shared expert, expert bias, q/k/v biases; Q8_0",
            architecture="glm4moe",
            n_layers=6, n_embd=256, n_head=4, n_head_kv=2, head_dim=64,
            n_experts=16, n_experts_used=4, expert_ff=128,
            vocab_size=2048, context_length=4096,
            n_leading_dense_layers=1, dense_ff=512, n_shared_experts=1, rope_dim=32, rms_norm_eps=1e-5,
        ),
        MoePreset(
            name="tiny-glm-mtp",
            description="tiny-glm plus one NextN/MTP layer as GLM-4.5 GGUFs carry it (block 6: a MoE block with "
                        "nextn.eh_proj/enorm/hnorm/shared_head_norm; nextn_predict_layers 1); Q8_0",
            architecture="glm4moe",
            n_layers=7, n_embd=256, n_head=4, n_head_kv=2, head_dim=64,
            n_experts=16, n_experts_used=4, expert_ff=128,
            vocab_size=2048, context_length=4096,
            n_leading_dense_layers=1, dense_ff=512, n_shared_experts=1, rope_dim=32, rms_norm_eps=1e-5,
            nextn_predict_layers=1,
        ),
        MoePreset(
            name="tiny-deepseek",
            description="DeepSeek-V3 layout: multi-head latent attention (kv_lora_rank 512, rope 64, q_lora_rank "
                        "128, split attn_k_b/attn_v_b as mainline converts it), 1 leading dense layer, shared "
                        "expert, exp_probs_b, sigmoid gating; Q8_0",
            architecture="deepseek2",
            n_layers=6, n_embd=256, n_head=4, n_head_kv=1, head_dim=128, head_dim_v=64,
            n_experts=16, n_experts_used=4, expert_ff=128,
            vocab_size=2048, context_length=4096,
            n_leading_dense_layers=1, dense_ff=512, n_shared_experts=1, rope_dim=64, rms_norm_eps=1e-6,
            q_lora_rank=128, kv_lora_rank=512, expert_gating=2,
        ),
        MoePreset(
            name="tiny-gpt-oss",
            description="gpt-oss layout: sliding window 128 on every other layer, attention sinks, q/k/v/o, "
                        "router and expert biases, MXFP4 experts (Q8_0 elsewhere)",
            architecture="gpt-oss",
            n_layers=6, n_embd=256, n_head=4, n_head_kv=2, head_dim=64,
            n_experts=16, n_experts_used=4, expert_ff=128,
            vocab_size=2048, context_length=4096, rope_freq_base=150000.0, rms_norm_eps=1e-5,
            sliding_window=128, expert_type="MXFP4",
        ),
        MoePreset(
            name="tiny-qwen3next",
            description="Qwen3-Next layout: gated delta-net (recurrent-state) layers, full attention on every 4th "
                        "layer (gated q, q/k norms), gated shared expert; Q8_0",
            architecture="qwen3next",
            n_layers=8, n_embd=256, n_head=4, n_head_kv=2, head_dim=64,
            n_experts=16, n_experts_used=4, expert_ff=128,
            vocab_size=2048, context_length=4096, n_shared_experts=1, rope_dim=32,
            ssm_d_state=32, ssm_n_group=2, ssm_n_v_heads=4,
        ),
        MoePreset(
            name="tiny-qwen35moe",
            description="Qwen3.5-MoE layout: as tiny-qwen3next with ssm_beta/ssm_alpha apart and rope sections; Q8_0",
            architecture="qwen35moe",
            n_layers=8, n_embd=256, n_head=4, n_head_kv=2, head_dim=64,
            n_experts=16, n_experts_used=4, expert_ff=128,
            vocab_size=2048, context_length=4096, n_shared_experts=1, rope_dim=32,
            ssm_d_state=32, ssm_n_group=2, ssm_n_v_heads=4,
        ),
        MoePreset(
            name="tiny-llama4",
            description="Llama 4 layout: MoE on every other layer (interleave step 2), the others dense, shared "
                        "expert, top-1 routing, chunked attention (8192) on 3 of 4 layers; Q8_0",
            architecture="llama4",
            n_layers=8, n_embd=256, n_head=4, n_head_kv=2, head_dim=64,
            n_experts=16, n_experts_used=1, expert_ff=128,
            vocab_size=2048, context_length=4096, dense_ff=512, n_shared_experts=1, rope_freq_base=500000.0,
            rms_norm_eps=1e-5, moe_layer_step=2,
        ),
        MoePreset(
            name="tiny-mixtral",
            description="Mixtral layout (arch llama with merged experts): 8 experts (2 used), no shared expert; Q8_0",
            architecture="llama",
            n_layers=6, n_embd=256, n_head=4, n_head_kv=2, head_dim=64,
            n_experts=8, n_experts_used=2, expert_ff=256,
            vocab_size=2048, context_length=4096, dense_ff=256, rope_freq_base=1_000_000.0, rms_norm_eps=1e-5,
        ),
        MoePreset(
            name="tiny-minimax-m2",
            description="MiniMax-M2 layout: q/k norms over the whole projection, sigmoid routing with exp_probs_b, "
                        "partial rope; Q8_0",
            architecture="minimax-m2",
            n_layers=6, n_embd=256, n_head=4, n_head_kv=2, head_dim=64,
            n_experts=16, n_experts_used=4, expert_ff=128,
            vocab_size=2048, context_length=4096, dense_ff=128, rope_dim=32, rope_freq_base=5_000_000.0,
            expert_gating=2,
        ),
        MoePreset(
            name="tiny-ernie",
            description="ERNIE-4.5-MoE layout: 1 leading dense layer, 2 shared experts, exp_probs_b; Q8_0",
            architecture="ernie4_5-moe",
            n_layers=6, n_embd=256, n_head=4, n_head_kv=2, head_dim=64,
            n_experts=16, n_experts_used=4, expert_ff=128,
            vocab_size=2048, context_length=4096, n_leading_dense_layers=1, dense_ff=512, n_shared_experts=2,
            rope_freq_base=500000.0, rms_norm_eps=1e-5, moe_layer_step=1,
        ),
        MoePreset(
            name="small",
            description="Qwen3-MoE layout, 16 layers, 32 experts (4 used), wider (n_embd 384), Q8_0, ~130 MB: "
                        "a deeper model the performance model and the tuner were not calibrated on",
            architecture="qwen3moe",
            n_layers=16, n_embd=384, n_head=6, n_head_kv=2, head_dim=64,
            n_experts=32, n_experts_used=4, expert_ff=192,
            vocab_size=2048, context_length=4096, dense_ff=768,
        ),
        MoePreset(
            name="qwen3-30b-a3b",
            description="Qwen3-30B-A3B shapes: 48 layers, 128 experts (8 used), Q4_K/Q6_K",
            architecture="qwen3moe",
            n_layers=48, n_embd=2048, n_head=32, n_head_kv=4, head_dim=128,
            n_experts=128, n_experts_used=8, expert_ff=768,
            vocab_size=151936, context_length=40960, dense_ff=6144,
            matrix_type="Q4_K", attn_v_type="Q6_K", token_embd_type="Q4_K", output_type="Q6_K",
            full_size=True,
        ),
        MoePreset(
            name="glm-4.5-air",
            description="GLM-4.5-Air shapes: 46 layers (1 dense) + the MTP layer, 128 experts (8 used) + 1 shared, "
                        "Q4_K/Q5_0/Q6_K",
            architecture="glm4moe",
            n_layers=47, nextn_predict_layers=1, n_embd=4096, n_head=96, n_head_kv=8, head_dim=128,
            n_experts=128, n_experts_used=8, expert_ff=1408,
            vocab_size=151552, context_length=131072,
            n_leading_dense_layers=1, dense_ff=10944, n_shared_experts=1, rope_dim=64, rms_norm_eps=1e-5,
            matrix_type="Q4_K", attn_v_type="Q6_K", token_embd_type="Q4_K", output_type="Q6_K",
            full_size=True,
        ),
        MoePreset(
            name="deepseek-v3",
            description="DeepSeek-V3/R1 shapes: 61 layers (3 dense), 256 experts (8 used) + 1 shared, MLA "
                        "(kv_lora_rank 512, rope 64, q_lora_rank 1536), Q4_K/Q6_K",
            architecture="deepseek2",
            n_layers=61, n_embd=7168, n_head=128, n_head_kv=1, head_dim=192, head_dim_v=128,
            n_experts=256, n_experts_used=8, expert_ff=2048,
            vocab_size=129280, context_length=163840,
            n_leading_dense_layers=3, dense_ff=18432, n_shared_experts=1, rope_dim=64, rms_norm_eps=1e-6,
            q_lora_rank=1536, kv_lora_rank=512, expert_gating=2, rope_freq_base=10000.0,
            matrix_type="Q4_K", attn_v_type="Q6_K", token_embd_type="Q4_K", output_type="Q6_K",
            full_size=True,
        ),
        MoePreset(
            name="gpt-oss-120b",
            description="gpt-oss-120b shapes: 36 layers (18 with a 128-token sliding window), 128 experts (4 used), "
                        "MXFP4 experts, Q8_0 attention",
            architecture="gpt-oss",
            n_layers=36, n_embd=2880, n_head=64, n_head_kv=8, head_dim=64,
            n_experts=128, n_experts_used=4, expert_ff=2880,
            vocab_size=201088, context_length=131072, rope_freq_base=150000.0, rms_norm_eps=1e-5,
            sliding_window=128, expert_type="MXFP4", token_embd_type="Q8_0", output_type="Q8_0",
            full_size=True,
        ),
        MoePreset(
            name="qwen3-next-80b-a3b",
            description="Qwen3-Next-80B-A3B shapes: 48 layers (36 gated delta-net, 12 full attention), 512 experts "
                        "(10 used) + 1 gated shared, Q4_K/Q6_K",
            architecture="qwen3next",
            n_layers=48, n_embd=2048, n_head=16, n_head_kv=2, head_dim=256,
            n_experts=512, n_experts_used=10, expert_ff=512,
            vocab_size=151936, context_length=262144, n_shared_experts=1, rope_dim=64,
            ssm_d_state=128, ssm_n_group=16, ssm_n_v_heads=32, rope_freq_base=10_000_000.0,
            matrix_type="Q4_K", attn_v_type="Q6_K", token_embd_type="Q4_K", output_type="Q6_K",
            full_size=True,
        ),
        MoePreset(
            name="qwen3.6-35b-a3b",
            description="Qwen3.6-35B-A3B (= Qwen3.5-35B-A3B) shapes: 40 layers (30 gated delta-net, 10 full "
                        "attention), 256 experts (8 used) + 1 gated shared, Q8_0 (THUDM/slime "
                        "scripts/models/qwen3.5-35B-A3B.sh)",
            architecture="qwen35moe",
            n_layers=40, n_embd=2048, n_head=16, n_head_kv=2, head_dim=256,
            n_experts=256, n_experts_used=8, expert_ff=512,
            vocab_size=248320, context_length=262144, n_shared_experts=1, rope_dim=64,
            ssm_d_state=128, ssm_n_group=16, ssm_n_v_heads=32, rope_freq_base=10_000_000.0,
            full_size=True,
        ),
        MoePreset(
            name="qwen3.5-122b-a10b",
            description="Qwen3.5-122B-A10B shapes: 48 layers (36 gated delta-net, 12 full attention), 256 experts "
                        "(8 used) + 1 gated shared, n_embd 3072, 32 heads; Q4_K, Q8_0 embeddings and output "
                        "(a Q4_K_L). Published: layers, width, heads, experts; the KV heads (2), delta-net heads "
                        "(16 key, 64 value) and expert width (1024, from the 122B total) are inferred",
            architecture="qwen35moe",
            n_layers=48, n_embd=3072, n_head=32, n_head_kv=2, head_dim=256,
            n_experts=256, n_experts_used=8, expert_ff=1024,
            vocab_size=248320, context_length=262144, n_shared_experts=1, rope_dim=64,
            ssm_d_state=128, ssm_n_group=16, ssm_n_v_heads=64, rope_freq_base=10_000_000.0,
            matrix_type="Q4_K", attn_v_type="Q6_K", token_embd_type="Q8_0", output_type="Q8_0",
            full_size=True,
        ),
        MoePreset(
            name="llama-4-scout",
            description="Llama-4-Scout-17B-16E shapes: 48 layers, all MoE, 16 experts (1 used) + 1 shared, chunked "
                        "attention on 3 of 4 layers, Q4_K/Q6_K",
            architecture="llama4",
            n_layers=48, n_embd=5120, n_head=40, n_head_kv=8, head_dim=128,
            n_experts=16, n_experts_used=1, expert_ff=8192,
            vocab_size=202048, context_length=10485760, dense_ff=16384, n_shared_experts=1,
            rope_freq_base=500000.0, rms_norm_eps=1e-5, moe_layer_step=1,
            matrix_type="Q4_K", attn_v_type="Q6_K", token_embd_type="Q4_K", output_type="Q6_K",
            full_size=True,
        ),
        MoePreset(
            name="mixtral-8x7b",
            description="Mixtral-8x7B shapes: 32 layers, 8 experts (2 used), Q4_K/Q6_K",
            architecture="llama",
            n_layers=32, n_embd=4096, n_head=32, n_head_kv=8, head_dim=128,
            n_experts=8, n_experts_used=2, expert_ff=14336,
            vocab_size=32000, context_length=32768, dense_ff=14336, rope_freq_base=1_000_000.0, rms_norm_eps=1e-5,
            matrix_type="Q4_K", attn_v_type="Q6_K", token_embd_type="Q4_K", output_type="Q6_K",
            full_size=True,
        ),
        MoePreset(
            name="minimax-m2",
            description="MiniMax-M2 shapes: 62 layers, 256 experts (8 used), 48 heads (8 KV) of 128, rope 64, "
                        "Q4_K/Q6_K",
            architecture="minimax-m2",
            n_layers=62, n_embd=3072, n_head=48, n_head_kv=8, head_dim=128,
            n_experts=256, n_experts_used=8, expert_ff=1536,
            vocab_size=200064, context_length=196608, dense_ff=1536, rope_dim=64, rope_freq_base=5_000_000.0,
            expert_gating=2,
            matrix_type="Q4_K", attn_v_type="Q6_K", token_embd_type="Q4_K", output_type="Q6_K",
            full_size=True,
        ),
    )
}


def get_preset(name: str) -> MoePreset:
    """The preset called `name`; a UserError with a "did you mean" and the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise unknown_name("preset", name, PRESETS, "known presets") from None
