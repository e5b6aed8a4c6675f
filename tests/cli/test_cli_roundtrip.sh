#!/usr/bin/env bash
# test_cli_roundtrip.sh - train -> eval / predict / info round trips:
# a separable two-class set is predicted exactly, a linear regression is
# recovered, eval --json has the fixed keys, predict keeps input order and
# names its columns, info describes the model.
# Usage: bash test_cli_roundtrip.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# py EXPR: evaluate a Python expression over d = the JSON object in $T/out; exit 0 when true.
py() { /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$T/out" "$1"; }

gen_two() { # ROWS: two separated classes "no"/"yes", alternating
    awk -v n="$1" 'BEGIN { s = 4242; print "x1,x2,label";
        for (i = 0; i < n; i++) { s = (s * 16807) % 2147483647; u = s / 2147483647 - 0.5;
            s = (s * 16807) % 2147483647; v = s / 2147483647 - 0.5; c = i % 2 ? 2 : -2;
            printf "%.4f,%.4f,%s\n", c + u, c + v, i % 2 ? "yes" : "no" } }'
}
gen_reg() { # ROWS: y = 2 x1 - 3 x2 + 0.5 and z = x1 + x2
    awk -v n="$1" 'BEGIN { s = 99; print "x1,x2,y,z";
        for (i = 0; i < n; i++) { s = (s * 16807) % 2147483647; u = 2 * s / 2147483647 - 1;
            s = (s * 16807) % 2147483647; v = 2 * s / 2147483647 - 1;
            printf "%.4f,%.4f,%.4f,%.4f\n", u, v, 2 * u - 3 * v + 0.5, u + v } }'
}
gen_two 40 >two.csv
cut -d, -f1,2 two.csv >two_features.csv
awk -F, 'BEGIN { OFS = "," } { print $1, $2, $3 }' <(gen_reg 60) >reg.csv
gen_reg 60 >reg2.csv

