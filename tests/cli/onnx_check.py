"""onnx_check.py - check an exported model with Debian's python3-onnx (used
by test_cli_export_onnx.sh; run with /usr/bin/python3).

    onnx_check.py MODEL.onnx INFO.json [--input TYPE:DIMS] [--output DIMS]
                  [--name NAME] [--ops OP,OP,...] [--has OP,OP,...]

Runs onnx.checker.check_model(full_check=True) (which also infers every
shape), then checks the fixed parts of the file: ir_version 7, opset 13 of
the default domain, producer "backprop" and its version, the metadata_props
equal to the model's metadata (INFO.json: `backprop info --json MODEL`),
the doc string naming the spec, the graph name (default "model"), the
input "input" (TYPE float or int64, DIMS like N,1,28,28) and the output
"output" (float), the initializers feeding nodes only (no graph input
among them), and optionally the exact op sequence (--ops) or ops that
must appear (--has). Inferred shapes must agree with the declared output.
Prints "ok" or one line per problem; exit status 1 on a problem.
"""
import argparse
import json
import sys

import onnx
from onnx import TensorProto, helper, shape_inference


def dims_of(vi):
    out = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(d.dim_param if d.HasField("dim_param") else str(d.dim_value))
    return ",".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("info")
    ap.add_argument("--input")
    ap.add_argument("--output")
    ap.add_argument("--name", default="model")
    ap.add_argument("--ops")
    ap.add_argument("--has")
    a = ap.parse_args()
    problems = []
    m = onnx.load(a.model)
    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:  # the checker's message, one line
        problems.append("checker: " + str(e).replace("\n", " ")[:400])
    info = json.load(open(a.info))
    want = {"ir_version": 7, "producer_name": "backprop"}
    for k, v in want.items():
        if getattr(m, k) != v:
            problems.append("%s is %r, want %r" % (k, getattr(m, k), v))
    if m.producer_version != info["metadata"].get("backprop_version", m.producer_version):
        problems.append("producer_version %r" % m.producer_version)
    ops = [(o.domain, o.version) for o in m.opset_import]
    if ops != [("", 13)]:
        problems.append("opset_import %r, want [('', 13)]" % ops)
    meta = {p.key: p.value for p in m.metadata_props}
    if meta != info["metadata"] or len(m.metadata_props) != len(info["metadata"]):
        problems.append("metadata_props differ from the model's metadata")
    if info["spec"] not in m.doc_string:
        problems.append("the doc string does not name the spec")
    g = m.graph
    if g.name != a.name:
        problems.append("graph name %r, want %r" % (g.name, a.name))
    if [i.name for i in g.input] != ["input"] or [o.name for o in g.output] != ["output"]:
        problems.append("inputs %r outputs %r" % ([i.name for i in g.input], [o.name for o in g.output]))
    else:
        it = g.input[0].type.tensor_type.elem_type
        if a.input:
            t, d = a.input.split(":")
            wt = {"float": TensorProto.FLOAT, "int64": TensorProto.INT64}[t]
            if it != wt or dims_of(g.input[0]) != d:
                problems.append("input %s [%s], want %s [%s]" % (
                    TensorProto.DataType.Name(it), dims_of(g.input[0]), t, d))
        ot = g.output[0].type.tensor_type.elem_type
        if ot != TensorProto.FLOAT or (a.output and dims_of(g.output[0]) != a.output):
            problems.append("output %s [%s], want FLOAT [%s]" % (
                TensorProto.DataType.Name(ot), dims_of(g.output[0]), a.output))
        if g.node[-1].output[0] != "output":
            problems.append("the last node does not write 'output'")
    inits = {t.name for t in g.initializer}
    for t in g.initializer:
        if t.data_type not in (TensorProto.FLOAT, TensorProto.INT64) or not t.raw_data:
            problems.append("initializer %s: type %d, raw_data %d bytes" % (t.name, t.data_type, len(t.raw_data)))
    used = {i for n in g.node for i in n.input}
    if inits - used:
        problems.append("unused initializers %s" % sorted(inits - used))
    # the inferred shape of the output agrees with the declared one
    inf = shape_inference.infer_shapes(m, strict_mode=True)
    vis = {v.name: v for v in list(inf.graph.value_info) + list(inf.graph.output)}
    last = g.node[-1].output[0]
    if last in vis and dims_of(vis[last]) != dims_of(g.output[0]):
        problems.append("inferred output [%s], declared [%s]" % (dims_of(vis[last]), dims_of(g.output[0])))
    seq = [n.op_type for n in g.node]
    if a.ops and seq != a.ops.split(","):
        problems.append("ops %s, want %s" % (",".join(seq), a.ops))
    if a.has:
        for op in a.has.split(","):
            if op not in seq:
                problems.append("no %s node (ops: %s)" % (op, ",".join(seq)))
    for n in g.node:
        if n.op_type == "GRU":
            attrs = {x.name: helper.get_attribute_value(x) for x in n.attribute}
            if attrs.get("linear_before_reset") != 1:
                problems.append("GRU without linear_before_reset=1")
    for p in problems:
        print(p)
    if not problems:
        print("ok (%d nodes: %s)" % (len(seq), ",".join(seq)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
