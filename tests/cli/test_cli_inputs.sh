#!/usr/bin/env bash
# test_cli_inputs.sh - how DATA reaches the commands (issue 7): pipes,
# named FIFOs and "-" (standard input) read once; a gzipped CSV; IDX gzip
# data that inflates far past its header ("gzip bomb"); endless streams
# bounded by the input limit; duplicate column names refused at train
# time; the CSV options --skip-rows, --no-header and --delimiter (stored
# in the model for eval and predict), with sklearn's bundled CSVs.
# Usage: bash test_cli_inputs.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
meta_has() { "$BP" info --full "$1" | grep -Eq -- "$2"; }
# A training file over 4 KiB (the size a sniffing read used to swallow):
# 300 rows, 3 features, two classes.
/usr/bin/python3 - <<'EOF'
import random
random.seed(3)
with open("d.csv", "w") as f:
    f.write("alpha,beta,gamma,label\n")
    for i in range(300):
        x = [random.gauss(0, 1) for _ in range(3)]
        f.write("%.6f,%.6f,%.6f,%s\n" % (x[0], x[1], x[2], "yes" if x[0] + x[1] > 0 else "no"))
EOF
check "the CSV is larger than 4 KiB" [ "$(wc -c <d.csv)" -gt 8192 ]
TR=(--epochs 3 --no-shuffle --quiet)

# ---- 2.1: pipes, FIFOs and "-" are read once ----
run train d.csv -o file.safetensors "${TR[@]}"
check "train from the file" [ "$rc" -eq 0 ]
run train <(cat d.csv) -o pipe.safetensors "${TR[@]}"
check "train from a pipe <(cat d.csv) (rc=$rc: $(head -c 200 "$T/err"))" [ "$rc" -eq 0 ]
check "the pipe's model has the header's feature names" meta_has pipe.safetensors '\["alpha","beta","gamma"\]'
check "the pipe trains the same model as the file" cmp -s <("$BP" info --full file.safetensors | grep -v '^model\|validation') \
    <("$BP" info --full pipe.safetensors | grep -v '^model\|validation')
run eval pipe.safetensors d.csv --json
check "the pipe's model evaluates on the file: all 300 rows" [ "$rc" -eq 0 -a "$(json_get samples 2>/dev/null)" = 300 ]
rm -f s.safetensors
"$BP" train - -o s.safetensors "${TR[@]}" <d.csv >/dev/null 2>"$T/err"
check "train - (standard input)" [ $? -eq 0 -a -s s.safetensors ]
check "stdin's model has the names" meta_has s.safetensors '\["alpha","beta","gamma"\]'
"$BP" eval s.safetensors - --json <d.csv >"$T/out" 2>"$T/err"
check "eval MODEL - (standard input)" [ "$(json_get samples 2>/dev/null)" = 300 ]
"$BP" predict s.safetensors - <d.csv >"$T/out" 2>"$T/err"
check "predict MODEL - : header + 300 rows" [ "$(wc -l <"$T/out")" -eq 301 ]
run predict s.safetensors <(cut -d, -f1-3 d.csv)
check "predict from a pipe without the target column" [ "$rc" -eq 0 -a "$(wc -l <"$T/out")" -eq 301 ]
mkfifo fifo.csv
(cat d.csv >fifo.csv &)
timeout 60 "$BP" train fifo.csv -o fifo.safetensors "${TR[@]}" >/dev/null 2>"$T/err"
frc=$?
check "train from a named FIFO does not hang (rc=$frc)" [ "$frc" -eq 0 ]
# kill a writer left blocked if the reader never opened the FIFO
exec 3<>fifo.csv; exec 3>&-
head -n 201 d.csv >tr.csv; { head -n 1 d.csv; tail -n 100 d.csv; } >va.csv
run train tr.csv --val <(cat va.csv) -o v.safetensors "${TR[@]}"
check "--val from a pipe (rc=$rc: $(head -c 200 "$T/err"))" [ "$rc" -eq 0 ]
check "--val from a pipe: 100 validation rows" meta_has v.safetensors 'val_samples +100'
expect_error "a missing file: cannot open" 1 "nope.csv: cannot open" train nope.csv -o m.safetensors
expect_error "a directory: cannot read" 1 "\\.: cannot read" train . -o m.safetensors

