#!/usr/bin/env bash
# test_cli_semantics.sh - what the options mean, beyond being accepted:
# --val and --init-from match CSV columns by name (as eval and predict do),
# regression targets are standardized and reported in their own units,
# options that do nothing say so, suspicious class counts warn, and eval on
# a CSV without its target column is a data error (exit 1).
# Usage: bash test_cli_semantics.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# field NAME FILE: the value after "NAME " on an eval line ("r2        0.95").
field() { awk -v k="$1" '$1 == k { print $2; exit }' "$2"; }
# ge A B: A >= B (numbers).
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
# rel_close A B TOL: |A - B| <= TOL * |B|.
rel_close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; s = b < 0 ? -b : b; exit !(d <= t * s + 1e-12) }'; }
# notes: the "backprop: note:" lines of the last run's stderr.
has_note() { grep -q "^backprop: note: .*$1" "$T/err"; }
no_note() { ! grep -q "^backprop: note:" "$T/err"; }

# ---- data (generated with awk, so that no other package is needed) ----
# Three classes decided by four features of different scales; a column
# swap changes what the network sees.
awk 'BEGIN { srand(11); print "sl,sw,pl,pw,species";
    for (i = 0; i < 240; i++) { a = rand() * 4 + 4; b = rand() * 2 + 2; c = rand() * 6 + 1; d = rand() * 2.5;
        s = c + 2 * d - a / 2; k = s < 2.5 ? "setosa" : s < 5 ? "versicolor" : "virginica";
        printf "%.2f,%.2f,%.2f,%.2f,%s\n", a, b, c, d, k } }' >all.csv
head -n 181 all.csv >tr.csv
{ head -n 1 all.csv; tail -n 60 all.csv; } >va.csv
# The same rows with the columns sl and pl swapped (names travel with them).
swap() { awk -F, -v OFS=, '{ t = $1; $1 = $3; $3 = t; print }' "$1"; }
swap tr.csv >tr_sw.csv
swap va.csv >va_sw.csv
awk -F, -v OFS=, '{ print $1, $2, $3, $5 }' va.csv >va_missing.csv
awk -F, -v OFS=, '{ print $1, $2, $3, $4, (NR == 1 ? "extra" : 0), $5 }' va.csv >va_extra.csv

# ---- --val matches the training file's columns by name ----
train_ok "--val in the training column order" tr.csv --val va.csv --epochs 40 --threads 1 -o v1.safetensors --quiet
v1=$(grep -o 'validation loss [0-9.]* accuracy [0-9.]*' "$T/out")
train_ok "--val with two columns swapped" tr.csv --val va_sw.csv --epochs 40 --threads 1 -o v2.safetensors --quiet
v2=$(grep -o 'validation loss [0-9.]* accuracy [0-9.]*' "$T/out")
check "a swapped --val file reports the same validation loss and accuracy ('$v1' vs '$v2')" \
    eval '[ -n "$v1" ] && [ "$v1" = "$v2" ]'
run eval v1.safetensors va_sw.csv
check "eval on the swapped file agrees with --val" eval '[ "$(field accuracy "$T/out")" = "${v1##* }" ]'
# --target by index: the validation file's target is found by its name.
awk -F, -v OFS=, '{ print $5, $1, $2, $3, $4 }' va.csv >va_tfirst.csv
train_ok "--target 4 and a --val file with the target first" tr.csv --target 4 --val va_tfirst.csv --epochs 40 --threads 1 -o v3.safetensors --quiet
v3=$(grep -o 'validation loss [0-9.]* accuracy [0-9.]*' "$T/out")
check "... reports the same validation numbers ('$v3')" eval '[ "$v1" = "$v3" ]'
run train tr.csv --val va_missing.csv -o m.safetensors --quiet
check "--val without a training column: exit 1 naming it" \
    eval '[ "$rc" -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "missing feature column \"pw\"" "$T/err" && [ ! -e m.safetensors ]'
