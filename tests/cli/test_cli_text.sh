#!/usr/bin/env bash
# test_cli_text.sh - text and sequences on the command line:
#   - a character-level language model on Debian's GPL-3 text (35 KB):
#     embedding(16) gru(64), --seq-len 32, 16 streams, 15 epochs, the last
#     3,073 characters held out with --val; its held-out bits per character
#     must be below 3.3 (measured 2.955; log2 of its 76-character vocabulary
#     is 6.25, a unigram model of English about 4.1); the training loss falls;
#   - eval --json on the held-out text gives the training line's validation
#     figure: 3,073 = 16 streams x 6 windows x 32 + 1 characters, so eval's
#     layout (every character once) is the training one, and they agree to
#     float rounding; with other stream counts within 0.1 nats;
#   - info (task, vocabulary, seq_len, the [32,64] rows), metadata, the
#     default --val-split tail, --init-from fine-tuning, --encoding bytes;
#   - generate: exactly N characters of the vocabulary, the same text for a
#     seed, another for another seed, --prime, and temperatures 0.01 / 2.0
#     whose texts the model finds likely / unlikely (bits per character);
#   - every bad input of issue 9 (one "backprop: " line, non-zero status, no
#     model written): empty, one-character and too-short texts, --seq-len
#     0 / negative / garbage, invalid UTF-8, characters outside the
#     vocabulary at eval and in --prime, generate on a CSV model, predict on
#     a text model, recurrent layers on IDX images;
#   - CSV rows as sequences (--input-shape T,F, "lstm(16) last" / "gru(16)
#     last"): classification and regression, eval, predict, info.
# Runs in about 15 s under ASan + UBSan on 2 cores (1.5 s in a release build).
# Usage: bash test_cli_text.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
GPL=/usr/share/common-licenses/GPL-3
check "Debian's GPL-3 text is installed" test -r "$GPL"
py() { /usr/bin/python3 "$@"; }
# jnum FILE KEY: a number of the JSON object in FILE.
jnum() { py -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
# close A B TOL: |A - B| <= TOL.
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }

# ---- train on GPL-3 ----
py - "$GPL" <<'PY'
import sys
t = open(sys.argv[1], encoding="utf-8").read()
open("head.txt", "w").write(t[:-3073])
open("val.txt", "w").write(t[-3073:])
PY
ARCH="embedding(16) gru(64)"
start=$(date +%s.%N)
run train head.txt --task text --val val.txt --seq-len 32 --batch 16 --arch "$ARCH" --epochs 15 \
    --lr 0.003 --clip-norm 5 --log log.csv -o gpl.safetensors
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
check "train --task text on GPL-3 exits 0" [ "$rc" -eq 0 ] || tail -3 err
cp out train.out
cp err train.err
line=$(cat train.out)
echo "$line (${secs}s)"
check "the start line shows the filled-in spec, streams and vocabulary" \
    grep -q "^training embedding(16,76) gru(64) dense(76) on 32,076 characters (16 streams of 62 windows of 32, vocabulary 76, utf8) (validation 3,073 characters)" train.err
check "epoch lines show bits per character" grep -Eq "^epoch 15/15  loss [0-9.]+  bpc [0-9.]+  acc [0-9.]+  val_loss [0-9.]+  val_bpc [0-9.]+  val_acc" train.err
vbpc=$(sed -n 's/.*validation loss [0-9.]* (\([0-9.]*\) bits\/char).*/\1/p' train.out)
echo "held-out bits per character: $vbpc (threshold 3.3; log2(76) = 6.25)"
check "held-out bits per character $vbpc < 3.3" awk -v v="${vbpc:-99}" 'BEGIN { exit !(v < 3.3) }'
first=$(awk -F, 'NR == 2 { print $2 }' log.csv)
last=$(awk -F, 'NR == 16 { print $2 }' log.csv)
check "the training loss falls ($first -> $last)" awk -v a="${first:-0}" -v b="${last:-9}" 'BEGIN { exit !(b < a - 1) }'
check "train line: loss, bits/char and accuracy" grep -Eq "^saved gpl.safetensors: 15 epochs in [0-9.]+s, train loss [0-9.]+ \([0-9.]+ bits/char\) accuracy [0-9.]+, validation loss" train.out

