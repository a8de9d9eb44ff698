"""Decode speed of the same model shape in PyTorch with Hugging Face transformers (float16, SDPA, DynamicCache,
eager decode loop, random weights), for side-by-side comparison with `kvq bench` in the same GPU session.

Prints one JSON object per (batch, context): decode tokens/s over the batch (best of --repeats runs of --steps
steps after a prefill) and the float16 KV bytes the cache holds.

  python3 tools/torch_decode_bench.py --config /root/bench-1b/config.json --batch 1,8 --contexts 1024,4096,16384
"""
import argparse
import json
import time

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="config.json of the kvq bench model (its shape is used)")
    ap.add_argument("--batch", default="1")
    ap.add_argument("--contexts", default="1024,4096")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with open(args.config) as f:
        hf = json.load(f)
    cfg = LlamaConfig(vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
                      intermediate_size=hf["intermediate_size"], num_hidden_layers=hf["num_hidden_layers"],
                      num_attention_heads=hf["num_attention_heads"], num_key_value_heads=hf["num_key_value_heads"],
                      head_dim=hf["head_dim"], max_position_embeddings=max(hf["max_position_embeddings"], 40000),
                      rms_norm_eps=hf["rms_norm_eps"], rope_theta=hf["rope_theta"], tie_word_embeddings=False,
                      attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).half().eval()
    for batch in [int(b) for b in args.batch.split(",")]:
        for context in [int(c) for c in args.contexts.split(",")]:
            best = 0.0
            kv_bytes = 0
            for _ in range(args.repeats + 1):
                torch.cuda.empty_cache()
                ids = torch.randint(0, cfg.vocab_size, (batch, context), device="cuda")
                cache = DynamicCache()
                with torch.no_grad():
                    # prefill one sequence block at a time keeps the prefill's activations small
                    out = model(input_ids=ids, past_key_values=cache, use_cache=True)
                    nxt = out.logits[:, -1:].argmax(-1)
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for _ in range(args.steps):
                        out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
                        nxt = out.logits[:, -1:].argmax(-1)
                    torch.cuda.synchronize()
                    rate = batch * args.steps / (time.perf_counter() - t0)
                best = max(best, rate)
                kv_bytes = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values)) \
                    if hasattr(cache, "layers") else sum(k.numel() * 2 * 2 for k in cache.key_cache)
                del cache, out
            print(json.dumps({"runtime": "pytorch", "batch": batch, "context": context, "decode_tokens_per_s": best,
                              "kv_bytes": kv_bytes, "peak_gpu_bytes": torch.cuda.max_memory_allocated()}), flush=True)


if __name__ == "__main__":
    main()
