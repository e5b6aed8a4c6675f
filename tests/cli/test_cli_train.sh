#!/usr/bin/env bash
# test_cli_train.sh - every option of `backprop train` is accepted and has
# its effect where it is cheap to observe (log rows and columns, learning
# rate per epoch, reproducible model files, frozen layers, early stopping,
# plot, quiet), and Ctrl-C leaves no model behind.
# Usage: bash test_cli_train.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# lr_col LOG: the lr column of a training log, one value per line.
lr_col() { awk -F, 'NR > 1 { print $6 }' "$1"; }
# close "A B C" "X Y Z": the numbers agree to 1e-5 relative.
close() {
    awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); m = split(b, y, " "); if (n != m) exit 1;
        for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; s = y[i] < 0 ? -y[i] : y[i];
        if (d > 1e-5 * s + 1e-9) exit 1 } }'
}

# Deterministic data (Park-Miller generator in awk).
gen_two() { # ROWS: two well separated classes "no"/"yes"
    awk -v n="$1" 'BEGIN { s = 12345; print "x1,x2,label";
        for (i = 0; i < n; i++) { s = (s * 16807) % 2147483647; u = s / 2147483647 - 0.5;
            s = (s * 16807) % 2147483647; v = s / 2147483647 - 0.5; c = i % 2 ? 2 : -2;
            printf "%.4f,%.4f,%s\n", c + u, c + v, i % 2 ? "yes" : "no" } }'
}
gen_reg() { # ROWS: y = 2 x1 - 3 x2 + 0.5
    awk -v n="$1" 'BEGIN { s = 777; print "x1,x2,y";
        for (i = 0; i < n; i++) { s = (s * 16807) % 2147483647; u = 2 * s / 2147483647 - 1;
            s = (s * 16807) % 2147483647; v = 2 * s / 2147483647 - 1;
            printf "%.4f,%.4f,%.4f\n", u, v, 2 * u - 3 * v + 0.5 } }'
}
gen_two 60 >two.csv
gen_two 20 >val.csv
gen_reg 80 >reg.csv

# ---- --epochs, --log rows and columns ----
train_ok "train --epochs 3 --log" two.csv --arch "dense(8) relu" --epochs 3 --log log.csv -o m.safetensors
check "log has a header and 3 epoch rows" [ "$(wc -l <log.csv)" -eq 4 ]
check "log header names the columns by layer index" [ "$(head -1 log.csv)" = \
    "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds,grad_norm_0,grad_norm_2,dead_1" ]
check "log epochs are 1 2 3" [ "$(awk -F, 'NR > 1 { printf "%s ", $1 }' log.csv)" = "1 2 3 " ]
check "log rows have 10 fields, no validation values" \
    [ "$(awk -F, 'NR > 1 && NF == 10 && $4 == "" && $2 > 0 && $3 >= 0 { n++ } END { print n }' log.csv)" = 3 ]
train_ok "--arch with two relu layers" two.csv --arch "dense(8) relu dense(4) leaky_relu(0.1) dense(4) relu" \
    --epochs 2 --log log2.csv -o m2.safetensors
check "log columns: grad_norm per dense layer, dead per relu layer" [ "$(head -1 log2.csv)" = \
    "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds,grad_norm_0,grad_norm_2,grad_norm_4,grad_norm_6,dead_1,dead_5" ]
train_ok "--epochs 7" two.csv --epochs 7 --log log7.csv -o m7.safetensors
check "--epochs 7 gives 7 log rows" [ "$(($(wc -l <log7.csv) - 1))" -eq 7 ]
check "metadata records epochs 7" [ "$(meta m7.safetensors epochs)" = 7 ]

# ---- reproducibility: --no-shuffle, --seed ----
train_ok "--no-shuffle --seed 7 (1)" two.csv --no-shuffle --seed 7 --epochs 5 -o r1.safetensors --quiet
train_ok "--no-shuffle --seed 7 (2)" two.csv --no-shuffle --seed 7 --epochs 5 -o r2.safetensors --quiet
check "same seed, no shuffle: bit-identical model files" cmp -s r1.safetensors r2.safetensors
train_ok "--no-shuffle --seed 8" two.csv --no-shuffle --seed 8 --epochs 5 -o r3.safetensors --quiet
check "another seed: different model" eval '! cmp -s r1.safetensors r3.safetensors'
train_ok "shuffled --seed 7" two.csv --seed 7 --epochs 5 -o r4.safetensors --quiet
check "shuffling changes the model" eval '! cmp -s r1.safetensors r4.safetensors'
check "metadata records shuffle 0 and seed 7" eval '[ "$(meta r1.safetensors shuffle)" = 0 ] && [ "$(meta r1.safetensors seed)" = 7 ]'

