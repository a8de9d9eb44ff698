"""A small Llama-architecture decoder in plain PyTorch with Hugging Face parameter names, and its exports in
kvq's model contracts (../shared/models/README.md): ONNX with external KV I/O (Optimum naming) and TorchScript
with a list of past tensors. Used by train_demo_model.py and export_test_models.py; runs on the GPU machine."""
import json
import math
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    def __init__(self, vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
                 num_key_value_heads, head_dim, max_position_embeddings=1024, rope_theta=10000.0, rms_norm_eps=1e-5):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps

    def hf_json(self, extra=None):
        d = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": self.vocab_size,
             "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
             "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
             "num_key_value_heads": self.num_key_value_heads, "head_dim": self.head_dim,
             "rms_norm_eps": self.rms_norm_eps, "rope_theta": self.rope_theta,
             "max_position_embeddings": self.max_position_embeddings, "tie_word_embeddings": False,
             "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32",
             "bos_token_id": None, "eos_token_id": None}
        d.update(extra or {})
        return d


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.heads = c.num_attention_heads
        self.kv_heads = c.num_key_value_heads
        self.head_dim = c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, c.hidden_size, bias=False)

    def forward(self, x, cos, sin, bias, past_k, past_v):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        group = self.heads // self.kv_heads
        total = k.shape[2]
        kk = k.unsqueeze(2).expand(b, self.kv_heads, group, total, self.head_dim).reshape(b, self.heads, total, self.head_dim)
        vv = v.unsqueeze(2).expand(b, self.kv_heads, group, total, self.head_dim).reshape(b, self.heads, total, self.head_dim)
        scores = torch.matmul(q, kk.transpose(2, 3)) / math.sqrt(self.head_dim) + bias
        out = torch.matmul(torch.softmax(scores, dim=-1), vv)
        out = out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return self.o_proj(out), k, v


class MLP(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, cos, sin, bias, past_k, past_v):
        h, k, v = self.self_attn(self.input_layernorm(x), cos, sin, bias, past_k, past_v)
        x = x + h
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, k, v