run train tr.csv --val va_extra.csv -o m.safetensors --quiet
check "--val with an extra column: exit 1 naming it" \
    eval '[ "$rc" -eq 1 ] && grep -q "column \"extra\" is neither" "$T/err" && [ ! -e m.safetensors ]'

# ---- --init-from matches the base model's columns by name ----
train_ok "base model" tr.csv --epochs 20 --threads 1 -o base.safetensors --quiet
train_ok "fine-tune on the original order" tr.csv --init-from base.safetensors --no-shuffle --seed 5 --epochs 5 --threads 1 -o ft1.safetensors --quiet
train_ok "fine-tune on the swapped order" tr_sw.csv --init-from base.safetensors --no-shuffle --seed 5 --epochs 5 --threads 1 -o ft2.safetensors --quiet
"$BP" predict ft1.safetensors va.csv --proba >p1.csv 2>/dev/null
"$BP" predict ft2.safetensors va.csv --proba >p2.csv 2>/dev/null
check "fine-tuning on reordered columns gives the same model (same predictions)" \
    eval '[ -s p1.csv ] && cmp -s p1.csv p2.csv'
check "the fine-tuned model stores the base model's feature order" \
    eval '[ "$(meta ft2.safetensors features)" = "$(meta base.safetensors features)" ]'
run train va_missing.csv --init-from base.safetensors -o m.safetensors --quiet
check "--init-from on a file without a model column: exit 1 naming it" \
    eval '[ "$rc" -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "missing feature column \"pw\"" "$T/err" && [ ! -e m.safetensors ]'

# ---- regression targets standardized by default ----
# y = 1000 x1 + 300 x2 + 5000 (+ a little noise): targets of large scale.
awk 'BEGIN { srand(7); print "x1,x2,y";
    for (i = 0; i < 660; i++) { a = rand(); b = rand(); printf "%.6f,%.6f,%.4f\n", a, b, 1000 * a + 300 * b + 5000 + 5 * (rand() - 0.5) } }' >big.csv
head -n 601 big.csv >big_tr.csv
{ head -n 1 big.csv; tail -n 60 big.csv; } >big_va.csv
train_ok "regression with the defaults" big_tr.csv --val big_va.csv --threads 1 -o reg.safetensors
check "the training log says the epoch losses are in scaled units" grep -q "targets scaled (standard" "$T/err"
saved_val=$(sed -n 's/.*validation loss \([0-9.]*\).*/\1/p' "$T/out")
check "the final losses say they are in the targets' units" grep -q "(mse in the targets' units)" "$T/out"
check "target scaling stored in the model" eval '[ "$(meta reg.safetensors normalize_target)" = standard ] &&
    [ -n "$(meta reg.safetensors target_shift)" ] && [ -n "$(meta reg.safetensors target_scale)" ]'
check "info shows the target scaling" eval '"$BP" info reg.safetensors | grep -q "^targets *standard"'
run eval reg.safetensors big_va.csv
r2=$(field r2 "$T/out")
check "R^2 on large-scale targets with the defaults >= 0.9 (got $r2)" ge "$r2" 0.9
check "eval: loss equals mse (both in the targets' units)" eval '[ "$(field loss "$T/out")" = "$(field mse "$T/out")" ]'
check "the saved line's validation loss is eval's mse ($saved_val vs $(field mse "$T/out"))" \
    rel_close "$saved_val" "$(field mse "$T/out")" 1e-3