# ---- --batch 0 (full batch) and 1 (stochastic) ----
train_ok "--batch 0" two.csv --batch 0 --epochs 2 -o b0.safetensors --quiet
check "--batch 0: one step per epoch" [ "$(meta b0.safetensors steps_per_epoch)" = 1 ]
train_ok "--batch 1" two.csv --batch 1 --epochs 2 -o b1.safetensors --quiet
check "--batch 1: one step per sample" [ "$(meta b1.safetensors steps_per_epoch)" = 60 ]
train_ok "--batch 16" two.csv --batch 16 --epochs 2 -o b16.safetensors --quiet
check "--batch 16: 4 steps per epoch" [ "$(meta b16.safetensors steps_per_epoch)" = 4 ]

# ---- --normalize ----
train_ok "--normalize none" two.csv --normalize none --no-shuffle --epochs 3 -o n0.safetensors --quiet
train_ok "--normalize standard" two.csv --normalize standard --no-shuffle --epochs 3 -o n1.safetensors --quiet
train_ok "--normalize minmax" two.csv --normalize minmax --no-shuffle --epochs 3 -o n2.safetensors --quiet
check "normalize none stored" [ "$(meta n0.safetensors normalize)" = none ]
check "normalize standard stored with shift and scale" eval '[ "$(meta n1.safetensors normalize)" = standard ] && [ -n "$(meta n1.safetensors norm_shift)" ]'
check "normalize minmax stored" [ "$(meta n2.safetensors normalize)" = minmax ]
check "none vs standard give different models" eval '! cmp -s n0.safetensors n1.safetensors'
"$BP" predict n0.safetensors two.csv --proba >p0.csv
"$BP" predict n1.safetensors two.csv --proba >p1.csv
check "none vs standard give different probabilities" eval '! cmp -s p0.csv p1.csv'
train_ok "CSV default is standard" two.csv --epochs 1 -o nd.safetensors --quiet
check "default normalization of CSV is standard" [ "$(meta nd.safetensors normalize)" = standard ]

# ---- --init-from and --freeze ----
train_ok "base model" two.csv --arch "dense(8) relu" --epochs 3 --val-split 0.2 -o base.safetensors --quiet
train_ok "--init-from --freeze 1" two.csv --init-from base.safetensors --freeze 1 --epochs 3 --lr 0.05 \
    -o tuned.safetensors --quiet
sum_of() { "$BP" info "$1" | awk -v l="$2" '$1 == l && $2 ~ /^dense/ { print $NF }'; }
check "--freeze 1 keeps layer 0 bit-identical" eval '[ -n "$(sum_of base.safetensors 0)" ] && [ "$(sum_of base.safetensors 0)" = "$(sum_of tuned.safetensors 0)" ]'
check "--freeze 1 trains layer 2" eval '[ "$(sum_of base.safetensors 2)" != "$(sum_of tuned.safetensors 2)" ]'
train_ok "--init-from without --freeze" two.csv --init-from base.safetensors --epochs 2 -o tuned2.safetensors --quiet
check "--init-from without --freeze trains layer 0" eval '[ "$(sum_of base.safetensors 0)" != "$(sum_of tuned2.safetensors 0)" ]'
check "--init-from records the base model" [ "$(meta tuned.safetensors init_from)" = base.safetensors ]
check "--init-from: fresh training metadata, the base's --arch kept" eval '[ -z "$(meta tuned.safetensors val_split)" ] && [ "$(meta tuned.safetensors freeze)" = 1 ] && [ "$(meta tuned.safetensors hidden)" = "dense(8) relu" ]'
train_ok "--init-from with the same --arch" two.csv --init-from base.safetensors --arch "dense(8) relu" --epochs 1 -o t3.safetensors --quiet
run train two.csv --init-from base.safetensors --arch "dense(9) relu" --epochs 1 -o t4.safetensors
check "--init-from with another --arch: usage error, nothing written" eval '[ $rc -eq 2 ] && grep -q "^backprop: --arch gives" err && [ ! -e t4.safetensors ]'
run train two.csv --init-from base.safetensors --freeze 2 --epochs 1 -o t5.safetensors
check "--freeze of every dense layer rejected" eval '[ $rc -ne 0 ] && [ $(wc -l <err) -eq 1 ] && grep -q "^backprop: .*freeze" err && [ ! -e t5.safetensors ]'
run train reg.csv --init-from base.safetensors --epochs 1 -o t6.safetensors
check "--init-from a classifier on regression data fails" eval '[ $rc -ne 0 ] && [ $(wc -l <err) -eq 1 ] && [ ! -e t6.safetensors ]'

