#!/usr/bin/python3
"""An independent GPT-2 in plain PyTorch (no transformers), read straight from a Hugging Face folder.

recite's graphs are checked against it; it is checked itself against the tiny fixture's reference.json first
(outputs of Hugging Face transformers), so it is not the project checking itself.

    /usr/bin/python3 test/model/torch_reference.py fixture  test/fixtures/tiny-gpt2
    /usr/bin/python3 test/model/torch_reference.py inversion MODEL_DIR CASES.json OUT.json
    /usr/bin/python3 test/model/torch_reference.py training  MODEL_DIR CASES.json OUT.json
    /usr/bin/python3 test/model/torch_reference.py train-speed MODEL_DIR BATCH STEPS

`inversion` computes, for each case's prompt (B, P, C) and target ids (B, T): per-token NLL, the gradient of the
summed NLL to the prompt, and the teacher-forced argmax ids (recite's gradient graph). `training` computes, for
each case's token ids (B, S + 1): the mean next-token NLL and its gradient to every weight (recite's training
graph), written as per-weight summaries (sum, L2 norm, and values at fixed indices).

Needs Debian's python3-torch and python3-numpy (/usr/bin/python3).
"""
import json
import math
import struct
import sys

import numpy as np
import torch

torch.set_grad_enabled(True)

DTYPES = {"F32": np.float32, "F16": np.float16}


def read_safetensors(path):
    """Return {canonical name: float32 tensor}, dropping GPT2LMHeadModel's `transformer.` prefix."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        if info["dtype"] == "BF16":
            raw = np.frombuffer(data[start:end], dtype=np.uint16).astype(np.uint32) << 16
            array = raw.view(np.float32)
        else:
            array = np.frombuffer(data[start:end], dtype=DTYPES[info["dtype"]])
        name = key[len("transformer."):] if key.startswith("transformer.") else key
        tensors[name] = torch.tensor(array.astype(np.float32).reshape(info["shape"]))
    return tensors


class Gpt2:
    """GPT-2 (tied head, gelu_new, scaled attention) over a dict of weights."""

    def __init__(self, folder):
        with open(f"{folder}/config.json") as f:
            config = json.load(f)
        self.n_layer = config["n_layer"]
        self.n_head = config["n_head"]
        self.eps = config.get("layer_norm_epsilon", 1e-5)
        self.w = read_safetensors(f"{folder}/model.safetensors")
        self.head = self.w.get("lm_head.weight", self.w["wte.weight"])

    def layernorm(self, x, name):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def hidden(self, h):
        """Blocks and ln_f over embedded inputs h (B, S, C)."""
        B, S, C = h.shape
        H = self.n_head
        causal = torch.tril(torch.ones(S, S, dtype=torch.bool))
        for l in range(self.n_layer):
            p = f"h.{l}"
            x = self.layernorm(h, f"{p}.ln_1")
            qkv = x @ self.w[f"{p}.attn.c_attn.weight"] + self.w[f"{p}.attn.c_attn.bias"]
            q, k, v = qkv.split(C, dim=2)
            q, k, v = (t.view(B, S, H, C // H).transpose(1, 2) for t in (q, k, v))
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(C // H)
            scores = scores.masked_fill(~causal, float("-inf"))
            y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, S, C)
            h = h + y @ self.w[f"{p}.attn.c_proj.weight"] + self.w[f"{p}.attn.c_proj.bias"]
            x = self.layernorm(h, f"{p}.ln_2")
            fc = x @ self.w[f"{p}.mlp.c_fc.weight"] + self.w[f"{p}.mlp.c_fc.bias"]
            gelu = 0.5 * fc * (1 + torch.tanh(math.sqrt(2 / math.pi) * (fc + 0.044715 * fc ** 3)))
            h = h + gelu @ self.w[f"{p}.mlp.c_proj.weight"] + self.w[f"{p}.mlp.c_proj.bias"]
        return self.layernorm(h, "ln_f")

    def inversion(self, prompt, target_ids):
        """NLL per target token, d(sum NLL)/d prompt and the teacher-forced argmax, as recite's gradient graph."""
        prompt = prompt.clone().requires_grad_(True)
        B, P, _ = prompt.shape
        T = target_ids.shape[1]
        x = torch.cat([prompt, self.w["wte.weight"][target_ids[:, :-1]]], dim=1)
        h = self.hidden(x + self.w["wpe.weight"][: P + T - 1])
        logits = h[:, P - 1:] @ self.head.T  # (B, T, V)
        nll = -logits.log_softmax(-1).gather(2, target_ids[:, :, None])[:, :, 0]
        nll.sum().backward()
        return nll.detach(), prompt.grad, logits.argmax(-1)

    def training(self, ids):
        """Mean next-token NLL over ids (B, S + 1) and its gradient to every weight, as recite's training graph."""
        for t in self.w.values():
            t.requires_grad_(True)
            t.grad = None
        inputs, targets = ids[:, :-1], ids[:, 1:]
        S = inputs.shape[1]
        h = self.hidden(self.w["wte.weight"][inputs] + self.w["wpe.weight"][:S])
        logits = h @ self.head.T
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        return loss.item(), {name: t.grad for name, t in self.w.items()}