class Body(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Llama(nn.Module):
    """forward(input_ids [B,T], attention_mask [B,P+T], position_ids [B,T], past: 2L tensors [B,Hkv,P,D])."""

    def __init__(self, c: Config):
        super().__init__()
        self.model = Body(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.head_dim = c.head_dim
        self.rope_theta = c.rope_theta
        inv = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32) / c.head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, input_ids, attention_mask, position_ids, past: List[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        x = self.model.embed_tokens(input_ids)
        t = input_ids.shape[1]
        p = attention_mask.shape[1] - t
        freqs = position_ids.to(torch.float32).unsqueeze(-1) * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        # rotary tables and the mask bias in the model's dtype (float16 models compute in float16)
        cos = emb.cos().unsqueeze(1).to(x.dtype)
        sin = emb.sin().unsqueeze(1).to(x.dtype)
        # allowed(i, j): key j is not in the future of query i and is not padding
        qi = torch.arange(t, device=input_ids.device).unsqueeze(1) + p
        kj = torch.arange(p + t, device=input_ids.device).unsqueeze(0)
        causal = (kj <= qi).unsqueeze(0).unsqueeze(0)
        keep = causal & (attention_mask[:, None, None, :] > 0)
        bias = torch.zeros(keep.shape, dtype=x.dtype, device=input_ids.device)
        # the dtype's lowest finite value, spelled out: torch.jit.script has no torch.finfo
        lowest = -65504.0 if x.dtype == torch.float16 else -3.4028234663852886e38
        bias = bias.masked_fill(~keep, lowest)
        present: List[torch.Tensor] = []
        i = 0
        for layer in self.model.layers:
            x, k, v = layer(x, cos, sin, bias, past[2 * i], past[2 * i + 1])
            present.append(k)
            present.append(v)
            i += 1
        return self.lm_head(self.model.norm(x)), present


class OnnxWrapper(nn.Module):
    """Flattens the past list into positional inputs for torch.onnx.export; options make Optimum's variants."""

    def __init__(self, model: Llama, layers: int, position_ids: bool = True, half_kv: bool = False):
        super().__init__()
        self.model = model
        self.layers = layers
        self.position_ids = position_ids
        self.half_kv = half_kv

    def forward(self, input_ids, attention_mask, *rest):
        if self.position_ids:
            position_ids = rest[0]
            past = list(rest[1:])
        else:
            past = list(rest)
            t = input_ids.shape[1]
            pos = attention_mask.long().cumsum(-1) - 1
            pos = pos.masked_fill(attention_mask == 0, 1)
            position_ids = pos[:, -t:]
        if self.half_kv:
            past = [x.float() for x in past]
        logits, present = self.model(input_ids, attention_mask, position_ids, past)
        if self.half_kv:
            present = [x.half() for x in present]
        return (logits, *present)


def io_names(layers, position_ids=True, with_past=True):
    names = ["input_ids", "attention_mask"] + (["position_ids"] if position_ids else [])
    if with_past:
        for i in range(layers):
            names += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
    outs = ["logits"]
    for i in range(layers):
        outs += [f"present.{i}.key", f"present.{i}.value"]
    return names, outs


def export_onnx(model: Llama, c: Config, path, position_ids=True, half_kv=False, with_past=True, opset=17):
    layers = c.num_hidden_layers
    # a float16 model takes and returns float16 K/V natively; half_kv converts at the boundary of a float32 model
    param = next(model.parameters())
    model_half = param.dtype == torch.float16
    dev = param.device
    w = OnnxWrapper(model, layers, position_ids, half_kv and not model_half).eval()
    b, t, p = 2, 5, 3 if with_past else 0
    ids = torch.randint(0, c.vocab_size, (b, t), device=dev)
    mask = torch.ones(b, p + t, dtype=torch.long, device=dev)
    pos = torch.arange(p, p + t, device=dev).unsqueeze(0).repeat(b, 1)
    kv_dtype = torch.float16 if half_kv or model_half else torch.float32
    past = [torch.randn(b, c.num_key_value_heads, p, c.head_dim, device=dev).to(kv_dtype) for _ in range(2 * layers)]
    inputs, outputs = io_names(layers, position_ids, with_past)
    args = [ids, mask] + ([pos] if position_ids else []) + (past if with_past else [])
    if not with_past:
        # the no-past graph of a merged decoder: past inputs exist for the wrapper but are empty tensors
        args = [ids, mask] + ([pos] if position_ids else [])
        w = NoPastWrapper(model, c, position_ids, half_kv)
    dyn = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total"},
           "logits": {0: "batch", 1: "sequence"}}
    if position_ids:
        dyn["position_ids"] = {0: "batch", 1: "sequence"}
    for i in range(layers):
        for kind in ("key", "value"):
            if with_past:
                dyn[f"past_key_values.{i}.{kind}"] = {0: "batch", 2: "past"}
            dyn[f"present.{i}.{kind}"] = {0: "batch", 2: "total"}
    with torch.no_grad():
        torch.onnx.export(w, tuple(args), path, input_names=inputs, output_names=outputs, dynamic_axes=dyn,
                          opset_version=opset, do_constant_folding=True, dynamo=False)


class NoPastWrapper(nn.Module):
    def __init__(self, model, c, position_ids, half_kv):
        super().__init__()
        self.inner = OnnxWrapper(model, c.num_hidden_layers, position_ids, half_kv)
        self.c = c
        self.position_ids = position_ids
        self.half_kv = half_kv

    def forward(self, input_ids, attention_mask, *rest):
        b = input_ids.shape[0]
        dtype = torch.float16 if self.half_kv else torch.float32
        empty = [torch.zeros(b, self.c.num_key_value_heads, 0, self.c.head_dim, dtype=dtype)
                 for _ in range(2 * self.c.num_hidden_layers)]
        return self.inner(input_ids, attention_mask, *rest, *empty)


def merge_decoders(no_past_path, with_past_path, out_path):
    """An Optimum-style merged decoder: one If node on `use_cache_branch` choosing the with-past graph (then) or
    the no-past graph (else). Every tensor of a branch is prefixed so the two branches never share a name."""
    import onnx
    from onnx import helper, TensorProto
    a = onnx.load(no_past_path)
    b = onnx.load(with_past_path)

    def branch(model, prefix, outer):
        g = model.graph
        rename = {}
        for init in g.initializer:
            rename[init.name] = prefix + init.name
        for node in g.node:
            for o in node.output:
                if o and o not in outer:
                    rename[o] = prefix + o
        for node in g.node:
            node.name = prefix + node.name
            for i, n in enumerate(node.input):
                if n in rename:
                    node.input[i] = rename[n]
            for i, n in enumerate(node.output):
                if n in rename:
                    node.output[i] = rename[n]
        for init in g.initializer:
            init.name = rename[init.name]
        outs = []
        for o in g.output:
            vi = onnx.ValueInfoProto()
            vi.CopyFrom(o)
            vi.name = rename.get(o.name, o.name)
            outs.append(vi)
        return helper.make_graph(list(g.node), prefix.strip("/"), [], outs, initializer=list(g.initializer))

    outer_inputs = {i.name for i in b.graph.input}
    then_g = branch(b, "with_past/", outer_inputs)
    else_g = branch(a, "no_past/", outer_inputs)
    flag = helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1])
    if_node = helper.make_node("If", ["use_cache_branch"], [o.name for o in b.graph.output], name="optimum::if",
                               then_branch=then_g, else_branch=else_g)
    graph = helper.make_graph([if_node], "merged", list(b.graph.input) + [flag], list(b.graph.output))
    merged = helper.make_model(graph, opset_imports=b.opset_import, producer_name="kvq tools")
    merged.ir_version = b.ir_version
    onnx.checker.check_model(merged)
    onnx.save(merged, out_path)