# ---- metadata and info ----
check "task text" [ "$(meta gpl.safetensors task)" = text ]
check "vocab_size 76, seq_len 32, encoding utf8" \
    [ "$(meta gpl.safetensors vocab_size),$(meta gpl.safetensors seq_len),$(meta gpl.safetensors encoding)" = "76,32,utf8" ]
check "the vocabulary is stored as code points (newline first)" eval '"$BP" info --full gpl.safetensors | grep -Eq "^  vocab +10,32,34,"'
check "batch (streams), shuffle 0, train/val characters" \
    [ "$(meta gpl.safetensors batch),$(meta gpl.safetensors shuffle),$(meta gpl.safetensors train_chars),$(meta gpl.safetensors val_chars)" = "16,0,32076,3073" ]
run info gpl.safetensors
check "info: task line" grep -q "^task        text" out
check "info: the vocabulary's characters, escaped" grep -qF "vocabulary  76 characters (utf8): \"\\n \\\"'()" out
check "info: seq_len line" grep -q "^seq_len     32 " out
row() { awk -v l="$1" '$1 == l { print $2, $3, $4 }' out; }
check "info row 0: embedding(16,76) [32,16] 1216" [ "$(row 0)" = "embedding(16,76) [32,16] 1216" ]
check "info row 1: gru(64) [32,64] 15744" [ "$(row 1)" = "gru(64) [32,64] 15744" ]
check "info row 2: dense(76) [32,76] 4940" [ "$(row 2)" = "dense(76) [32,76] 4940" ]
run info --json gpl.safetensors
check "info --json: task, vocab_size, seq_len, vocabulary" py -c '
import json,sys; o = json.load(open("out"))
sys.exit(not (o["task"] == "text" and o["vocab_size"] == 76 and o["seq_len"] == 32 and len(o["vocabulary"]) == 76 and o["layers"][1]["output_shape"] == [32, 64]))'

# ---- eval: the training line's validation figure ----
run eval gpl.safetensors val.txt --json
cp out eval.json
check "eval --json on a text model exits 0" [ "$rc" -eq 0 ]
check "eval --json: samples = characters predicted (3072)" [ "$(jnum eval.json samples)" = 3072 ]
eb=$(jnum eval.json bits_per_char)
el=$(jnum eval.json loss)
ml=$(meta gpl.safetensors val_loss)
echo "eval: loss $el, bits/char $eb; training: val_loss $ml, $vbpc bits/char"
check "eval bits/char $eb = the training line's $vbpc (to its 4 decimals)" close "$eb" "$vbpc" 0.00006
check "eval loss $el = the stored val_loss $ml (1e-5)" close "$el" "$ml" 0.00001
check "bits_per_char = loss / ln 2" awk -v l="$el" -v b="$eb" 'BEGIN { d = l / log(2) - b; exit !(d < 1e-6 && d > -1e-6) }'
for s in 1 7; do
    run eval gpl.safetensors val.txt --json --streams "$s"
    l=$(jnum out loss)
    check "eval --streams $s: every character once, loss $l within 0.1 of $el" \
        eval 'close "$l" "$el" 0.1 && [ "$(jnum out samples)" = 3072 ] && [ "$(jnum out streams)" = "$s" ]'
done
run eval gpl.safetensors val.txt
check "eval text report" eval 'grep -q "^bits per char  " out && grep -q "^samples        3072 characters predicted (16 streams, windows of 32, carried state)" out'
printf 'ab' >two.txt
run eval gpl.safetensors two.txt --json
check "eval on a 2-character text: 1 prediction, 1 stream" eval '[ $rc -eq 0 ] && [ "$(jnum out samples)" = 1 ] && [ "$(jnum out streams)" = 1 ]'

