"""Exports tiny randomly initialised Llama decoders in the variants Optimum produces for real models, as test
fixtures for kvq's ONNX runtime: the base contract, no position_ids input, float16 KV inputs/outputs, and a merged
decoder with a use_cache_branch input. Also trains a small byte-level BPE tokenizer.json with the Rust tokenizers
library, whose vocabulary the models use. Every export is checked against PyTorch with onnxruntime.

Run on the GPU machine:  python3 tools/export_test_models.py --text input.txt --out tiny
"""
import argparse
import os

import torch

import llama_export as lx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=384, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<eos>"])
    text = open(args.text, encoding="utf-8").read()[:200_000]
    tok.train_from_iterator([text[i:i + 1000] for i in range(0, len(text), 1000)], trainer)
    vocab = tok.get_vocab_size()
    torch.manual_seed(7)
    c = lx.Config(vocab, 64, 96, 2, 4, 2, 16, max_position_embeddings=512)
    model = lx.Llama(c).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    variants = {
        "base": dict(position_ids=True, half_kv=False),
        "no-position-ids": dict(position_ids=False, half_kv=False),
        "fp16-kv": dict(position_ids=True, half_kv=True),
    }
    report = {}
    config = c.hf_json({"eos_token_id": tok.token_to_id("<eos>")})
    for name, opts in variants.items():
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        lx.export_onnx(model, c, os.path.join(d, "model.onnx"), **opts)
        report[name] = lx.check_onnx(model, c, os.path.join(d, "model.onnx"), tol=2e-3 if opts["half_kv"] else 1e-4, **opts)
        lx.write_json(os.path.join(d, "config.json"), config)
        tok.save(os.path.join(d, "tokenizer.json"))
    d = os.path.join(args.out, "merged")
    os.makedirs(d, exist_ok=True)
    lx.export_onnx(model, c, os.path.join(d, "no_past.onnx"), with_past=False)
    lx.export_onnx(model, c, os.path.join(d, "with_past.onnx"))
    lx.merge_decoders(os.path.join(d, "no_past.onnx"), os.path.join(d, "with_past.onnx"), os.path.join(d, "model.onnx"))
    os.remove(os.path.join(d, "no_past.onnx"))
    os.remove(os.path.join(d, "with_past.onnx"))
    report["merged"] = lx.check_onnx(model, c, os.path.join(d, "model.onnx"), merged=True)
    lx.write_json(os.path.join(d, "config.json"), config)
    tok.save(os.path.join(d, "tokenizer.json"))
    lx.save_safetensors(model, os.path.join(args.out, "base", "model.safetensors"))
    lx.export_torchscript(model, os.path.join(args.out, "base", "model.torchscript.pt"))
    lx.write_json(os.path.join(args.out, "PROVENANCE.json"), {
        "command": "python3 tools/export_test_models.py --text tinyshakespeare/input.txt --out tiny",
        "seed": 7, "weights": "random normal(0, 0.2), not trained", "tokenizer": "byte-level BPE, 384 tokens, "
        "trained on the first 200k characters of tiny-shakespeare", "config": config,
        "onnxruntime_vs_pytorch_max_abs_diff": report, "torch": torch.__version__})
    print("variants checked against PyTorch:", report)


if __name__ == "__main__":
    main()