# ---- --early-stop (and --min-delta) ----
run train two.csv --epochs 50 --early-stop 2 --min-delta 100 --log es.csv -o es.safetensors
check "--early-stop 2 stops after 3 epochs when nothing improves" eval '[ $rc -eq 0 ] && [ $(($(wc -l <es.csv) - 1)) -eq 3 ] && grep -q "early stop" err'
check "--early-stop keeps the best epoch" [ "$(meta es.safetensors best_epoch)" = 1 ]
run train two.csv --epochs 6 --early-stop 3 --val val.csv --log es2.csv -o es2.safetensors --quiet
check "--early-stop with --val runs while val loss improves" eval '[ $rc -eq 0 ] && [ $(($(wc -l <es2.csv) - 1)) -eq 6 ]'

# ---- --val, --val-split ----
train_ok "--val FILE" two.csv --val val.csv --epochs 3 --log v.csv -o v.safetensors --quiet
check "--val fills val_loss and val_accuracy in every log row" \
    [ "$(awk -F, 'NR > 1 && $4 != "" && $5 != "" { n++ } END { print n }' v.csv)" = 3 ]
check "--val sample count stored" [ "$(meta v.safetensors val_samples)" = 20 ]
train_ok "--val-split 0.25" two.csv --val-split 0.25 --epochs 2 -o vs.safetensors --quiet
check "--val-split 0.25 holds out 15 of 60 rows" eval '[ "$(meta vs.safetensors val_samples)" = 15 ] && [ "$(meta vs.safetensors train_samples)" = 45 ]'
run train two.csv --val-split 0.001 --epochs 1 -o vs2.safetensors
check "--val-split leaving no validation row is an error" eval '[ $rc -eq 2 ] && [ ! -e vs2.safetensors ]'

# ---- optimizers, losses, init, regularization, clipping ----
for o in sgd momentum nesterov adam adamw rmsprop adagrad; do
    train_ok "--optimizer $o" two.csv --optimizer "$o" --epochs 2 -o "o_$o.safetensors" --quiet
    check "--optimizer $o stored" [ "$(meta "o_$o.safetensors" optimizer)" = "$o" ]
