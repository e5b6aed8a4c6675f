#!/usr/bin/python3
"""make_cnn_fixtures.py - PyTorch reference runs of small convolutional networks.

Usage (from the repository root, with Debian's python3-torch 1.13):

    /usr/bin/python3 tools/make_cnn_fixtures.py [OUTDIR]

OUTDIR defaults to tests/fixtures/cnn. The output is deterministic: the same
torch writes the same files byte for byte (one thread; the script re-executes
itself with OpenBLAS pinned to one thread and to its Haswell kernel: on an
AVX-512 machine the SkylakeX or Sandybridge kernels give other last bits, so
without the pin the files would depend on the CPU and on the shell's
OPENBLAS_CORETYPE). The float32 runs behind float32_error may use oneDNN,
whose kernels follow the CPU, so those two lines may differ in their last
digits on another CPU. The files are committed; the C test needs no Python.

Each case trains a torch.nn.Sequential built from a backprop spec (the
words conv, batchnorm, relu, tanh, maxpool, avgpool, global_avgpool,
flatten, dense, with the modules of shared/DESIGN.md's layer table), in
float64, for `steps` steps on inputs of shape input_shape ([C, H, W]) cut
into consecutive mini-batches of `batch` (no shuffling; batch b of step s
starts at sample (s mod ceil(n_samples / batch)) * batch; every batch is
full in these cases). Per step, exactly:

  1. the model is in train() mode, except that a frozen batchnorm is in
     eval() mode; zero_grad;
  2. forward: every batchnorm in train mode normalizes with the batch's
     mean and biased variance (over N*H*W per channel; N for BatchNorm1d),
     and, in the same forward, updates running_mean = 0.9 running_mean +
     0.1 mean, running_var = 0.9 running_var + 0.1 var * M / (M - 1)
     (M = N*H*W, the unbiased variance) and num_batches_tracked += 1;
     a frozen (eval) batchnorm uses running_mean / running_var and changes
     nothing; eps 1e-5;
  3. data loss: CrossEntropyLoss (mean over the batch) on class indices;
     recorded as `loss` (before the update);
  4. backward; gradients for every trainable parameter (conv and dense
     weight and bias, batchnorm weight and bias);
  5. clip_grad_value_ if clip_value > 0, then clip_grad_norm_ if
     clip_norm > 0, over all trainable parameters (no case uses them: 0);
  6. optimizer.step() (torch.optim, foreach=False, one parameter group with
     every trainable parameter, so weight_decay applies to biases and to
     batchnorm's weight and bias too: coupled (g += wd p) for SGD and Adam,
     decoupled (p *= 1 - lr wd) for AdamW);
  7. scheduler.step() (a LambdaLR of the bp_schedule formula, as
     tools/make_fixtures.py; these cases are constant).

`freeze` = K: the first K parametric layers (conv, batchnorm, dense) get
requires_grad False and stay out of the optimizer and the clipping; a frozen
batchnorm is in eval() mode (normalizes with, and does not update, its
running statistics). l1 and l2 penalties are not used (always 0).

Initial weights: drawn from a seeded generator with torch's default
distributions (conv and dense weight and bias uniform in +-1/sqrt(fan_in),
fan_in = in_ch*K*K or in); batchnorm weight 1 + 0.1 N(0,1), bias 0.1 N(0,1),
running_mean 0.1 N(0,1), running_var 0.5 + U[0,1), num_batches_tracked 5.
Networks: NET (conv, batchnorm, relu, ...) for the SGD cases; the Adam and
AdamW cases put the relu before the batchnorm (NET_ADAM, see the comment
there); cnn_gap has a BatchNorm1d after a dense.
Data: x ~ N(0,1) [n_samples, C, H, W]; y = class indices, every class
present, in a fixed scrambled order.

File format (one item per line, numbers printed with %.17g; the format of
tools/make_fixtures.py with more keys):

    # comment                  (the comments list each state_dict key's shape)
    float32_error E            how far torch's own float32 run of the case
                               (weights and data rounded to float32) lands
                               from this float64 one, over every final
                               floating-point state_dict tensor (parameters
                               and running statistics), by the measure
                               max |a - b| / max(|b|, 1e-3)
    float32_error_eval E       the same for eval.logits
    float32_error_norm E       the same runs by the measure of whole tensors,
                               the worst ||a - b|| / ||b|| over those tensors
    float32_error_eval_norm E  the same for eval.logits (the float C test
                               allows 4 times this on its logits: cnn_gap's
                               BatchNorm1d on 8 samples of 5 features makes
                               even torch's float32 run miss 1e-5 by little)
    KEY VALUE                  config: optimizer lr momentum dampening beta1
                               beta2 eps alpha lr_decay weight_decay l1 l2
                               clip_value clip_norm schedule warmup step_size
                               gamma min_lr total_steps freeze loss n_inputs
                               (= C*H*W) n_targets (1) n_samples batch steps
    input_shape C H W          the per-sample input shape
    spec SPEC...               the architecture spec (rest of the line)
    tensor NAME COUNT V1 V2 .. x [n_samples, C, H, W] row-major, y
                               [n_samples, 1] (class index as a number),
                               loss [steps], lr [steps] (the rate each step
                               used), then init.KEY and final.KEY for every
                               state_dict key in state_dict order (KEY e.g.
                               0.weight, 1.running_var,
                               1.num_batches_tracked: one integer value),
                               then eval.logits [n_samples, classes]: the
                               final network in eval() mode (every batchnorm
                               on its running statistics) on all of x.
"""