# ---- classification round trip ----
train_ok "train two-class" two.csv --arch "dense(8) relu" --epochs 40 --lr 0.01 -o two.safetensors --quiet
run predict two.safetensors two.csv
check "predict: header 'class' and one row per input row" eval '[ $rc -eq 0 ] && [ "$(head -1 out)" = class ] && [ $(wc -l <out) -eq 41 ]'
check "predictions match the labels, in input order" eval '[ "$(tail -n +2 out)" = "$(cut -d, -f3 two.csv | tail -n +2)" ]'
cp out pred_full.csv
run predict two.safetensors two_features.csv
check "predict on a file without the target column" eval '[ $rc -eq 0 ] && cmp -s out pred_full.csv'
run predict two.safetensors two.csv -o pred.csv
check "predict -o FILE writes the same CSV, stdout empty" eval '[ $rc -eq 0 ] && [ ! -s out ] && cmp -s pred.csv pred_full.csv'
run predict two.safetensors two.csv --proba
check "--proba: columns named by class" eval '[ "$(head -1 out)" = "class,no,yes" ]'
check "--proba: probabilities in [0,1] summing to 1, argmax = class" eval 'awk -F, "NR > 1 { s = \$2 + \$3; if (s < 0.999 || s > 1.001 || \$2 < 0 || \$3 < 0) bad = 1;
    if ((\$2 > \$3 ? \"no\" : \"yes\") != \$1) bad = 1 } END { exit bad }" out'
run eval two.safetensors two.csv --json
check "eval --json: one JSON object with samples, loss, accuracy" eval '[ $rc -eq 0 ] && [ $(wc -l <out) -eq 1 ] && py "d[\"samples\"] == 40 and d[\"accuracy\"] == 1 and 0 <= d[\"loss\"] < 0.5"'
check "eval --json: per-class and confusion details" py 'd["classes"] == ["no", "yes"] and d["confusion"] == [[20, 0], [0, 20]] and len(d["per_class"]) == 2'
run eval two.safetensors two.csv
check "eval report: samples, loss, accuracy" eval 'grep -q "^samples *40" out && grep -q "^loss " out && grep -q "^accuracy *1.0000" out'
check "eval report: precision/recall/F1 table with class names" eval 'grep -q "precision" out && grep -Eq "^no +1.0000 +1.0000 +1.0000 +20" out'
check "eval report: confusion matrix" eval 'grep -q "confusion matrix" out && grep -Eq "^yes +0 +20" out'
grep -e ',yes$' two.csv | sed '1i x1,x2,label' >yes_only.csv
run eval two.safetensors yes_only.csv --json
check "eval on a subset keeps the model's class indices" eval '[ $rc -eq 0 ] && py "d[\"confusion\"] == [[0, 0], [0, 20]] and d[\"accuracy\"] == 1"'

# bce: one sigmoid output
train_ok "train two-class with bce" two.csv --loss bce --arch "dense(8) tanh" --epochs 40 --lr 0.01 -o bce.safetensors --quiet
run predict bce.safetensors two.csv --proba
check "bce predictions match the labels" eval '[ "$(tail -n +2 out | cut -d, -f1)" = "$(cut -d, -f3 two.csv | tail -n +2)" ]'
check "bce --proba: both class columns" eval '[ "$(head -1 out)" = "class,no,yes" ]'
run eval bce.safetensors two.csv --json
check "bce eval --json accuracy 1" eval '[ $rc -eq 0 ] && py "d[\"accuracy\"] == 1 and d[\"samples\"] == 40"'

# logistic regression (no hidden layer)
train_ok "logistic regression (--arch \"\")" two.csv --arch "" --epochs 30 --lr 0.05 -o logit.safetensors --quiet
run eval logit.safetensors two.csv --json
check "logistic regression separates the classes" eval '[ $rc -eq 0 ] && py "d[\"accuracy\"] == 1"'

# ---- regression round trip ----
train_ok "linear regression, full batch" reg.csv --arch "" --optimizer sgd --lr 0.1 --batch 0 --epochs 400 -o reg.safetensors --quiet
run eval reg.safetensors reg.csv --json
check "eval --json (regression): samples, loss, mse, mae, r2" eval '[ $rc -eq 0 ] && py "d[\"samples\"] == 60 and all(k in d for k in (\"loss\", \"mse\", \"mae\", \"r2\"))"'
check "linear regression recovered (r2 > 0.999, mse < 1e-3)" py 'd["r2"] > 0.999 and d["mse"] < 1e-3 and abs(d["loss"] - d["mse"]) < 1e-6'
run predict reg.safetensors reg.csv
check "regression predict: column named by the target" eval '[ "$(head -1 out)" = y ] && [ $(wc -l <out) -eq 61 ]'
check "regression predictions close to the targets" eval 'paste -d, out <(cut -d, -f3 reg.csv) | awk -F, "NR > 1 { d = \$1 - \$2; if (d < 0) d = -d; if (d > 0.05) bad = 1 } END { exit bad }"'
run eval reg.safetensors reg.csv
check "regression report: mse, mae, r2" eval 'grep -q "^mse " out && grep -q "^mae " out && grep -q "^r2 " out'
run predict reg.safetensors reg.csv --proba
check "--proba on a regression model is a usage error" eval '[ $rc -eq 2 ] && grep -q "^backprop: .*--proba" err'
train_ok "two regression targets (--target y,z)" reg2.csv --target y,z --arch "dense(16) tanh" --epochs 200 --lr 0.01 -o reg2.safetensors --quiet
run predict reg2.safetensors reg2.csv
check "two targets: columns y,z" eval '[ $rc -eq 0 ] && [ "$(head -1 out)" = "y,z" ] && [ $(wc -l <out) -eq 61 ]'
run eval reg2.safetensors reg2.csv --json
check "two targets: eval per target and r2 > 0.9" eval '[ $rc -eq 0 ] && py "len(d[\"per_target\"]) == 2 and d[\"r2\"] > 0.9"'

# ---- info ----
run info two.safetensors
check "info: spec, inputs, outputs, parameters" eval 'grep -q "^spec *dense(8) relu dense(2)$" out && grep -q "^inputs *2$" out && grep -q "^outputs *2$" out && grep -q "^parameters *42$" out'
check "info: task, classes, normalization" eval 'grep -q "^task *classify (cross-entropy), 2 classes: no, yes" out && grep -q "^normalize *standard" out'
check "info: layer table with tensor shapes" eval 'grep -q "0.weight \[8,2\], 0.bias \[8\]" out && grep -q "2.weight \[2,8\], 2.bias \[2\]" out'
check "info: training metadata" eval 'grep -Eq "^ +optimizer +adam" out && grep -Eq "^ +epochs +40" out && grep -Eq "^ +format +backprop/1" out'
run info two.safetensors --json
check "info --json parses" eval '[ $rc -eq 0 ] && py "d[\"spec\"] == \"dense(8) relu dense(2)\" and len(d[\"layers\"]) == 3 and d[\"metadata\"][\"task\"] == \"classify\""'

# ---- iris (the scikit-learn CSV, if installed) ----
IRIS=/usr/lib/python3/dist-packages/sklearn/datasets/data/iris.csv
if [ -f "$IRIS" ]; then
    train_ok "iris" "$IRIS" --arch "dense(16) relu" --epochs 60 --lr 0.01 --val-split 0.2 -o iris.safetensors --quiet
    run eval iris.safetensors "$IRIS" --json
    check "iris accuracy >= 0.9" eval '[ $rc -eq 0 ] && py "d[\"samples\"] == 150 and d[\"accuracy\"] >= 0.9"'
fi

finish