done
check "optimizers give different models" eval '! cmp -s o_sgd.safetensors o_adam.safetensors'
train_ok "--optimizer sgd --momentum 0.8 means momentum" two.csv --optimizer sgd --momentum 0.8 --epochs 1 -o mo.safetensors --quiet
check "--momentum stored" eval '[ "$(meta mo.safetensors optimizer)" = momentum ] && [ "$(meta mo.safetensors momentum)" = 0.8 ]'
train_ok "--lr 0.05" two.csv --lr 0.05 --epochs 1 -o lr.safetensors --quiet
check "--lr stored" [ "$(meta lr.safetensors lr)" = 0.05 ]
train_ok "--weight-decay 0.1" two.csv --optimizer adamw --weight-decay 0.1 --epochs 1 -o wd.safetensors --quiet
check "--weight-decay stored" [ "$(meta wd.safetensors weight_decay)" = 0.1 ]
train_ok "--l1 0.01 --l2 0.01" two.csv --l1 0.01 --l2 0.01 --no-shuffle --epochs 3 -o l12.safetensors --quiet
train_ok "no penalty, same run" two.csv --no-shuffle --epochs 3 -o l00.safetensors --quiet
check "--l1/--l2 change the model" eval '! cmp -s l12.safetensors l00.safetensors'
train_ok "--clip-norm 0.01" two.csv --clip-norm 0.01 --no-shuffle --epochs 3 -o cn.safetensors --quiet
check "--clip-norm changes the model" eval '! cmp -s cn.safetensors l00.safetensors'
train_ok "--clip-value 0.001" two.csv --clip-value 0.001 --no-shuffle --epochs 3 -o cv.safetensors --quiet
check "--clip-value changes the model" eval '! cmp -s cv.safetensors l00.safetensors'
train_ok "--init he" two.csv --init he --epochs 1 -o ih.safetensors --quiet
train_ok "--init xavier" two.csv --init xavier --epochs 1 -o ix.safetensors --quiet
check "--init he and xavier differ" eval '! cmp -s ih.safetensors ix.safetensors && [ "$(meta ih.safetensors init)" = he ]'
train_ok "--loss bce" two.csv --loss bce --epochs 3 -o bce.safetensors --quiet
check "--loss bce has one output" eval '"$BP" info bce.safetensors | grep -q "^outputs *1$" && [ "$(meta bce.safetensors loss)" = bce ]'
train_ok "--loss cross-entropy" two.csv --loss cross-entropy --epochs 1 -o ce.safetensors --quiet
check "--loss cross-entropy has one output per class" eval '"$BP" info ce.safetensors | grep -q "^outputs *2$"'
train_ok "--arch \"\" (logistic regression)" two.csv --arch "" --epochs 2 -o lin.safetensors --quiet
check "--arch \"\" is one dense layer" eval '"$BP" info lin.safetensors | grep -q "^spec *dense(2)$"'
train_ok "--threads 1" two.csv --threads 1 --epochs 1 -o th.safetensors --quiet
train_ok "--arch with dropout" two.csv --arch "dense(8) relu dropout(0.2)" --epochs 2 -o dr.safetensors --quiet

# ---- --task, --target ----
awk -F, 'BEGIN { OFS = "," } NR == 1 { print "y", "a", "b"; next } { print ($3 == "yes"), $1, $2 }' two.csv >first.csv
train_ok "--target y (first column)" first.csv --target y --epochs 1 -o tg.safetensors --quiet
check "--target: target and features named" eval '[ "$(meta tg.safetensors targets)" = "[\"y\"]" ] && [ "$(meta tg.safetensors features)" = "[\"a\",\"b\"]" ]'
train_ok "--target 0 (by index)" first.csv --target 0 --epochs 1 -o tg0.safetensors --quiet
check "--target by index picks the same column" [ "$(meta tg0.safetensors targets)" = "[\"y\"]" ]
train_ok "--task regress on integer labels" first.csv --target y --task regress --epochs 1 -o tr.safetensors --quiet
check "--task regress stored" eval '[ "$(meta tr.safetensors task)" = regress ] && [ "$(meta tr.safetensors loss)" = mse ]'
train_ok "--task classify on decimals" reg.csv --task classify --arch "" --epochs 1 -o tc.safetensors --quiet
check "--task classify stored" [ "$(meta tc.safetensors task)" = classify ]
train_ok "regression by default on decimals" reg.csv --epochs 1 -o rg.safetensors --quiet
check "regression task and mse loss" eval '[ "$(meta rg.safetensors task)" = regress ] && [ "$(meta rg.safetensors loss)" = mse ]'

