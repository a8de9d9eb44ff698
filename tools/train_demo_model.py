"""Trains kvq's demo model: a small Llama-architecture character model on tiny-shakespeare (first 90% for
training, last 10% for validation), then exports it in kvq's ONNX and TorchScript contracts with config.json,
vocab.json and float16 safetensors weights. Weights are rounded to float16 after training so that every export
holds exactly the same numbers and the ONNX file can store them as float16 (cast to float32 when loaded).

Run on the GPU machine (PyTorch, onnx, onnxruntime):
    python3 tools/train_demo_model.py --data input.txt --out models/kvq-demo-char
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F

import llama_export as lx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--intermediate", type=int, default=320)
    ap.add_argument("--iters", type=int, default=4000)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    text = open(args.data, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    split = int(0.9 * len(data))
    train, val = data[:split], data[split:]
    c = lx.Config(len(chars), args.hidden, args.intermediate, args.layers, args.heads, args.kv_heads, args.head_dim)
    model = lx.Llama(c).to(dev)
    for name, p in model.named_parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.02)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    empty = [torch.zeros(args.batch, c.num_key_value_heads, 0, c.head_dim, device=dev) for _ in range(2 * c.num_hidden_layers)]
    mask = torch.ones(args.batch, args.block, dtype=torch.long, device=dev)
    pos = torch.arange(args.block, device=dev).unsqueeze(0).repeat(args.batch, 1)
    gen = torch.Generator().manual_seed(args.seed)

    def batch(src):
        ix = torch.randint(len(src) - args.block - 1, (args.batch,), generator=gen)
        x = torch.stack([src[i:i + args.block] for i in ix]).to(dev)
        y = torch.stack([src[i + 1:i + 1 + args.block] for i in ix]).to(dev)
        return x, y

    def loss_of(src, n):
        model.eval()
        total = 0.0
        with torch.no_grad():
            for _ in range(n):
                x, y = batch(src)
                logits, _ = model(x, mask, pos, empty)
                total += F.cross_entropy(logits.reshape(-1, c.vocab_size), y.reshape(-1)).item()
        model.train()
        return total / n

    warmup = 200
    start = time.time()
    best = (float("inf"), -1, None)
    for it in range(args.iters):
        lr = args.lr * min(1.0, (it + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * it / args.iters)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch(train)
        logits, _ = model(x, mask, pos, empty)
        loss = F.cross_entropy(logits.reshape(-1, c.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (it + 1) % args.eval_every == 0 or it == args.iters - 1:
            # keep the weights with the best validation loss: a model this small still overfits 1M characters
            v = loss_of(val, 40)
            if v < best[0]:
                best = (v, it + 1, {k: t.detach().clone() for k, t in model.state_dict().items()})
            print(f"iter {it + 1} train {loss.item():.4f} val {v:.4f} lr {lr:.2e} {time.time() - start:.0f}s", flush=True)
    model.load_state_dict(best[2])
    print(f"kept the weights of iteration {best[1]}", flush=True)

    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    val_loss = loss_of(val, 200)
    print(f"validation loss {val_loss:.4f} nats/char ({params} parameters, float16-rounded weights)", flush=True)
    model = model.cpu().eval()

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    lx.export_onnx(model, c, onnx_path)
    lx.fp16_initializers(onnx_path)
    diff = lx.check_onnx(model, c, onnx_path)
    lx.export_torchscript(model, os.path.join(args.out, "model.torchscript.pt"))
    ts = torch.jit.load(os.path.join(args.out, "model.torchscript.pt"))
    ids = torch.randint(0, c.vocab_size, (1, 9))
    m9 = torch.ones(1, 9, dtype=torch.long)
    p9 = torch.arange(9).unsqueeze(0)
    e1 = [torch.zeros(1, c.num_key_value_heads, 0, c.head_dim) for _ in range(2 * c.num_hidden_layers)]
    with torch.no_grad():
        ts_diff = float((ts(ids, m9, p9, e1)[0] - model(ids, m9, p9, e1)[0]).abs().max())
    lx.save_safetensors(model, os.path.join(args.out, "model.safetensors"), torch.float16)
    lx.write_json(os.path.join(args.out, "vocab.json"), {"type": "char", "chars": chars})
    lx.write_json(os.path.join(args.out, "config.json"), c.hf_json({
        "kvq_vocab": {"type": "char", "chars": chars},
        "kvq_val_loss": val_loss, "kvq_train_iters": best[1], "kvq_parameters": params}))
    with open(os.path.join(args.out, "TRAINING.json"), "w") as f:
        json.dump({"command": "python3 tools/train_demo_model.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("data", "out")),
            "data": "tiny-shakespeare input.txt, characters [0, 90%) for training, [90%, 100%) for validation",
            "seed": args.seed, "parameters": params, "validation_loss_nats_per_char": val_loss,
            "kept_iteration": best[1], "selection": "weights with the lowest validation loss, evaluated every "
            f"{args.eval_every} iterations on 40 batches",
            "weights": "trained in float32, rounded to float16 (model.safetensors is float16; model.onnx stores "
                       "float16 initializers cast to float32; model.torchscript.pt holds the same values in float32)",
            "onnx_vs_pytorch_max_abs_logit_diff": diff, "torchscript_vs_pytorch_max_abs_logit_diff": ts_diff,
            "torch": torch.__version__, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "train_seconds": time.time() - start}, f, indent=2)
    print(f"exported to {args.out}: onnx diff {diff:.2e}, torchscript diff {ts_diff:.2e}")


if __name__ == "__main__":
    main()
