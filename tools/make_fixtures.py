#!/usr/bin/python3
"""make_fixtures.py - PyTorch reference runs for the optimizer tests.

Usage (from the repository root, with Debian's python3-torch):

    /usr/bin/python3 tools/make_fixtures.py [OUTDIR]

OUTDIR defaults to tests/fixtures/optim. The output is deterministic: the
same torch version writes the same files byte for byte (one thread, with
OpenBLAS pinned to its Haswell kernel by tools/pin_env.py, so not
dependent on the CPU either), so the files are committed and the C tests
(tests/test_optim_fixtures*.c) need no Python.

Each case trains a small torch.nn.Sequential in float64 for `steps` steps
on a fixed data set cut into consecutive mini-batches (no shuffling; the
last batch may be smaller), doing per step exactly what bp_train_step
does:

  1. data loss on the batch (reduction 'mean'): MSELoss, CrossEntropyLoss
     on class indices, or BCEWithLogitsLoss; a final Softmax (cross-
     entropy) or Sigmoid (bce) layer is skipped, i.e. fused into the loss;
  2. penalties on the trainable Linear weights only (not biases):
     loss += l1 * sum|W| + l2 / 2 * sum W^2, so the gradients get
     l1 * sign(W) + l2 * W (sign(0) = 0);
  3. torch.nn.utils.clip_grad_value_(params, clip_value) if clip_value > 0;
  4. torch.nn.utils.clip_grad_norm_(params, clip_norm) if clip_norm > 0;
  5. optimizer.step() (torch.optim, foreach=False, weight_decay inside);
  6. scheduler.step(), a LambdaLR implementing the bp_schedule formula of
     include/backprop.h.

`freeze` = K sets requires_grad False on the first K Linear layers and
leaves them out of the optimizer, the penalties and the clipping.

File format (one item per line, numbers printed with %.17g):

    # comment
    KEY VALUE                  config: optimizer lr momentum dampening beta1
                               beta2 eps alpha lr_decay weight_decay l1 l2
                               clip_value clip_norm schedule warmup step_size
                               gamma min_lr total_steps freeze loss n_inputs
                               n_targets n_samples batch steps
    spec SPEC...               the architecture spec (rest of the line)
    tensor NAME COUNT V1 V2 .. x [n_samples, n_inputs], y [n_samples,
                               n_targets], loss [steps] (data loss of each
                               step, before its update), lr [steps] (the
                               rate each step used), init.I.weight,
                               init.I.bias, final.I.weight, final.I.bias
                               (I = the layer's index in the spec)
    float32_error E            how far torch's own float32 run of the case
                               (weights and data rounded to float32) lands
                               from the float64 one, by the C test's measure
                               max |a - b| / max(|b|, 1e-3); the float build's
                               tolerance is max(1e-5, 4 E) (see
                               tests/test_optim_fixtures.c)
"""

import math
import os
import sys

# Before torch loads: the pinned numeric environment (tools/pin_env.py), as
# make_cnn_fixtures.py does, so the files do not depend on this CPU's
# OpenBLAS kernel.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pin_env  # noqa: E402

pin_env.pin()

import torch  # noqa: E402
import torch.nn as nn

torch.set_default_dtype(torch.float64)
# One thread: reductions (matmul, sums) always run in the same order, so the
# files come out byte for byte the same on every run.
torch.set_num_threads(1)

# Optimizer defaults (torch's), overridden per case.
DEFAULTS = dict(
    lr=0.01, momentum=0.0, dampening=0.0, beta1=0.9, beta2=0.999, eps=1e-8,
    alpha=0.99, lr_decay=0.0, weight_decay=0.0, l1=0.0, l2=0.0,
    clip_value=0.0, clip_norm=0.0, schedule="constant", warmup=0,
    step_size=1000, gamma=0.1, min_lr=0.0, total_steps=0, freeze=0,
    loss="cross-entropy", n_inputs=5, n_samples=16, batch=8, steps=20,
)