# ---- generate ----
vocab_ok() { # FILE N: exactly N UTF-8 characters, all in the model's vocabulary
    py - "$1" "$2" <<'PY'
import json, subprocess, sys, os
t = open(sys.argv[1], "rb").read().decode("utf-8")
v = json.loads(subprocess.run([os.environ["BP"], "info", "--json", "gpl.safetensors"],
                              capture_output=True).stdout)["vocabulary"]
sys.exit(not (len(t) == int(sys.argv[2]) and set(t) <= set(v)))
PY
}
export BP
"$BP" generate gpl.safetensors --length 300 --seed 1 >g1.txt
check "generate exits 0" [ $? -eq 0 ]
"$BP" generate gpl.safetensors --length 300 --seed 1 >g1b.txt
"$BP" generate gpl.safetensors --length 300 --seed 2 >g2.txt
check "generate: exactly 300 characters, all from the vocabulary" vocab_ok g1.txt 300
check "generate: the same text for the same seed" cmp -s g1.txt g1b.txt
check "generate: another text for another seed" eval '! cmp -s g1.txt g2.txt'
"$BP" generate gpl.safetensors --length 0 >g0.txt
check "generate --length 0 writes nothing" [ ! -s g0.txt ]
"$BP" generate gpl.safetensors --prime "This License" --length 50 --seed 4 >gp.txt
check "generate --prime: 50 characters from the vocabulary" vocab_ok gp.txt 50
"$BP" generate gpl.safetensors --length 400 --temperature 0.01 >cold.txt
"$BP" generate gpl.safetensors --length 400 --temperature 2.0 >hot.txt
check "temperatures 0.01 and 2.0: 400 characters each" eval 'vocab_ok cold.txt 400 && vocab_ok hot.txt 400'
# Read as one stream (the way they were written): the 0.01 text is the
# model's own most likely continuation almost everywhere, the 2.0 text much
# less likely than that.
run eval gpl.safetensors cold.txt --json --streams 1
cold=$(jnum out bits_per_char)
cacc=$(jnum out accuracy)
run eval gpl.safetensors hot.txt --json --streams 1
hot=$(jnum out bits_per_char)
dc=$(py -c 'import sys; print(len(set(open("cold.txt").read())))')
dh=$(py -c 'import sys; print(len(set(open("hot.txt").read())))')
echo "temperature 0.01: $cold bits/char, argmax accuracy $cacc, $dc distinct characters; 2.0: $hot bits/char, $dh distinct"
check "temperature 0.01: the most likely character at >= 95% of the steps" \
    awk -v a="${cacc:-0}" 'BEGIN { exit !(a >= 0.95) }'
check "temperature 2.0 text is at least 2 bits/char less likely than the 0.01 text" \
    awk -v c="${cold:-9}" -v h="${hot:-0}" 'BEGIN { exit !(h > c + 2) }'
check "temperature 2.0 uses more distinct characters than 0.01" [ "${dh:-0}" -gt "${dc:-99}" ]

# ---- the default held-out tail, fine-tuning, bytes ----
run train "$GPL" --task text --seq-len 32 --batch 16 --arch "gru(32)" -o m.safetensors
check "--task text needs embedding first" eval '[ $rc -eq 2 ] && grep -q "the first layer must be embedding(D)" err'
run train "$GPL" --task text --seq-len 32 --batch 16 --arch "embedding(8) gru(16)" --epochs 1 -o split.safetensors
check "default --val-split 0.1: the last 3,515 of 35,149 characters" \
    eval '[ $rc -eq 0 ] && [ "$(meta split.safetensors val_chars)" = 3515 ] && [ "$(meta split.safetensors train_chars)" = 31634 ] && [ "$(meta split.safetensors val_split)" = 0.1 ]'