# ---- schedules and warm-up: the lr column (one step per epoch with --batch 0) ----
train_ok "--schedule step" two.csv --batch 0 --lr 0.1 --optimizer sgd --epochs 4 --schedule step --step-size 1 --gamma 0.5 --log s1.csv -o s.safetensors --quiet
check "--schedule step halves the lr every epoch" close "$(lr_col s1.csv | tr '\n' ' ')" "0.1 0.05 0.025 0.0125"
train_ok "--schedule step --step-size 2" two.csv --batch 0 --lr 0.1 --optimizer sgd --epochs 4 --schedule step --step-size 2 --gamma 0.5 --log s2.csv -o s.safetensors --quiet
check "--step-size counts epochs" close "$(lr_col s2.csv | tr '\n' ' ')" "0.1 0.1 0.05 0.05"
train_ok "--schedule exp" two.csv --batch 0 --lr 0.1 --optimizer sgd --epochs 3 --schedule exp --gamma 0.5 --log s3.csv -o s.safetensors --quiet
check "--schedule exp decays by gamma per epoch" close "$(lr_col s3.csv | tr '\n' ' ')" "0.1 0.05 0.025"
train_ok "--warmup 4" two.csv --batch 0 --lr 0.1 --optimizer sgd --epochs 5 --warmup 4 --log s4.csv -o s.safetensors --quiet
check "--warmup ramps the lr over 4 steps" close "$(lr_col s4.csv | tr '\n' ' ')" "0.025 0.05 0.075 0.1 0.1"
train_ok "--schedule cosine" two.csv --batch 0 --lr 0.1 --optimizer sgd --epochs 4 --schedule cosine --log s5.csv -o s.safetensors --quiet
check "--schedule cosine over the whole run" close "$(lr_col s5.csv | tr '\n' ' ')" "0.1 0.0853553 0.05 0.0146447"
train_ok "--schedule cosine --min-lr" two.csv --batch 0 --lr 0.1 --optimizer sgd --epochs 4 --schedule cosine --min-lr 0.01 --log s6.csv -o s.safetensors --quiet
check "--min-lr is the cosine floor" close "$(lr_col s6.csv | tr '\n' ' ')" "0.1 0.0868198 0.055 0.0231802"
train_ok "--schedule constant" two.csv --batch 0 --lr 0.1 --optimizer sgd --epochs 2 --schedule constant --log s7.csv -o s.safetensors --quiet
check "--schedule constant keeps the lr" close "$(lr_col s7.csv | tr '\n' ' ')" "0.1 0.1"

# ---- output: --plot, --quiet, progress lines, default -o ----
train_ok "--plot" two.csv --val val.csv --epochs 4 --plot curves.svg -o pl.safetensors --quiet
check "--plot writes an SVG with both panels and a legend" eval 'grep -q "<svg" curves.svg && grep -q "</svg>" curves.svg && grep -q "Loss per epoch" curves.svg && grep -q "Accuracy per epoch" curves.svg && grep -q validation curves.svg'
train_ok "--plot for regression" reg.csv --epochs 3 --plot reg.svg -o pr.safetensors --quiet
check "regression plot has the loss panel only" eval 'grep -q "<svg" reg.svg && ! grep -q "Accuracy" reg.svg'
if command -v xmllint >/dev/null 2>&1; then
    check "SVG is well-formed XML" xmllint --noout curves.svg
fi
run train two.csv --epochs 3 --quiet -o q.safetensors
check "--quiet: nothing on stderr, one result line on stdout" eval '[ $rc -eq 0 ] && [ ! -s err ] && [ $(wc -l <out) -eq 1 ] && grep -q "^saved q.safetensors" out'
run train two.csv --epochs 3 -o nq.safetensors
check "not a terminal: one plain summary line per epoch on stderr" eval '[ $(grep -c "^epoch [0-9]/3 " err) -eq 3 ] && ! grep -q $(printf "\r") err'
check "results on stdout" eval 'grep -q "^saved nq.safetensors: 3 epochs" out'
mkdir -p d && (cd d && "$BP" train ../two.csv --epochs 1 --quiet >/dev/null 2>&1)
check "default -o is model.safetensors" [ -f d/model.safetensors ]

# ---- nothing written on failure ----
run train reg.csv --optimizer sgd --lr 1e30 --batch 0 --epochs 5 -o div.safetensors --log div.csv --plot div.svg --quiet
check "diverging training fails, writes nothing" eval '[ $rc -eq 1 ] && [ $(wc -l <err) -eq 1 ] && [ ! -e div.safetensors ] && [ ! -e div.csv ] && [ ! -e div.svg ]'
check "no temporary files left" eval '[ -z "$(ls | grep -e "\.tmp")" ]'

# ---- Ctrl-C: exit 130, no model, no log ----
gen_two 4000 >big.csv
"$BP" train big.csv --arch "dense(64) relu" --batch 1 --epochs 100000 -o int.safetensors --log int.csv \
    --plot int.svg >int.out 2>int.err &
pid=$!
for _ in $(seq 1 200); do grep -Eq "^epoch +1/" int.err 2>/dev/null && break; sleep 0.05; done
kill -INT "$pid"
wait "$pid"
irc=$?
check "SIGINT during training exits 130" [ "$irc" -eq 130 ]
check "SIGINT prints 'interrupted'" grep -q "^backprop: interrupted" int.err
check "SIGINT writes no model, log or plot" eval '[ ! -e int.safetensors ] && [ ! -e int.csv ] && [ ! -e int.svg ] && [ -z "$(ls | grep -e "\.tmp")" ]'

finish
