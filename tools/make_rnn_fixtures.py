#!/usr/bin/python3
"""make_rnn_fixtures.py - PyTorch reference runs of small recurrent networks.

Usage (from the repository root, with Debian's python3-torch 1.13):

    /usr/bin/python3 tools/make_rnn_fixtures.py [OUTDIR]

OUTDIR defaults to tests/fixtures/rnn. The output is deterministic: the same
torch writes the same files byte for byte (one thread, OpenBLAS pinned by
tools/pin_env.py as tools/make_cnn_fixtures.py does). The float32 runs
behind the float32_error lines may use other kernels on another CPU, so
those lines may differ in their last digits there. The files are
committed; the C test (tests/test_rnn_fixtures.c) needs no Python.

Each case trains the torch.nn.Sequential that tools/torch_interop.py's
build_sequential makes of a backprop spec (rnn, lstm, gru as torch.nn.RNN /
LSTM / GRU with batch_first=True and zero initial state, wrapped to return
the output sequence; last = x[:, -1]; embedding(D,V) = nn.Embedding(V, D);
dense = nn.Linear, on every step of a sequence), in float64, for `steps`
steps over consecutive mini-batches of `batch` samples (no shuffling; step
s uses batch s mod ceil(n_samples / batch); every batch is full). Per step:

  1. zero_grad; forward (an embedding gets the ids as int64);
  2. data loss, recorded as `loss` (before the update): CrossEntropyLoss on
     class indices. When the network's output is a sequence [n, T, K] (a
     dense on every step) the targets are [n, T] and the loss is
     cross_entropy(out.reshape(n*T, K), y.reshape(n*T)): the mean over every
     step of every sample (backprop's bp_net_loss_steps = T); after `last`
     the output is [n, K] and y is [n, 1];
  3. backward;
  4. clip_grad_norm_(every parameter, clip_norm): with total = the global
     L2 norm of all gradients, every gradient is multiplied by
     clip_norm / (total + 1e-6) when that is below 1. Each case's
     clip_norm is set so that some steps clip and some do not: the
     pre-clipping norms are recorded (tensor grad_norm), and the comment
     line says how many steps clipped;
  5. Adam.step() (torch.optim.Adam, foreach=False, betas 0.9 0.999, eps
     1e-8, no weight decay).

Initial weights: torch's default distributions, drawn from a seeded
generator in state_dict order: every recurrent tensor U(-k, k) with
k = 1/sqrt(H); Linear weight and bias U(-k, k) with k = 1/sqrt(in);
Embedding weight N(0, 1).
Data: x ~ N(0, 1) [n_samples, T, F]; for the embedding case x are token ids
[n_samples, T] (windows of one random token stream) and y the next token
of every step. Class targets: every class present, in a scrambled order.

File format: the one of tools/make_cnn_fixtures.py (its docstring), with
input_shape "T F" (a sequence) or "T" (token ids), no eval mode to speak
of (eval.logits is bp_forward / model(x) of the final network on all of x:
[n_samples, K] or [n_samples, T, K]), n_targets 1 (after last) or T (a
sequence output), and more lines:

    clip_effect E              how much clipping matters: the same run
                               without clipping ends, on its worst tensor,
                               E of that tensor's norm away from this one
                               (a C build that skipped or misapplied the
                               clipping would miss by about that much)
    tensor grad_norm STEPS ..  the global gradient norm of each step,
                               before clipping
"""

import os
import sys

# Before torch loads: the pinned numeric environment (tools/pin_env.py).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pin_env  # noqa: E402

pin_env.pin()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from make_fixtures import DEFAULTS, fmt, make_optimizer  # noqa: E402
from torch_interop import RECURRENT, build_sequential  # noqa: E402

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)

RNN_DEFAULTS = dict(DEFAULTS)
RNN_DEFAULTS.update(optimizer="adam", lr=0.02, n_samples=12, batch=4, steps=20,
                    loss="cross-entropy")

# clip_norm per case: below the larger gradient norms of the run, above
# the smaller ones (the generator prints how many steps clipped).
CASES = [
    dict(name="rnn_last", spec="rnn(6) last dense(3)", input_shape=(6, 4), clip_norm=0.95),
    dict(name="rnn_seq", spec="rnn(5) dense(4)", input_shape=(5, 3), clip_norm=0.25),
    dict(name="lstm_last", spec="lstm(6) last dense(3)", input_shape=(6, 4), clip_norm=0.38),
    dict(name="gru_seq", spec="gru(5) dense(4)", input_shape=(7, 3), clip_norm=0.17),
    dict(name="lstm_gru_last", spec="lstm(6) gru(5) last dense(3)", input_shape=(6, 4),
         clip_norm=0.5),
    dict(name="embedding_lstm_seq", spec="embedding(5,11) lstm(8) dense(11)",
         input_shape=(8,), clip_norm=0.2),
]


def init_weights(model, gen):
    """torch's default distributions, drawn from `gen`."""
    with torch.no_grad():
        for m in model:
            if isinstance(m, tuple(RECURRENT.values())):
                k = m.hidden_size ** -0.5
                for p in m.parameters():
                    p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * k)
            elif isinstance(m, nn.Linear):
                k = m.in_features ** -0.5
                m.weight.copy_((torch.rand(m.weight.shape, generator=gen) * 2 - 1) * k)
                m.bias.copy_((torch.rand(m.bias.shape, generator=gen) * 2 - 1) * k)
            elif isinstance(m, nn.Embedding):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))


def classes(count, n_out, gen):
    """`count` class indices, every class present, scrambled."""
    y = torch.arange(count) % n_out
    return y[torch.randperm(count, generator=gen)]