run eval reg.safetensors big_va.csv --json
check "eval --json: r2 >= 0.9" ge "$(/usr/bin/env python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["r2"])' "$T/out" 2>/dev/null || echo -1)" 0.9
"$BP" predict reg.safetensors big_va.csv >pred.csv 2>/dev/null
mean=$(awk -F, 'NR > 1 { s += $1; n++ } END { if (n) printf "%.1f", s / n }' pred.csv)
check "predictions are in the targets' units (mean $mean, about 5650)" eval 'ge "$mean" 5400 && ge 5900 "$mean"'
train_ok "--normalize-target none" big_tr.csv --normalize-target none --threads 1 -o raw.safetensors --quiet
check "--normalize-target none stored" eval '[ "$(meta raw.safetensors normalize_target)" = none ]'
run eval raw.safetensors big_va.csv
check "unscaled targets: the default run does not fit (R^2 $(field r2 "$T/out") < 0)" ge 0 "$(field r2 "$T/out")"
# Fine-tuning keeps the base model's scaling (here on rows of another mean).
awk -F, 'NR == 1 || $1 > 0.5' big_tr.csv >big_hi.csv
train_ok "fine-tune a regression model" big_hi.csv --init-from reg.safetensors --epochs 2 --threads 1 -o regft.safetensors --quiet
check "fine-tuning keeps the base model's target scaling" eval '[ "$(meta regft.safetensors target_shift)" = "$(meta reg.safetensors target_shift)" ] &&
    [ "$(meta regft.safetensors target_scale)" = "$(meta reg.safetensors target_scale)" ]'
run eval regft.safetensors big_va.csv
check "the fine-tuned model still predicts in the targets' units (R^2 $(field r2 "$T/out") >= 0.5)" ge "$(field r2 "$T/out")" 0.5
train_ok "fine-tune a model without target scaling" big_tr.csv --init-from raw.safetensors --epochs 1 --threads 1 -o rawft.safetensors --quiet
check "... keeps none" eval '[ "$(meta rawft.safetensors normalize_target)" = none ]'
# Several targets, each with its own scale.
awk 'BEGIN { srand(3); print "a,b,t1,t2";
    for (i = 0; i < 200; i++) { a = rand(); b = rand(); printf "%.6f,%.6f,%.4f,%.6f\n", a, b, 2000 * a - 700 * b + 100, 0.01 * b + 0.001 * a } }' >two_t.csv
train_ok "two targets of different scales" two_t.csv --target t1,t2 --epochs 30 --threads 1 -o two_t.safetensors --quiet
run eval two_t.safetensors two_t.csv
check "both targets fit (R^2 $(field r2 "$T/out") >= 0.9)" ge "$(field r2 "$T/out")" 0.9
run train big_tr.csv --normalize-target zscore -o m.safetensors
check "--normalize-target with another word is a usage error" eval '[ "$rc" -eq 2 ] && [ ! -e m.safetensors ]'

# ---- options that do nothing say so ----
note_case() { # NAME PATTERN ARGS...: training succeeds with a note matching PATTERN
    local name=$1 pat=$2; shift 2
    run train "$@" -o n.safetensors --quiet
    if [ "$rc" -eq 0 ] && has_note "$pat"; then ok "$name"; else bad "$name (rc=$rc: $(head -c 300 "$T/err"))"; fi
}
note_case "--momentum with adam" "--momentum does nothing with --optimizer adam" tr.csv --epochs 1 --momentum 0.9
note_case "--momentum with adamw" "--momentum does nothing with --optimizer adamw" tr.csv --epochs 1 --optimizer adamw --momentum 0.9
note_case "--momentum with adagrad" "--momentum does nothing with --optimizer adagrad" tr.csv --epochs 1 --optimizer adagrad --momentum 0.5
note_case "--min-lr without cosine" "--min-lr does nothing with --schedule step" tr.csv --epochs 1 --schedule step --min-lr 0.0001
note_case "--gamma without step/exp" "--gamma does nothing with --schedule cosine" tr.csv --epochs 1 --schedule cosine --gamma 0.5
note_case "--step-size without step" "--step-size does nothing with --schedule exp" tr.csv --epochs 1 --schedule exp --step-size 3
note_case "--min-delta without --early-stop" "--min-delta does nothing without --early-stop" tr.csv --epochs 1 --min-delta 0.01
note_case "--warmup longer than the training" "--warmup 1000 lasts the whole training" tr.csv --epochs 2 --warmup 1000
note_case "--init with --init-from" "--init does nothing with --init-from" tr.csv --epochs 1 --init-from base.safetensors --init xavier
note_case "--normalize-target when classifying" "--normalize-target does nothing when classifying" tr.csv --epochs 1 --normalize-target standard
note_case "--no-shuffle with full batches" "--no-shuffle does nothing with full batches" tr.csv --epochs 1 --batch 0 --no-shuffle
printf '\x00\x00\x08\x03\x00\x00\x00\x04\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff' >img.idx
printf '\x00\x00\x08\x01\x00\x00\x00\x04\x00\x00\x01\x01' >lab.idx
note_case "--target on IDX data" "--target does nothing with IDX data" img.idx --labels lab.idx --epochs 1 --target 3
run eval n.safetensors img.idx --labels lab.idx --target 3
check "eval: --target on IDX data notes it" eval '[ "$rc" -eq 0 ] && has_note "--target does nothing with IDX data"'
for args in "--optimizer rmsprop --momentum 0.9" "--optimizer sgd --momentum 0.9" "--optimizer nesterov --momentum 0.5" \
    "--schedule cosine --min-lr 0.0001" "--schedule step --gamma 0.5 --step-size 2" "--schedule exp --gamma 0.5" \
    "--early-stop 2 --min-delta 0.01" "--warmup 3"; do
    # shellcheck disable=SC2086
    run train tr.csv --epochs 2 $args -o n.safetensors --quiet
    check "no note when the option is used: $args" eval '[ "$rc" -eq 0 ] && no_note'