run train "$GPL" --task text --seq-len 32 --val-split 0 --epochs 1 -o nosplit.safetensors
check "--val-split 0: no validation; default arch embedding(32) lstm(128)" \
    eval '[ $rc -eq 0 ] && ! grep -q validation out && [ "$(meta nosplit.safetensors hidden)" = "embedding(32) lstm(128)" ] && [ -z "$(meta nosplit.safetensors val_chars)" ]'
head -c 3000 "$GPL" >small.txt
run train small.txt --task text --seq-len 16 --epochs 1 -o small.safetensors
check "a short text: the default split is dropped with a note" \
    eval '[ $rc -eq 0 ] && grep -q "^backprop: note: no validation: the last 10% of small.txt (300 characters) is shorter than one window per stream" err'
run train head.txt --init-from gpl.safetensors --epochs 1 --batch 8 --val val.txt -o tuned.safetensors
check "--init-from a text model fine-tunes it (task inferred)" \
    eval '[ $rc -eq 0 ] && [ "$(meta tuned.safetensors task)" = text ] && [ "$(meta tuned.safetensors seq_len)" = 32 ]'
head -c 4000 "$GPL" >noise.bin
printf 'abc\ndef\xc3(x\n\x00\xff' >>noise.bin
run train noise.bin --task text --encoding bytes --seq-len 16 --batch 4 --arch "embedding(4) rnn(8)" --epochs 1 -o bytes.safetensors
check "--encoding bytes trains on any bytes" eval '[ $rc -eq 0 ] && [ "$(meta bytes.safetensors encoding)" = bytes ]'
"$BP" generate bytes.safetensors --length 100 >gb.bin
check "generate on a bytes model writes exactly 100 bytes" [ "$(stat -c %s gb.bin)" -eq 100 ]
run eval bytes.safetensors noise.bin --json
check "eval on a bytes model" eval '[ $rc -eq 0 ] && [ "$(jnum out samples)" -gt 4000 ]'

# ---- bad input ----
: >empty.txt
printf 'a' >one.txt
printf 'hello\n' >short.txt
printf 'abc\ndef\xc3(x\n' >bad.txt
printf 'caf\xc3\xa9\n' >accent.txt
printf 'x,y,label\n1,2,a\n3,4,b\n5,6,a\n7,8,b\n' >two.csv
"$BP" train two.csv --epochs 1 -q -o csv.safetensors >/dev/null 2>&1
E="--task text --seq-len 32 --epochs 1 -o m.safetensors"
expect_error "empty text" 1 "^backprop: empty.txt: empty text" train empty.txt $E
expect_error "one-character text" 1 "^backprop: one.txt: a text of 1 character has nothing to learn" train one.txt $E
expect_error "--seq-len longer than the text" 1 \
    "^backprop: short.txt: the text has 6 characters; 32 streams \(--batch\) of windows of 32 characters \(--seq-len\) need at least 1025: lower --batch or --seq-len" \
    train short.txt $E
expect_error "--seq-len longer than the training part" 1 \
    "the training text has 31634 characters after holding out the last 3515 for validation \(--val-split 0.1\); 32 streams \(--batch\) of windows of 1000 characters \(--seq-len\) need at least 32001" \
    train "$GPL" --task text --seq-len 1000 -o m.safetensors
expect_error "a validation part too short for the streams" 1 \
    "the validation text has 351 characters; 32 streams \(--batch\) of windows of 64 characters \(--seq-len\) need at least 2049: raise --val-split" \
    train "$GPL" --task text --val-split 0.01 -o m.safetensors