CASES = [
    dict(name="sgd", optimizer="sgd", lr=0.1, weight_decay=1e-3, l1=1e-3,
         l2=1e-2, clip_value=0.2, clip_norm=0.5, schedule="constant", warmup=3,
         spec="dense(7) tanh dense(3)"),
    dict(name="momentum", optimizer="momentum", lr=0.05, momentum=0.9,
         dampening=0.1, weight_decay=1e-3, l1=2e-3, l2=1e-2, clip_value=0.2,
         clip_norm=0.5, schedule="step", warmup=2, step_size=5, gamma=0.5,
         spec="dense(7) tanh dense(3)"),
    dict(name="nesterov", optimizer="nesterov", lr=0.05, momentum=0.9,
         weight_decay=1e-3, l1=1e-3, l2=1e-2, clip_value=0.3, clip_norm=0.6,
         schedule="exp", gamma=0.95, loss="mse", batch=6,
         spec="dense(7) tanh dense(2)"),
    dict(name="adam", optimizer="adam", lr=0.01, weight_decay=1e-3, l1=1e-3,
         l2=1e-2, clip_value=0.2, clip_norm=0.5, schedule="cosine", warmup=4,
         total_steps=20, min_lr=1e-3, spec="dense(7) tanh dense(3) softmax"),
    dict(name="adamw", optimizer="adamw", lr=0.01, beta1=0.85, beta2=0.99,
         eps=1e-7, weight_decay=0.05, l1=1e-3, l2=1e-2, clip_value=0.08,
         clip_norm=0.18, schedule="step", warmup=3, step_size=4, gamma=0.7,
         loss="bce", spec="dense(6) relu dense(2)"),
    dict(name="rmsprop_momentum", optimizer="rmsprop", lr=0.01, alpha=0.9,
         momentum=0.5, weight_decay=1e-3, l1=1e-3, l2=1e-2, clip_value=0.2,
         clip_norm=0.5, schedule="cosine", total_steps=16, min_lr=0.0,
         spec="dense(7) tanh dense(3)"),
    dict(name="rmsprop", optimizer="rmsprop", lr=0.01, weight_decay=1e-3,
         l1=1e-3, l2=1e-2, clip_value=0.3, clip_norm=0.6, schedule="exp",
         warmup=3, gamma=0.9, loss="mse", spec="dense(7) tanh dense(2)"),
    dict(name="adagrad", optimizer="adagrad", lr=0.1, lr_decay=0.01,
         eps=1e-10, weight_decay=1e-3, l1=1e-3, l2=1e-2, clip_value=0.2,
         clip_norm=0.5, schedule="step", step_size=6, gamma=0.5,
         spec="dense(7) tanh dense(3)"),
    dict(name="freeze", optimizer="momentum", lr=0.05, momentum=0.9,
         weight_decay=1e-3, l1=1e-3, l2=1e-2, clip_value=0.2, clip_norm=0.5,
         schedule="cosine", warmup=2, total_steps=20, min_lr=5e-3, freeze=1,
         spec="dense(7) tanh dense(5) tanh dense(3)"),
    dict(name="logistic", optimizer="sgd", lr=0.5, weight_decay=1e-3,
         l1=1e-3, l2=1e-2, clip_value=0.3, clip_norm=0.4, schedule="exp",
         warmup=2, gamma=0.97, loss="bce", batch=5,
         spec="dense(1) sigmoid"),
]