import os
import sys

# Before torch loads: the pinned numeric environment (tools/pin_env.py).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pin_env  # noqa: E402

pin_env.pin()

import re  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import DEFAULTS, fmt, make_optimizer, schedule_factor  # noqa: E402

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)

NET = "conv(4,3,1,1) batchnorm relu maxpool(2) conv(6,3) avgpool(2) flatten dense(3)"
# For Adam and AdamW the batchnorm comes after the relu: a conv bias right
# before a training-mode batchnorm has a gradient of exactly zero (the
# batchnorm subtracts the batch mean), so its computed gradient is rounding
# noise, which Adam divides by its own RMS into steps of size lr: 0.bias and
# 1.running_mean would then be noise (torch float32 vs float64: 2.3 relative).
NET_ADAM = "conv(4,3,1,1) relu batchnorm maxpool(2) conv(6,3) avgpool(2) flatten dense(3)"

CNN_DEFAULTS = dict(DEFAULTS)
CNN_DEFAULTS.update(input_shape=(2, 10, 10), n_samples=24, batch=8, steps=20,
                    loss="cross-entropy")

CASES = [
    dict(name="cnn_momentum", optimizer="momentum", lr=0.05, momentum=0.9, spec=NET),
    dict(name="cnn_adam_wd", optimizer="adam", lr=0.01, weight_decay=1e-3, spec=NET_ADAM),
    dict(name="cnn_adamw", optimizer="adamw", lr=0.01, weight_decay=0.01, spec=NET_ADAM),
    dict(name="cnn_frozen", optimizer="momentum", lr=0.05, momentum=0.9, freeze=2, spec=NET),
    dict(name="cnn_gap", optimizer="momentum", lr=0.05, momentum=0.9,
         spec="conv(3,3,2,1) relu global_avgpool flatten dense(5) batchnorm tanh dense(3)"),
]

WORD = re.compile(r"^([a-z_]+)(?:\(([^)]*)\))?$")


def build(spec, shape):
    """nn.Sequential of a spec (the words the cases use) on per-sample
    input `shape` ([C, H, W] or [F]); returns it and the output width."""
    layers, shape = [], tuple(shape)
    for word in spec.split():
        m = WORD.match(word)
        if not m:
            raise ValueError(word)
        name = m.group(1)
        args = [int(a) for a in m.group(2).split(",")] if m.group(2) else []
        if name == "conv":
            c_out, k = args[0], args[1]
            stride = args[2] if len(args) > 2 else 1
            pad = args[3] if len(args) > 3 else 0
            layers.append(nn.Conv2d(shape[0], c_out, k, stride=stride, padding=pad))
            h = (shape[1] + 2 * pad - k) // stride + 1
            w = (shape[2] + 2 * pad - k) // stride + 1
            shape = (c_out, h, w)
        elif name in ("maxpool", "avgpool"):
            k = args[0]
            stride = args[1] if len(args) > 1 else k
            mod = nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d
            layers.append(mod(k, stride=stride))
            shape = (shape[0], (shape[1] - k) // stride + 1, (shape[2] - k) // stride + 1)
        elif name == "global_avgpool":
            layers.append(nn.AdaptiveAvgPool2d(1))
            shape = (shape[0], 1, 1)
        elif name == "flatten":
            layers.append(nn.Flatten())
            n = 1
            for d in shape:
                n *= d
            shape = (n,)
        elif name == "batchnorm":
            mod = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            layers.append(mod(shape[0], eps=1e-5, momentum=0.1))
        elif name == "dense":
            if len(shape) != 1:
                raise ValueError("dense on %s: spell the flatten" % (shape,))
            layers.append(nn.Linear(shape[0], args[0]))
            shape = (args[0],)
        elif name == "relu":
            layers.append(nn.ReLU())
        elif name == "tanh":
            layers.append(nn.Tanh())
        else:
            raise ValueError(word)
        if min(shape) < 1:
            raise ValueError("%s: shape %s" % (word, shape))
    return nn.Sequential(*layers), shape[0]


def parametric(m):
    return isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d))


def is_bn(m):
    return isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))


def init_weights(model, gen):
    """torch's default distributions, drawn from `gen`; batchnorm
    parameters and statistics away from their defaults."""
    with torch.no_grad():
        for m in model:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                bound = fan_in ** -0.5
                m.weight.copy_((torch.rand(m.weight.shape, generator=gen) * 2 - 1) * bound)
                m.bias.copy_((torch.rand(m.bias.shape, generator=gen) * 2 - 1) * bound)
            elif is_bn(m):
                c = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                m.num_batches_tracked.fill_(5)