expect_error "--seq-len 0" 2 "^backprop: --seq-len: 0 is out of range" train "$GPL" $E --seq-len 0
expect_error "--seq-len -5" 2 "^backprop: --seq-len: -5 is out of range" train "$GPL" $E --seq-len -5
expect_error "--seq-len garbage" 2 "^backprop: --seq-len: 'x12' is not an integer" train "$GPL" $E --seq-len x12
expect_error "--seq-len without --task text" 2 "--seq-len is for --task text" train two.csv --seq-len 8 -o m.safetensors
expect_error "--encoding unknown" 2 "--encoding: unknown value 'latin1'" train "$GPL" $E --encoding latin1
expect_error "invalid UTF-8 in utf8 mode" 1 \
    "^backprop: bad.txt:2:4: invalid UTF-8 byte 0xC3 \(byte offset 7\); not UTF-8\? --encoding bytes" train bad.txt $E
expect_error "--batch 0 with --task text" 2 "--batch is the number of parallel streams" train "$GPL" $E --batch 0
expect_error "--loss mse with --task text" 2 "trained with cross-entropy" train "$GPL" $E --loss mse
expect_error "embedding(D,V) with another V" 2 "embedding\(8,50\) takes 50 token ids, but .* has 76 distinct characters" \
    train "$GPL" $E --arch "embedding(8,50) gru(8)"
expect_error "last in a text model" 2 "predicts the next character at each of the 32 steps" \
    train "$GPL" $E --arch "embedding(8) gru(8) last"
expect_error "a text with one distinct character" 1 "repeats a single character" train <(printf 'aaaaaaaaaa') --task text --seq-len 2 --batch 1 -o m.safetensors
expect_error "eval: a character outside the vocabulary" 1 \
    "^backprop: accent.txt:1:4: character 'é' \(U\+00E9\) is not in the model's vocabulary$" eval gpl.safetensors accent.txt
expect_error "eval: a byte outside a bytes model's vocabulary" 1 \
    "^backprop: accent.txt:1:5: byte 0xA9 is not in the model's vocabulary$" eval bytes.safetensors accent.txt
expect_error "eval: invalid UTF-8" 1 "^backprop: bad.txt:2:4: invalid UTF-8 byte 0xC3" eval gpl.safetensors bad.txt
expect_error "eval: empty text" 1 "empty.txt: empty text: nothing to predict" eval gpl.safetensors empty.txt
expect_error "eval: one character" 1 "one.txt: 1 character: nothing to predict" eval gpl.safetensors one.txt
expect_error "eval --labels on a text model" 2 "--labels does nothing with a text model" eval gpl.safetensors val.txt --labels x
expect_error "generate --prime with an unseen character" 2 \
    "^backprop: --prime:1:4: character 'é' \(U\+00E9\) is not in the model's vocabulary \(gpl.safetensors knows 76 characters\)" \
    generate gpl.safetensors --prime "café"
expect_error "generate --prime empty" 2 "--prime: empty" generate gpl.safetensors --prime ""
expect_error "generate on a CSV model" 1 "^backprop: csv.safetensors is not a text model \(task classify\); generate samples from models trained with 'backprop train TEXT --task text'" \
    generate csv.safetensors
expect_error "generate --temperature 0" 2 "--temperature: 0 is not above 0" generate gpl.safetensors --temperature 0
expect_error "generate --temperature nan" 2 "--temperature: 'nan'" generate gpl.safetensors --temperature nan
expect_error "generate --temperature -1" 2 "--temperature: -1 is not above 0" generate gpl.safetensors --temperature -1
expect_error "generate --length -1" 2 "--length: -1 is out of range" generate gpl.safetensors --length -1
expect_error "generate --length huge" 2 "--length: 1000000000 is out of range \(0 to 100000000\)" generate gpl.safetensors --length 1000000000
expect_error "generate without MODEL" 2 "generate: missing MODEL" generate
# predict on a text model (issue 12): a row per character of each full window of 32.
run predict gpl.safetensors val.txt --proba -o pred.csv
check "predict on a text model (rc=$rc: $(head -c 200 "$T/err"))" [ "$rc" -eq 0 ]
chars=$(python3 -c "import sys; print(len(open(sys.argv[1], encoding='utf-8').read()))" val.txt)
check "predict on a text: windows of 32, the last partial one left out ($chars characters)" \
    python3 - pred.csv "$chars" <<'PY'