# IDX images and labels through pipes.
/usr/bin/python3 - <<'EOF'
import struct, random, gzip
random.seed(5)
n = 60
img = bytearray(struct.pack(">BBBBIII", 0, 0, 8, 3, n, 4, 4))
lab = bytearray(struct.pack(">BBBBI", 0, 0, 8, 1, n))
for i in range(n):
    c = i % 2
    img += bytes(random.randrange(128) + 127 * c for _ in range(16))
    lab.append(c)
open("img.idx", "wb").write(img)
open("lab.idx", "wb").write(lab)
open("img.gz", "wb").write(gzip.compress(bytes(img), mtime=0))
EOF
run train <(cat img.idx) --labels <(cat lab.idx) -o idx.safetensors "${TR[@]}"
check "IDX images and --labels from pipes (rc=$rc: $(head -c 200 "$T/err"))" [ "$rc" -eq 0 ]
check "IDX from pipes: 60 samples" meta_has idx.safetensors 'train_samples +60'
run train img.gz --labels lab.idx --val <(cat img.gz) --val-labels <(cat lab.idx) -o idxv.safetensors "${TR[@]}"
check "IDX --val / --val-labels from pipes (rc=$rc: $(head -c 200 "$T/err"))" [ "$rc" -eq 0 ]
check "IDX --val from pipes: 60 validation samples" meta_has idxv.safetensors 'val_samples +60'
run eval idx.safetensors <(cat img.gz) --labels - --json <lab.idx
check "eval IDX from a pipe with --labels - (stdin)" [ "$rc" -eq 0 -a "$(json_get samples 2>/dev/null)" = 60 ]

# ---- 2.9: a gzipped CSV is CSV ----
gzip -c d.csv >d.csv.gz
run train d.csv.gz -o gz.safetensors "${TR[@]}"
check "train on data.csv.gz (rc=$rc: $(head -c 200 "$T/err"))" [ "$rc" -eq 0 ]
check "the .csv.gz model equals the .csv model" cmp -s <("$BP" info --full file.safetensors | grep -v '^model') \
    <("$BP" info --full gz.safetensors | grep -v '^model')
run eval gz.safetensors d.csv.gz --json
check "eval on data.csv.gz" [ "$rc" -eq 0 -a "$(json_get samples 2>/dev/null)" = 300 ]
gzip -c d.csv >renamed.bin
run train <(cat renamed.bin) -o gz2.safetensors "${TR[@]}"
check "a gzipped CSV is found by its content, not its name (a pipe)" [ "$rc" -eq 0 ]

# ---- 2.6: IDX gzip that inflates far past its header; endless streams ----
# The header declares 100 images of 28x28 (78416 bytes); 512 MiB of zeros
# follow (32 gzip members of 16 MiB each, 0.5 MB on disk).
/usr/bin/python3 - <<'EOF'
import gzip, struct
hdr = struct.pack(">BBBBIII", 0, 0, 8, 3, 100, 28, 28)
z = gzip.compress(b"\0" * (1 << 24), 1, mtime=0)
with open("bomb.gz", "wb") as f:
    f.write(gzip.compress(hdr + b"\0" * (1 << 24), 1, mtime=0))
    for _ in range(31):
        f.write(z)
open("bomb-labels.idx", "wb").write(struct.pack(">BBBBI", 0, 0, 8, 1, 100) + bytes(100))
# a 1 KB file whose header declares 60000 images
open("absurd.gz", "wb").write(gzip.compress(struct.pack(">BBBBIII", 0, 0, 8, 3, 60000, 28, 28) + bytes(1000), mtime=0))
EOF
expect_error "IDX gzip bomb: stops at the size its header declares" 1 \
    "bomb.gz: the gzip data holds more than the 78416 bytes its header declares" \
    train bomb.gz --labels bomb-labels.idx -o m.safetensors
expect_error "IDX header declaring more than the gzip data can hold" 1 \
    "absurd.gz: the header declares 47040016 bytes, more than" train absurd.gz --labels bomb-labels.idx -o m.safetensors