def schedule_factor(c, t):
    """The bp_schedule formula of include/backprop.h, t = 0-based step."""
    if t < c["warmup"]:
        return (t + 1) / c["warmup"]
    s = t - c["warmup"]
    kind = c["schedule"]
    if kind == "constant":
        return 1.0
    if kind == "step":
        return c["gamma"] ** (s // c["step_size"])
    if kind == "exp":
        return c["gamma"] ** s
    if kind == "cosine":
        T = max(1, c["total_steps"] - c["warmup"])
        m = c["min_lr"] / c["lr"]
        return m + (1 - m) * (1 + math.cos(math.pi * min(s, T) / T)) / 2
    raise ValueError(kind)


def build(spec, n_inputs):
    """nn.Sequential for a spec made of dense(N), tanh, relu, softmax,
    sigmoid (the words the cases use)."""
    layers, width = [], n_inputs
    for word in spec.split():
        if word.startswith("dense("):
            units = int(word[6:-1])
            layers.append(nn.Linear(width, units))
            width = units
        elif word == "tanh":
            layers.append(nn.Tanh())
        elif word == "relu":
            layers.append(nn.ReLU())
        elif word == "softmax":
            layers.append(nn.Softmax(dim=1))
        elif word == "sigmoid":
            layers.append(nn.Sigmoid())
        else:
            raise ValueError(word)
    return nn.Sequential(*layers), width


def make_data(c, n_out, gen):
    n, k = c["n_samples"], c["n_inputs"]
    x = torch.randn(n, k, generator=gen)
    if c["loss"] == "cross-entropy":
        # every class present, in a fixed scrambled order
        y = torch.arange(n) % n_out
        y = y[torch.randperm(n, generator=gen)].to(torch.float64).reshape(n, 1)
    elif c["loss"] == "bce":
        logits = x[:, :n_out] - 0.5 * x[:, -n_out:] + 0.3 * torch.randn(n, n_out, generator=gen)
        y = (logits > 0).to(torch.float64)
    else:
        w = torch.randn(k, n_out, generator=gen)
        y = torch.tanh(x @ w) + 0.1 * torch.randn(n, n_out, generator=gen)
    return x, y


def make_optimizer(c, params):
    o = c["optimizer"]
    if o == "sgd":
        return torch.optim.SGD(params, lr=c["lr"], weight_decay=c["weight_decay"],
                               foreach=False)
    if o in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=c["lr"], momentum=c["momentum"],
                               dampening=c["dampening"],
                               nesterov=(o == "nesterov"),
                               weight_decay=c["weight_decay"], foreach=False)
    if o == "adam":
        return torch.optim.Adam(params, lr=c["lr"], betas=(c["beta1"], c["beta2"]),
                                eps=c["eps"], weight_decay=c["weight_decay"],
                                foreach=False)
    if o == "adamw":
        return torch.optim.AdamW(params, lr=c["lr"], betas=(c["beta1"], c["beta2"]),
                                 eps=c["eps"], weight_decay=c["weight_decay"],
                                 foreach=False)
    if o == "rmsprop":
        return torch.optim.RMSprop(params, lr=c["lr"], alpha=c["alpha"], eps=c["eps"],
                                   weight_decay=c["weight_decay"],
                                   momentum=c["momentum"], foreach=False)
    if o == "adagrad":
        return torch.optim.Adagrad(params, lr=c["lr"], lr_decay=c["lr_decay"],
                                   eps=c["eps"], weight_decay=c["weight_decay"],
                                   foreach=False)
    raise ValueError(o)


def fmt(v):
    return "%.17g" % v