import csv, math, sys
rows = list(csv.reader(open(sys.argv[1], encoding="utf-8", newline="")))
head, rows, n = rows[0], rows[1:], int(sys.argv[2])
assert head[:4] == ["window", "step", "id", "next"] and head[4:] == ["p%d" % j for j in range(76)], head[:6]
assert len(rows) == n // 32 * 32, (len(rows), n)
for r, row in enumerate(rows):
    assert int(row[0]) == r // 32 and int(row[1]) == r % 32 and 0 <= int(row[2]) < 76
    p = [float(v) for v in row[4:]]
    assert abs(math.fsum(p) - 1) < 1e-5 and min(p) >= 0
    assert max(range(76), key=lambda j: p[j]) == p.index(max(p))
PY
run predict gpl.safetensors val.txt
check "predict without --proba: the same rows, four columns (rc=$rc)" \
    python3 -c "
import csv, sys
a = list(csv.reader(open('pred.csv', encoding='utf-8', newline='')))
b = list(csv.reader(open(sys.argv[1], encoding='utf-8', newline='')))
assert [r[:4] for r in a] == b and all(len(r) == 4 for r in b)" "$T/out"
expect_error "predict --labels on a text model" 2 "predict: --labels does nothing with a text model" \
    predict gpl.safetensors val.txt --labels x
expect_error "predict on a text shorter than a window" 1 "one.txt: 1 character; the model reads windows of 32" \
    predict gpl.safetensors one.txt
expect_error "--init-from a text model with --task classify" 2 "is a text model; --task classify cannot fine-tune it" \
    train head.txt --init-from gpl.safetensors --task classify -o m.safetensors
expect_error "--init-from a text model: a character outside its vocabulary" 1 "accent.txt:1:4: character 'é'" \
    train accent.txt --init-from gpl.safetensors -o m.safetensors