done

# ---- suspicious class counts warn ----
printf 'a,b,y\n1,2,0\n2,3,1\n3,4,2\n4,5,200\n5,6,1\n6,7,0\n' >gap.csv
run train gap.csv --epochs 1 -o g.safetensors --quiet
check "CSV labels {0,1,2,200}: a warning names the empty classes" \
    eval '[ "$rc" -eq 0 ] && grep -q "^backprop: warning: gap.csv: 201 classes for 6 rows, and 197 of them have no rows (3, 4, 5" "$T/err"'
# IDX labels 0,1,1,200: one bad label makes 201 classes.
printf '\x00\x00\x08\x01\x00\x00\x00\x04\x00\x01\x01\xc8' >badlab.idx
run train img.idx --labels badlab.idx --epochs 1 -o g.safetensors --quiet
check "IDX label 200 among 0..1: a warning" \
    eval '[ "$rc" -eq 0 ] && grep -q "^backprop: warning: badlab.idx: 201 classes for 4 rows, and 198 of them have no rows" "$T/err"'
awk 'BEGIN { print "x,id"; for (i = 0; i < 40; i++) printf "%d,row%d\n", i % 3, i }' >ids.csv
run train ids.csv --epochs 1 -o g.safetensors --quiet
check "one class per row: a warning" eval '[ "$rc" -eq 0 ] && grep -q "^backprop: warning: ids.csv: 40 classes for 40 rows" "$T/err"'
run train tr.csv --epochs 1 -o g.safetensors --quiet
check "ordinary classes: no warning" eval '[ "$rc" -eq 0 ] && ! grep -q "warning" "$T/err"'
run train gap.csv --epochs 1 --val va.csv -o m.safetensors --quiet
check "an error after a warning is still one line" eval '[ "$rc" -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ]'

# ---- eval on a CSV without its target column: exit 1 ----
awk -F, -v OFS=, '{ print $1, $2, $3, $4 }' va.csv >va_notarget.csv
run eval v1.safetensors va_notarget.csv
check "eval without the target column: exit 1 (data error), one line" \
    eval '[ "$rc" -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^backprop: .*species" "$T/err"'
run eval reg.safetensors va_notarget.csv
check "eval of a regression model on a file without its target: exit 1" eval '[ "$rc" -eq 1 ]'
run eval v1.safetensors va_notarget.csv --target nosuch
check "eval --target naming no column stays a usage error (exit 2)" eval '[ "$rc" -eq 2 ]'
run predict v1.safetensors va_notarget.csv
check "predict without the target column: exit 0, one row per sample" eval '[ "$rc" -eq 0 ] && [ "$(wc -l <"$T/out")" -eq 61 ]'
finish