def rel_error(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def check_fixture(folder):
    """Reproduce the fixture's reference.json (transformers' outputs) before being trusted as a reference."""
    model = Gpt2(folder)
    with open(f"{folder}/reference.json") as f:
        reference = json.load(f)
    worst = {"nll": 0.0, "grad": 0.0}
    for case in reference["cases"]:
        nll, grad, argmax = model.inversion(torch.tensor(case["prompt"]), torch.tensor(case["target_ids"]))
        worst["nll"] = max(worst["nll"], rel_error(nll.numpy(), case["nll_per_token"]))
        worst["grad"] = max(worst["grad"], rel_error(grad.numpy(), case["grad_prompt"]))
        if argmax.tolist() != case["argmax_ids"]:
            raise SystemExit(f"case {case['name']}: argmax ids differ from reference.json")
    print(json.dumps({"fixture": folder, "cases": len(reference["cases"]), "nll_rel_error": worst["nll"],
                      "grad_rel_error": worst["grad"], "argmax": "identical"}))
    if worst["nll"] > 1e-4 or worst["grad"] > 1e-3:
        raise SystemExit("the reference implementation does not reproduce reference.json")


def summarize(tensor, probes):
    flat = tensor.detach().reshape(-1).numpy().astype(np.float64)
    idx = [int(i) % flat.size for i in probes]
    return {"sum": float(flat.sum()), "l2": float(np.sqrt((flat ** 2).sum())), "max_abs": float(np.abs(flat).max()),
            "probe_indices": idx, "probe_values": [float(flat[i]) for i in idx]}


def train_speed(folder, batch, steps):
    """Time PyTorch training steps (forward, backward to every weight, AdamW) of the model's shape, for the trainer's
    side-by-side figure; the same shape and batch as recite's trainer."""
    import os
    import time
    torch.set_num_threads(os.cpu_count())  # every core, as recite's trainer uses
    model = Gpt2(folder)
    for t in model.w.values():
        t.requires_grad_(True)
    optimizer = torch.optim.AdamW(list(model.w.values()), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    with open(f"{folder}/config.json") as f:
        S = json.load(f)["n_positions"]
    generator = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps + 1):
        ids = torch.randint(0, 50257, (batch, S + 1), generator=generator)
        start = time.perf_counter()
        optimizer.zero_grad()
        inputs, targets = ids[:, :-1], ids[:, 1:]
        logits = model.hidden(model.w["wte.weight"][inputs] + model.w["wpe.weight"][:S]) @ model.head.T
        torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
        optimizer.step()
        if step > 0:  # the first step warms up
            times.append(time.perf_counter() - start)
    per_step = sorted(times)[len(times) // 2]
    print(json.dumps({"implementation": "torch " + torch.__version__, "threads": torch.get_num_threads(),
                      "batch": batch, "positions": S, "median_step_s": per_step,
                      "tokens_per_s": batch * S / per_step}))


def main():
    mode = sys.argv[1]
    if mode == "fixture":
        check_fixture(sys.argv[2])
        return
    if mode == "train-speed":
        train_speed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    folder, cases_file, out_file = sys.argv[2:5]
    model = Gpt2(folder)
    with open(cases_file) as f:
        cases = json.load(f)["cases"]
    results = []
    for case in cases:
        if mode == "inversion":
            nll, grad, argmax = model.inversion(torch.tensor(case["prompt"]), torch.tensor(case["target_ids"]))
            results.append({"name": case["name"], "nll_per_token": nll.tolist(), "grad_prompt": grad.tolist(),
                            "argmax_ids": argmax.tolist()})
        elif mode == "training":
            loss, grads = model.training(torch.tensor(case["ids"]))
            rng = np.random.default_rng(case.get("probe_seed", 0))
            probes = rng.integers(0, 2 ** 31, size=8)
            results.append({"name": case["name"], "loss": loss,
                            "grads": {name: summarize(g, probes) for name, g in sorted(grads.items())}})
        else:
            raise SystemExit(f"unknown mode {mode}")
    with open(out_file, "w") as f:
        json.dump({"implementation": "test/model/torch_reference.py (plain PyTorch " + torch.__version__ + ")",
                   "model": folder, "mode": mode, "results": results}, f)
    print(f"{mode}: {len(results)} cases -> {out_file}")


if __name__ == "__main__":
    main()