# Memory stays bounded: under a 400 MiB address-space limit (more than the
# program needs, less than the 512 MiB the bomb inflates to) the message is
# the same. Skipped when the binary cannot start under the limit at all
# (sanitizer builds reserve terabytes of address space).
probe=$(bash -c 'ulimit -v 409600; "$0" --version >/dev/null 2>&1 && echo starts' "$BP" 2>/dev/null)
if [ "$probe" = starts ]; then
    (ulimit -v 409600; exec "$BP" train bomb.gz --labels bomb-labels.idx -o m.safetensors) >/dev/null 2>"$T/err"
    check "the bomb under ulimit -v 400 MiB: same message (bounded memory)" \
        grep -q "holds more than the 78416 bytes" "$T/err"
else
    echo "SKIP: ulimit -v check (the binary does not start under a 400 MiB address space)"
fi
yes 1,2,3 2>/dev/null | BACKPROP_MAX_INPUT=1M "$BP" train - -o m.safetensors >/dev/null 2>"$T/err"
rc=$?
check "an endless stdin stops at the input limit (rc=$rc)" [ "$rc" -eq 1 ]
check "an endless stdin stops at the input limit (rc=$rc): message" grep -q "<stdin>: larger than 1.0 MiB, the input limit" "$T/err"
BACKPROP_MAX_INPUT=64K "$BP" eval s.safetensors /dev/zero >/dev/null 2>"$T/err"
check "eval on /dev/zero stops at the input limit" grep -q "/dev/zero: larger than 64.0 KiB\|/dev/zero: larger than 65536 bytes" "$T/err"
lim=$(( $(wc -c <d.csv.gz) + 512 ))
check "the limit lies between the .csv.gz and the .csv sizes" [ "$lim" -lt "$(wc -c <d.csv)" ]
gzip -c d.csv | BACKPROP_MAX_INPUT=$lim "$BP" train - -o m.safetensors >/dev/null 2>"$T/err"
check "a .csv.gz that inflates past the input limit is refused" grep -q "decompressed data larger than $lim bytes" "$T/err"
BACKPROP_MAX_INPUT=1M "$BP" train d.csv -o lim.safetensors "${TR[@]}" >/dev/null 2>&1
check "a file under the limit trains" [ -s lim.safetensors ]

# ---- 2.4: duplicate column names are refused at train time ----
printf 'a,b,a,y\n1,2,3,0\n4,5,6,1\n7,8,9,0\n' >dup.csv
expect_error "duplicate feature names: file, columns and name" 1 "dup.csv: columns 1 and 3 are both named 'a'" \
    train dup.csv -o m.safetensors
printf 'a,y,b,y\n1,0,3,0\n4,1,6,1\n7,0,9,0\n' >dupy.csv
expect_error "--target y with two y columns" 1 "dupy.csv: columns 2 and 4 are both named 'y'" \
    train dupy.csv --target y -o m.safetensors
expect_error "duplicate names in a pipe" 1 "columns 2 and 4 are both named 'y'" train <(cat dupy.csv) -o m.safetensors

# ---- section 3: --skip-rows, --no-header, --delimiter ----
S=/usr/lib/python3/dist-packages/sklearn/datasets/data
if [ -r "$S/wine_data.csv" ] && [ -r "$S/iris.csv" ]; then
    expect_error "wine without options: the count line is no header" 1 "wine_data.csv:2:.*fields, expected 5" \
        train "$S/wine_data.csv" -o m.safetensors
    run train "$S/wine_data.csv" --skip-rows 1 --no-header --epochs 40 -o wine.safetensors --quiet
    check "wine trains with --skip-rows 1 --no-header (rc=$rc: $(head -c 200 "$T/err"))" [ "$rc" -eq 0 ]
    check "wine: 13 features named by index" meta_has wine.safetensors '\["0","1","2","3","4","5","6","7","8","9","10","11","12"\]'
    check "wine: the dialect is stored" meta_has wine.safetensors 'csv_skip_rows +1'
    check "wine: no header stored" meta_has wine.safetensors 'csv_header +0'
    run eval wine.safetensors "$S/wine_data.csv" --json
    acc=$(json_get accuracy 2>/dev/null)
    check "eval uses the stored options: 178 rows, accuracy ${acc:-none} >= 0.95" \
        awk -v a="${acc:-0}" -v rc="$rc" -v n="$(json_get samples 2>/dev/null)" 'BEGIN { exit !(rc == 0 && n == 178 && a >= 0.95) }'
    tail -n +2 "$S/wine_data.csv" >wine_rows.csv
    run eval wine.safetensors wine_rows.csv --skip-rows 0 --json
    check "--skip-rows on eval overrides the stored value" [ "$rc" -eq 0 -a "$(json_get samples 2>/dev/null)" = 178 ]
    run predict wine.safetensors <(cut -d, -f1-13 wine_rows.csv) --skip-rows 0
    check "predict: features only, from a pipe, options overridden" [ "$rc" -eq 0 -a "$(wc -l <"$T/out")" -eq 179 ]
    run train "$S/iris.csv" --skip-rows 1 --no-header --epochs 30 -o iris.safetensors --quiet
    check "iris trains with --skip-rows 1 --no-header" [ "$rc" -eq 0 ]
    check "iris: 150 training rows" meta_has iris.safetensors 'train_samples +150'
    check "iris: classes 0, 1, 2 (not a header of numbers)" meta_has iris.safetensors '\["0","1","2"\]'
    check "iris: 4 features by index" meta_has iris.safetensors '\["0","1","2","3"\]'