def make_data(c, model, gen):
    """x [n, T, F] (or ids [n, T]) and y [n, 1] or [n, T] as float64."""
    n, shape = c["n_samples"], tuple(c["input_shape"])
    T = shape[0]
    first = model[0]
    if isinstance(first, nn.Embedding):
        vocab = first.num_embeddings
        stream = classes(n * T + 1, vocab, gen)
        x = torch.stack([stream[i * T:(i + 1) * T] for i in range(n)])
        y = torch.stack([stream[i * T + 1:(i + 1) * T + 1] for i in range(n)])
        return x.to(torch.float64), y.to(torch.float64)
    x = torch.randn((n,) + shape, generator=gen)
    with torch.no_grad():
        out = model(x)
    n_out = out.shape[-1]
    if out.dim() == 3:
        y = classes(n * T, n_out, gen).reshape(n, T)
    else:
        y = classes(n, n_out, gen).reshape(n, 1)
    return x, y.to(torch.float64)


def run_case(case, seed, dtype=torch.float64, clip=True):
    """Train one case. Returns (config, tensors: list of (name, tensor),
    final state tensors as float64, eval logits as float64). With dtype
    float32 the float64 weights and data are rounded to float32 first."""
    c = dict(RNN_DEFAULTS)
    c.update(case)
    if not clip:
        c["clip_norm"] = 0.0
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    shape = list(c["input_shape"])
    c["n_inputs"] = 1
    for d in shape:
        c["n_inputs"] *= d
    model = build_sequential(c["spec"], c["n_inputs"], shape)
    init_weights(model, gen)
    x, y = make_data(c, model, gen)
    c["n_targets"] = y.shape[1]
    ids = isinstance(model[0], nn.Embedding)
    if dtype != torch.float64:
        model.to(dtype)
        x, y = x.to(dtype), y.to(dtype)
    init = [(k, v.detach().clone()) for k, v in model.state_dict().items()]
    params = list(model.parameters())
    opt = make_optimizer(c, params)

    def forward(xb):
        return model(xb.long() if ids else xb)

    def loss_of(out, yb):
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                           yb.reshape(-1).long())

    b = c["batch"]
    n = c["n_samples"]
    assert n % b == 0
    starts = list(range(0, n, b))
    losses, norms = [], []
    for step in range(c["steps"]):
        model.train()
        lo = starts[step % len(starts)]
        xb, yb = x[lo:lo + b], y[lo:lo + b]
        opt.zero_grad(set_to_none=True)
        loss = loss_of(forward(xb), yb)
        loss.backward()
        total = torch.norm(torch.stack([p.grad.detach().norm() for p in params]))
        norms.append(total.item())
        if c["clip_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, c["clip_norm"])
        opt.step()
        losses.append(loss.item())

    model.eval()
    with torch.no_grad():
        logits = forward(x)
    final = [(k, v.detach().clone()) for k, v in model.state_dict().items()]
    tensors = [("x", x), ("y", y), ("loss", torch.tensor(losses)),
               ("lr", torch.full((c["steps"],), c["lr"])),
               ("grad_norm", torch.tensor(norms))]
    tensors += [("init." + k, v) for k, v in init]
    tensors += [("final." + k, v) for k, v in final]
    tensors.append(("eval.logits", logits))
    floats = [v.to(torch.float64) for _, v in final]
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
    _, _, unclipped, _ = run_case(case, seed, clip=False)
    err, err_eval = rel_error(f32, ref), rel_error([f32_logits], [ref_logits])
    nerr, nerr_eval = norm_error(f32, ref), norm_error([f32_logits], [ref_logits])
    effect = norm_error(unclipped, ref)
    norms = dict(tensors)["grad_norm"].tolist()
    clipped = sum(1 for v in norms if v > c["clip_norm"])
    lines = ["# generated by tools/make_rnn_fixtures.py (torch %s, float64); do not edit"
             % torch.__version__,
             "# case %s; state_dict shapes: %s"
             % (c["name"], ", ".join("%s %s" % (k[5:], list(v.shape))
                                     for k, v in tensors if k.startswith("init."))),
             "# clip_grad_norm_(%g) clipped %d of %d steps (gradient norms %.3g .. %.3g)"
             % (c["clip_norm"], clipped, c["steps"], min(norms), max(norms)),
             "# float32_error: torch's own float32 run vs this float64 run",
             "float32_error %.3e" % err,
             "float32_error_eval %.3e" % err_eval,
             "float32_error_norm %.3e" % nerr,
             "float32_error_eval_norm %.3e" % nerr_eval,
             "clip_effect %.3e" % effect]
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
    summary = dict(losses=dict(tensors)["loss"].tolist(), clipped=clipped, steps=c["steps"],
                   effect=effect, err=err, nerr=nerr)
    return "\n".join(lines) + "\n", summary


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures", "rnn")
    os.makedirs(outdir, exist_ok=True)
    for k, case in enumerate(CASES):
        text, s = fixture_text(case, 3000 + k)
        path = os.path.join(outdir, case["name"] + ".txt")
        with open(path, "w") as f:
            f.write(text)
        print("%s: loss %.4f -> %.4f, clipped %d of %d steps (without clipping: %.2e off), "
              "float32_error %.3e, norm %.3e"
              % (path, s["losses"][0], s["losses"][-1], s["clipped"], s["steps"], s["effect"],
                 s["err"], s["nerr"]))
        if not 0 < s["clipped"] < s["steps"]:
            print("  warning: clipping is %s" % ("never active" if not s["clipped"]
                                                  else "active on every step"))


if __name__ == "__main__":
    main()