def run_case(case, seed, dtype=torch.float64, f32_error=None):
    """Train one case; returns the fixture text, clipping statistics and
    the final parameters. With dtype float32 the float64 weights and data
    are rounded to float32 first (for float32_error)."""
    c = dict(DEFAULTS)
    c.update(case)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model, n_out = build(c["spec"], c["n_inputs"])
    # fixed, generator-drawn initial weights and non-zero biases
    for m in model:
        if isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            with torch.no_grad():
                m.weight.copy_((torch.rand(m.weight.shape, generator=gen) * 2 - 1) * bound)
                m.bias.copy_((torch.rand(m.bias.shape, generator=gen) * 2 - 1) * bound)
    x, y = make_data(c, n_out, gen)
    c["n_targets"] = y.shape[1]
    if dtype != torch.float64:
        model.to(dtype)
        x, y = x.to(dtype), y.to(dtype)

    linears = [(i, m) for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    init = {i: (m.weight.detach().clone(), m.bias.detach().clone()) for i, m in linears}
    for i, m in linears[:c["freeze"]]:
        m.weight.requires_grad_(False)
        m.bias.requires_grad_(False)
    trainable = [(i, m) for i, m in linears[c["freeze"]:]]
    params = [p for _, m in trainable for p in (m.weight, m.bias)]
    weights = [m.weight for _, m in trainable]

    opt = make_optimizer(c, params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: schedule_factor(c, t))

    # a final softmax (cross-entropy) or sigmoid (bce) is fused into the loss
    last = model[-1]
    fused = (c["loss"] == "cross-entropy" and isinstance(last, nn.Softmax)) or \
            (c["loss"] == "bce" and isinstance(last, nn.Sigmoid))
    logits_net = model[:-1] if fused else model
    if c["loss"] == "cross-entropy":
        crit = lambda z, t: nn.functional.cross_entropy(z, t[:, 0].long())
    elif c["loss"] == "bce":
        crit = nn.functional.binary_cross_entropy_with_logits
    else:
        crit = nn.functional.mse_loss

    n, b = c["n_samples"], c["batch"]
    starts = list(range(0, n, b))
    losses, lrs, stats = [], [], dict(value_clipped=0, norm_clipped=0)
    for step in range(c["steps"]):
        lo = starts[step % len(starts)]
        xb, yb = x[lo:lo + b], y[lo:lo + b]
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad(set_to_none=True)
        data_loss = crit(logits_net(xb), yb)
        loss = data_loss
        if c["l1"] > 0:
            loss = loss + c["l1"] * sum(w.abs().sum() for w in weights)
        if c["l2"] > 0:
            loss = loss + c["l2"] / 2 * sum((w * w).sum() for w in weights)
        loss.backward()
        if c["clip_value"] > 0:
            stats["value_clipped"] += sum(int((p.grad.abs() > c["clip_value"]).sum())
                                          for p in params)
            torch.nn.utils.clip_grad_value_(params, c["clip_value"])
        if c["clip_norm"] > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, c["clip_norm"])
            stats["norm_clipped"] += int(norm > c["clip_norm"])
        opt.step()
        sched.step()
        losses.append(data_loss.item())

    lines = ["# generated by tools/make_fixtures.py (torch %s, float64); do not edit"
             % torch.__version__,
             "# case %s: %d of %d gradients clipped by value, %d of %d steps by norm"
             % (c["name"], stats["value_clipped"],
                c["steps"] * sum(p.numel() for p in params),
                stats["norm_clipped"], c["steps"])]
    if f32_error is not None:
        lines.append("# float32_error: torch's own float32 run vs this float64 run")
        lines.append("float32_error %.3e" % f32_error)
    for key in ("optimizer", "lr", "momentum", "dampening", "beta1", "beta2", "eps",
                "alpha", "lr_decay", "weight_decay", "l1", "l2", "clip_value",
                "clip_norm", "schedule", "warmup", "step_size", "gamma", "min_lr",
                "total_steps", "freeze", "loss", "n_inputs", "n_targets",
                "n_samples", "batch", "steps"):
        v = c[key]
        lines.append("%s %s" % (key, fmt(v) if isinstance(v, float) else v))
    lines.append("spec " + c["spec"])

    def tensor(name, t):
        vals = t.reshape(-1).tolist() if torch.is_tensor(t) else list(t)
        lines.append("tensor %s %d %s" % (name, len(vals), " ".join(fmt(v) for v in vals)))

    tensor("x", x)
    tensor("y", y)
    tensor("loss", losses)
    tensor("lr", lrs)
    for i, (w, bias) in init.items():
        tensor("init.%d.weight" % i, w)
        tensor("init.%d.bias" % i, bias)
    for i, m in linears:
        tensor("final.%d.weight" % i, m.weight.detach())
        tensor("final.%d.bias" % i, m.bias.detach())
    final = [p.detach().to(torch.float64) for _, m in linears for p in (m.weight, m.bias)]
    return "\n".join(lines) + "\n", stats, final


def float32_error(case, seed):
    """How far torch's own float32 run of a case lands from its float64 run,
    with the error measure of the C test, max |a - b| / max(|b|, 1e-3):
    the accuracy a float32 implementation can be expected to reach."""
    _, _, ref = run_case(case, seed)
    _, _, f32 = run_case(case, seed, torch.float32)
    return max(float(((a - b).abs() / b.abs().clamp(min=1e-3)).max())
               for a, b in zip(f32, ref))


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures", "optim")
    os.makedirs(outdir, exist_ok=True)
    for k, case in enumerate(CASES):
        seed = 1000 + k
        f32 = float32_error(case, seed)
        text, stats, _ = run_case(case, seed, f32_error=f32)
        path = os.path.join(outdir, case["name"] + ".txt")
        with open(path, "w") as f:
            f.write(text)
        print("%s: value-clipped %d, norm-clipped steps %d, float32_error %.3e"
              % (path, stats["value_clipped"], stats["norm_clipped"], f32))


if __name__ == "__main__":
    main()