else
    echo "SKIP: sklearn's CSVs are not installed (python3-sklearn)"
fi
# --no-header with --target as an index; the rest are features.
printf '1,5,0.5\n2,6,1.5\n3,7,2.5\n4,8,3.5\n' >nh.csv
run train nh.csv --no-header --target 0 --task regress -o nh.safetensors "${TR[@]}"
check "--no-header --target 0" [ "$rc" -eq 0 ]
check "--no-header --target 0: features 1 and 2" meta_has nh.safetensors 'features +\["1","2"\]'
check "--no-header: all 4 rows are data" meta_has nh.safetensors 'train_samples +4'
# --delimiter
tr ',' ';' <d.csv >semi.csv
run train semi.csv --delimiter ';' -o semi.safetensors "${TR[@]}"
check "--delimiter ';' trains the same model as the ',' file" cmp -s \
    <("$BP" info --full file.safetensors | grep -v '^model\|csv_delimiter') \
    <("$BP" info --full semi.safetensors | grep -v '^model\|csv_delimiter')
run eval semi.safetensors semi.csv --json
check "eval reads ';' from the model" [ "$rc" -eq 0 -a "$(json_get samples 2>/dev/null)" = 300 ]
run eval semi.safetensors d.csv --delimiter , --json
check "eval --delimiter , overrides the stored ';'" [ "$rc" -eq 0 -a "$(json_get samples 2>/dev/null)" = 300 ]
tr ',' '\t' <d.csv >tab.tsv
run train tab.tsv --delimiter tab -o tab.safetensors "${TR[@]}"
check "--delimiter tab" [ "$rc" -eq 0 ]
check "--delimiter tab: the header names" meta_has tab.safetensors '\["alpha","beta","gamma"\]'
run train tab.tsv --delimiter '\t' -o tab2.safetensors "${TR[@]}"
check "--delimiter '\\t'" [ "$rc" -eq 0 ]
expect_error "--delimiter with two characters is a usage error" 2 "--delimiter: ';;' is not one character" \
    train semi.csv --delimiter ';;' -o m.safetensors
expect_error "--delimiter '\"' is a usage error" 2 "--delimiter" train semi.csv --delimiter '"' -o m.safetensors
expect_error "--skip-rows -1 is a usage error" 2 "--skip-rows" train d.csv --skip-rows -1 -o m.safetensors
expect_error "--skip-rows past the end" 1 "ends within the 5000 lines to skip" train d.csv --skip-rows 5000 -o m.safetensors
printf 'a b y\n1 2 0\n3 4 1\n5 6 0\n' >sp.csv
run train sp.csv --delimiter space -o sp.safetensors "${TR[@]}"
check "--delimiter space" [ "$rc" -eq 0 ]
check "--delimiter space: the header names" meta_has sp.safetensors '\["a","b"\]'
for c in eval predict; do
    run "$c" --help
    check "$c --help lists --skip-rows, --no-header, --delimiter" \
        eval 'grep -q -- --skip-rows out && grep -q -- --no-header out && grep -q -- --delimiter out'
done
run train --help
check "train --help lists the CSV options and '-'" \
    eval 'grep -q -- --skip-rows out && grep -q -- --no-header out && grep -q -- --delimiter out && grep -q "standard input" out'
finish