# ---- a tampered text model: one line naming the file and the key ----
SRC=${2:?usage: bash test_cli_text.sh BACKPROP SOURCE_DIR}
case $SRC in /*) ;; *) SRC=$OLDPWD/$SRC ;; esac
META="/usr/bin/python3 $SRC/tests/cli/model_meta.py"
$META gpl.safetensors t1.safetensors --set vocab "10,32,32"
expect_error "tampered: a vocabulary with a duplicate" 1 \
    "^backprop: t1.safetensors: model metadata: \"vocab\": vocabulary: symbol 32 appears twice" generate t1.safetensors
$META gpl.safetensors t2.safetensors --set vocab "10,32,33"
expect_error "tampered: a vocabulary of another size than the embedding" 1 \
    "t2.safetensors: model metadata: \"vocab\": the vocabulary has 3 symbols, the network's embedding takes 76" \
    eval t2.safetensors val.txt
$META gpl.safetensors t3.safetensors --del vocab
expect_error "tampered: no vocabulary" 1 "t3.safetensors: model metadata: \"vocab\" is missing" info t3.safetensors
$META gpl.safetensors t4.safetensors --set encoding latin1
expect_error "tampered: an unknown encoding" 1 "t4.safetensors: model metadata: \"encoding\" is \"latin1\"" generate t4.safetensors
$META gpl.safetensors t5.safetensors --set seq_len 64
expect_error "tampered: seq_len" 1 "t5.safetensors: metadata \"seq_len\" is '64', the model reads 32 steps" info t5.safetensors
$META gpl.safetensors t6.safetensors --set vocab ""
expect_error "tampered: an empty vocabulary" 1 "t6.safetensors: model metadata: \"vocab\": vocabulary: empty" eval t6.safetensors val.txt
$META csv.safetensors t7.safetensors --set task text
expect_error "tampered: a CSV model called a text model" 1 "t7.safetensors: metadata \"classes\" is set, but the model is a text model" generate t7.safetensors

# ---- recurrent layers on IDX images: a spec error, never a crash ----
py - <<'PY'
import struct
with open("img.idx", "wb") as f:
    f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, 40, 6, 5) + bytes((i * 7) % 256 for i in range(40 * 30)))
with open("lab.idx", "wb") as f:
    f.write(struct.pack(">BBBBI", 0, 0, 8, 1, 40) + bytes(i % 2 for i in range(40)))
PY
expect_error "lstm on IDX images" 2 \
    "^backprop: --arch: spec:1:1: lstm needs a sequence input \[T, F\], got \[1, 6, 5\] .*--input-shape T,F reads each as a sequence .*--input-shape H,W" \
    train img.idx --labels lab.idx --arch "lstm(8) last" -o m.safetensors
expect_error "last on IDX images" 2 "last needs a sequence input" train img.idx --labels lab.idx --arch "last" -o m.safetensors
expect_error "embedding on IDX images" 2 "embedding reads token ids: --task text" \
    train img.idx --labels lab.idx --arch "embedding(4) gru(4)" -o m.safetensors
run train img.idx --labels lab.idx --input-shape 6,5 --arch "gru(8) last" --epochs 2 -o rows.safetensors
check "IDX images read row by row with --input-shape H,W" eval '[ $rc -eq 0 ] && "$BP" eval rows.safetensors img.idx --labels lab.idx >/dev/null'

# ---- CSV rows as sequences ----
py - <<'PY'
import random
random.seed(3)
T, F = 10, 2
cols = ["s%d_%d" % (t, k) for t in range(T) for k in range(F)]
with open("seq.csv", "w") as f, open("seqr.csv", "w") as g:
    f.write(",".join(cols) + ",label\n")
    g.write(",".join(cols) + ",y\n")
    for r in range(400):
        xs = [[random.gauss(0, 1) for k in range(F)] for t in range(T)]
        lab = "up" if sum(x[0] for x in xs[5:]) > 0 else "down"
        y = sum(x[1] * (t + 1) for t, x in enumerate(xs)) / 10
        flat = ["%.4f" % v for x in xs for v in x]
        f.write(",".join(flat) + "," + lab + "\n")
        g.write(",".join(flat) + ",%.5f\n" % y)
PY
run train seq.csv --input-shape 10,2 --arch "lstm(16) last" --epochs 30 --val-split 0.2 -o seq.safetensors
check "CSV sequences: lstm(16) last classifies" [ "$rc" -eq 0 ]
run eval seq.safetensors seq.csv --json
acc=$(jnum out accuracy)
check "CSV sequences: accuracy $acc >= 0.8 (measured 0.92)" awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 0.8) }'
run predict seq.safetensors seq.csv
check "CSV sequences: predict gives a row per sample" eval '[ $rc -eq 0 ] && [ $(wc -l <out) -eq 401 ]'
check "CSV sequences: input_shape 10,2 stored" [ "$(meta seq.safetensors input_shape)" = 10,2 ]
run info seq.safetensors
check "CSV sequences: info rows [10,16] and [16]" eval '[ "$(row 0)" = "lstm(16) [10,16] 1280" ] && [ "$(row 1)" = "last [16] 0" ]'
run train seqr.csv --input-shape 10,2 --arch "gru(16) last" --epochs 30 -o seqr.safetensors
run eval seqr.safetensors seqr.csv --json
r2=$(jnum out r2)
check "CSV sequences: gru(16) last regresses, r2 $r2 >= 0.8 (measured 0.99)" awk -v a="${r2:-0}" 'BEGIN { exit !(a >= 0.8) }'
expect_error "CSV sequences: a dense on every step" 2 "put last \(its final step\) or flatten before it" \
    train seq.csv --input-shape 10,2 --arch "lstm(16)" -o m.safetensors
expect_error "CSV sequences: --input-shape of another size" 2 "--input-shape 10,3 has 30 values, but seq.csv has 20 features" \
    train seq.csv --input-shape 10,3 --arch "lstm(16) last" -o m.safetensors

finish