def run_case(case, seed, dtype=torch.float64):
    """Train one case. Returns (config, tensors: list of (name, tensor),
    final floating-point state tensors, eval logits). With dtype float32
    the float64 weights and data are rounded to float32 first."""
    c = dict(CNN_DEFAULTS)
    c.update(case)
    if c["l1"] or c["l2"]:
        raise ValueError("%s: l1/l2 penalties are not defined for these fixtures" % c["name"])
    if c["loss"] != "cross-entropy":
        raise ValueError(c["loss"])
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model, n_out = build(c["spec"], c["input_shape"])
    init_weights(model, gen)
    n = c["n_samples"]
    c["n_inputs"] = 1
    for d in c["input_shape"]:
        c["n_inputs"] *= d
    x = torch.randn((n,) + tuple(c["input_shape"]), generator=gen)
    y = torch.arange(n) % n_out
    y = y[torch.randperm(n, generator=gen)].to(torch.float64).reshape(n, 1)
    c["n_targets"] = 1
    if dtype != torch.float64:
        model.to(dtype)
        x, y = x.to(dtype), y.to(dtype)
    init = [(k, v.detach().clone()) for k, v in model.state_dict().items()]

    frozen = [m for m in model if parametric(m)][:c["freeze"]]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(c, params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: schedule_factor(c, t))

    b = c["batch"]
    starts = list(range(0, n, b))
    losses, lrs = [], []
    for step in range(c["steps"]):
        model.train()
        for m in frozen:
            if is_bn(m):
                m.eval()
        lo = starts[step % len(starts)]
        xb, yb = x[lo:lo + b], y[lo:lo + b]
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(xb), yb[:, 0].long())
        loss.backward()
        if c["clip_value"] > 0:
            torch.nn.utils.clip_grad_value_(params, c["clip_value"])
        if c["clip_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, c["clip_norm"])
        opt.step()
        sched.step()
        losses.append(loss.item())

    model.eval()
    with torch.no_grad():
        logits = model(x)
    final = [(k, v.detach().clone()) for k, v in model.state_dict().items()]
    tensors = [("x", x), ("y", y), ("loss", torch.tensor(losses)), ("lr", torch.tensor(lrs))]
    tensors += [("init." + k, v) for k, v in init]
    tensors += [("final." + k, v) for k, v in final]
    tensors.append(("eval.logits", logits))
    floats = [v.to(torch.float64) for _, v in final if v.is_floating_point()]
    return c, tensors, floats, logits.to(torch.float64)


def rel_error(a_list, b_list):
    return max(float(((a - b).abs() / b.abs().clamp(min=1e-3)).max())
               for a, b in zip(a_list, b_list))


def norm_error(a_list, b_list):
    return max(float((a - b).norm() / b.norm().clamp(min=1e-300))
               for a, b in zip(a_list, b_list))


def fixture_text(case, seed):
    c, tensors, ref, ref_logits = run_case(case, seed)
    _, _, f32, f32_logits = run_case(case, seed, torch.float32)
    err, err_eval = rel_error(f32, ref), rel_error([f32_logits], [ref_logits])
    nerr, nerr_eval = norm_error(f32, ref), norm_error([f32_logits], [ref_logits])
    lines = ["# generated by tools/make_cnn_fixtures.py (torch %s, float64); do not edit"
             % torch.__version__,
             "# case %s; state_dict shapes: %s"
             % (c["name"], ", ".join("%s %s" % (k[5:], list(v.shape))
                                     for k, v in tensors if k.startswith("init."))),
             "# float32_error: torch's own float32 run vs this float64 run",
             "float32_error %.3e" % err,
             "float32_error_eval %.3e" % err_eval,
             "float32_error_norm %.3e" % nerr,
             "float32_error_eval_norm %.3e" % nerr_eval]
    for key in ("optimizer", "lr", "momentum", "dampening", "beta1", "beta2", "eps",
                "alpha", "lr_decay", "weight_decay", "l1", "l2", "clip_value",
                "clip_norm", "schedule", "warmup", "step_size", "gamma", "min_lr",
                "total_steps", "freeze", "loss", "n_inputs", "n_targets",
                "n_samples", "batch", "steps"):
        v = c[key]
        lines.append("%s %s" % (key, fmt(v) if isinstance(v, float) else v))
    lines.append("input_shape " + " ".join(str(d) for d in c["input_shape"]))
    lines.append("spec " + c["spec"])
    for name, t in tensors:
        vals = t.reshape(-1).tolist()
        lines.append("tensor %s %d %s" % (name, len(vals), " ".join(fmt(v) for v in vals)))
    return "\n".join(lines) + "\n", err, err_eval, dict(tensors)["loss"].tolist()


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures", "cnn")
    os.makedirs(outdir, exist_ok=True)
    for k, case in enumerate(CASES):
        text, err, err_eval, losses = fixture_text(case, 2000 + k)
        path = os.path.join(outdir, case["name"] + ".txt")
        with open(path, "w") as f:
            f.write(text)
        print("%s: loss %.4f -> %.4f, float32_error %.3e, eval %.3e"
              % (path, losses[0], losses[-1], err, err_eval))


if __name__ == "__main__":
    main()