def fp16_initializers(path, min_elements=1024):
    """Stores large float32 weights as float16 with a Cast back to float32, halving the file. The weights must
    already be float16-exact (round them before export) so the model computes exactly as before."""
    import onnx
    import numpy as np
    from onnx import helper, numpy_helper, TensorProto
    m = onnx.load(path)
    g = m.graph
    casts = []
    keep = []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        half = arr.astype(np.float16) if arr.dtype == np.float32 else None
        if half is not None and arr.size >= min_elements and np.array_equal(half.astype(np.float32), arr):
            h = numpy_helper.from_array(half, init.name + "_f16")
            keep.append(h)
            casts.append(helper.make_node("Cast", [h.name], [init.name], to=TensorProto.FLOAT, name="cast_" + init.name))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    onnx.save(m, path)


def export_torchscript(model: Llama, path):
    scripted = torch.jit.script(model.eval())
    scripted.save(path)


def save_safetensors(model: Llama, path, dtype=torch.float32):
    from safetensors.torch import save_file
    state = {k: v.detach().to(dtype).contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, path, metadata={"format": "pt"})


def reference_step(model, c, ids, mask, pos, past):
    with torch.no_grad():
        return model(ids, mask, pos, past)


def check_onnx(model: Llama, c: Config, path, position_ids=True, half_kv=False, merged=False, tol=1e-4):
    """Runs prefill (P=0) and a decode step with onnxruntime against PyTorch; returns the max abs difference."""
    import numpy as np
    import onnxruntime as ort
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    torch.manual_seed(0)
    b, t = 2, 7
    ids = torch.randint(0, c.vocab_size, (b, t))
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, :2] = 0  # left padding
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    empty = [torch.zeros(b, c.num_key_value_heads, 0, c.head_dim) for _ in range(2 * c.num_hidden_layers)]
    ref_logits, ref_present = reference_step(model, c, ids, mask, pos, empty)
    worst = 0.0
    for step in range(2):
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        if position_ids:
            feed["position_ids"] = pos.numpy()
        p = 0 if step == 0 else ref_present[0].shape[2]
        kv = empty if step == 0 else ref_present
        for i in range(c.num_hidden_layers):
            for j, kind in enumerate(("key", "value")):
                x = kv[2 * i + j].numpy()
                feed[f"past_key_values.{i}.{kind}"] = x.astype(np.float16) if half_kv else x
        if merged:
            feed["use_cache_branch"] = np.array([step > 0])
        outs = s.run(None, feed)
        worst = max(worst, float(np.abs(outs[0] - ref_logits.numpy()).max()))
        if step == 0:
            for k in range(len(ref_present)):
                worst = max(worst, float(np.abs(outs[1 + k].astype(np.float32) - ref_present[k].numpy()).max()) * (0 if half_kv else 1))
            # next step: one new token per sequence
            nxt = torch.randint(0, c.vocab_size, (b, 1))
            new_mask = torch.cat([mask, torch.ones(b, 1, dtype=torch.long)], dim=1)
            new_pos = mask.sum(-1, keepdim=True)
            ref_past = [x.half().float() for x in ref_present] if half_kv else ref_present
            ref_logits, _ = reference_step(model, c, nxt, new_mask, new_pos, ref_past)
            ids, mask, pos = nxt, new_mask, new_pos
            ref_present = ref_past
    assert worst <= tol, f"{path}: onnxruntime differs from PyTorch by {worst}"
    return worst


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
