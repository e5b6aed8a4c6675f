#!/usr/bin/env bash
# test_cli_data.sh - DATA files through the command line: CSV edge cases
# (quoted fields, CRLF, blank lines, byte order mark, one row, one column,
# missing / non-numeric values with line:column), IDX files written with
# printf (plain and gzip, header and size mismatches, label counts), and
# models whose input size differs from the data.
# Usage: bash test_cli_data.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---- CSV edge cases that must work ----
printf '\xef\xbb\xbf"x 1","x,2",label\r\n"1.5",2,a\r\n\r\n-1, "-2.5" ,b\r\n"3e0",4,"a"\r\n\r\n-3,-4,b' >quoted.csv
train_ok "quoted fields, CRLF, blank lines, BOM, no final newline" quoted.csv --epochs 2 -o q.safetensors --quiet
run eval q.safetensors quoted.csv --json
check "all 4 rows read" eval '[ $rc -eq 0 ] && [ "$(json_get samples)" = 4 ]'
run info --full q.safetensors
check "quoted header names kept (with comma and space)" grep -q '\["x 1","x,2"\]' out
check "string classes stored" grep -q '\["a","b"\]' out
printf 'a,b,y\n1,2,0\n' >one_row.csv
train_ok "a single data row" one_row.csv --epochs 2 -o one.safetensors --quiet
run predict one.safetensors one_row.csv
check "predict on one row: header + 1 row" eval '[ $rc -eq 0 ] && [ $(wc -l <out) -eq 2 ]'
printf 'a,y\n1,0\n2,1\n3,0\n4,1\n' >one_feature.csv
train_ok "a single feature column" one_feature.csv --epochs 2 -o f1.safetensors --quiet
printf 'x;y\n' >/dev/null
printf 'a,b,y\n1,2,0\n3,4,1\n' >lf.csv
printf 'a,b,y\r\n1,2,0\r\n3,4,1\r\n' >crlf.csv
train_ok "LF file" lf.csv --no-shuffle --epochs 2 -o lf.safetensors --quiet
train_ok "CRLF file" crlf.csv --no-shuffle --epochs 2 -o crlf.safetensors --quiet
check "CRLF and LF files give the same model" cmp -s lf.safetensors crlf.safetensors

# ---- CSV errors: file:line:column ----
printf 'a,b,y\n1,2,0\n3,,1\n5,6,0\n' >missing.csv
expect_error "missing value -> line:col" 1 "missing.csv:3:2:" train missing.csv -o m.safetensors
printf 'a,b,y\n1,2,0\n3,4\n' >ragged.csv
expect_error "ragged row -> line" 1 "ragged.csv:3:.*2 fields, expected 3" train ragged.csv -o m.safetensors
printf 'a,b,y\n1,2,0\n3,4,1,9\n' >ragged2.csv
expect_error "row with too many fields" 1 "ragged2.csv:3:" train ragged2.csv -o m.safetensors
printf 'a,b,y\n1,2,0\n3,abc,1\n' >nonnum.csv
expect_error "non-numeric feature -> line:col and text" 1 'nonnum.csv:3:2:.*"abc"' train nonnum.csv -o m.safetensors
printf 'a,b,y\n1,2,0\n3,nan,1\n' >nan.csv
expect_error "nan feature rejected" 1 "nan.csv:3:2:" train nan.csv -o m.safetensors
printf 'a,b,y\n1,"2,0\n' >unterminated.csv
expect_error "unterminated quote" 1 "unterminated.csv:2:" train unterminated.csv -o m.safetensors
printf 'y\n1\n2\n' >onecol.csv
expect_error "only a target column" 1 "onecol.csv.*no feature" train onecol.csv -o m.safetensors
printf 'a,b,y\n' >header_only.csv
expect_error "header without rows" 1 "header_only.csv.*no data rows" train header_only.csv -o m.safetensors
: >empty.csv
expect_error "empty file" 1 "empty.csv" train empty.csv -o m.safetensors

# ---- IDX files written with printf ----
# 4 images of 2x2 bytes and 4 labels (2 classes).
printf '\x00\x00\x08\x03\x00\x00\x00\x04\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff' >img.idx
printf '\x00\x00\x08\x01\x00\x00\x00\x04\x00\x00\x01\x01' >lab.idx
train_ok "IDX images + labels" img.idx --labels lab.idx --epochs 30 --lr 0.05 -o idx.safetensors --quiet
check "IDX default normalization is none" eval '"$BP" info idx.safetensors | grep -q "^normalize *none"'
run eval idx.safetensors img.idx --labels lab.idx --json
check "eval on IDX: 4 samples, accuracy 1" eval '[ $rc -eq 0 ] && [ "$(json_get samples)" = 4 ] && [ "$(json_get accuracy)" = 1 ]'
run predict idx.safetensors img.idx
check "predict on IDX without labels: header + 4 rows 0 0 1 1" eval '[ $rc -eq 0 ] && [ "$(tr "\n" " " <out)" = "class 0 0 1 1 " ]'
gzip -c img.idx >img.idx.gz
gzip -c lab.idx >labels.bin
train_ok "gzip IDX (by extension and by magic)" img.idx.gz --labels labels.bin --epochs 2 -o gz.safetensors --quiet
cp img.idx.gz images_noext
run eval gz.safetensors images_noext --labels labels.bin --json
check "gzip IDX found by its magic" eval '[ $rc -eq 0 ] && [ "$(json_get samples)" = 4 ]'
printf '\x00\x00\x08\x01\x00\x00\x00\x03\x00\x00\x01' >lab3.idx
expect_error "label count differs from image count" 1 "img.idx.*4.*lab3.idx.*3|lab3.idx.*3.*img.idx.*4" train img.idx --labels lab3.idx -o m.safetensors
printf '\x00\x00\x08\x03\x00\x00\x00\x04\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x00\x00' >trunc.idx
expect_error "truncated IDX data" 1 "trunc.idx.*truncated" train trunc.idx --labels lab.idx -o m.safetensors
cp img.idx trail.idx && printf '\x00' >>trail.idx
expect_error "trailing bytes after IDX data" 1 "trail.idx.*trailing" train trail.idx --labels lab.idx -o m.safetensors
printf '\x00\x00\x08\x03\x00\x00' >short.idx
expect_error "IDX header too short" 1 "short.idx" train short.idx --labels lab.idx -o m.safetensors
printf '\x01\x02\x08\x03\x00\x00\x00\x04\x00\x00\x00\x02\x00\x00\x00\x02' >magic.idx
expect_error "bad IDX magic" 1 "magic.idx.*magic" train magic.idx --labels lab.idx -o m.safetensors
printf '\x00\x00\x0d\x03\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00' >float.idx
expect_error "unsupported IDX type" 1 "float.idx.*0x0D" train float.idx --labels lab.idx -o m.safetensors
printf '\x00\x00\x08\x03\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x02' >zero.idx
expect_error "IDX zero size" 1 "zero.idx" train zero.idx --labels lab.idx -o m.safetensors
expect_error "labels and images swapped" 1 "lab.idx.*dimension" train lab.idx --labels img.idx -o m.safetensors
printf '\x1f\x8b\x08\x00garbage' >bad.gz
expect_error "corrupt gzip" 1 "bad.gz" train bad.gz --labels lab.idx -o m.safetensors
expect_error "IDX training without --labels" 2 "img.idx.*--labels" train img.idx -o m.safetensors
expect_error "missing labels file" 1 "nolabels.idx" train img.idx --labels nolabels.idx -o m.safetensors
printf '\x00\x00\x08\x01\x00\x00\x00\x04\x00\x00\x01\x05' >lab5.idx
expect_error "eval: IDX label outside the model's classes" 1 "lab5.idx.*label 5" eval idx.safetensors img.idx --labels lab5.idx

# ---- shapes: model vs data ----
printf 'a,b,c,y\n1,2,3,0\n4,5,6,1\n' >three_feat.csv
train_ok "two-feature model" lf.csv --epochs 1 -o two.safetensors --quiet
expect_error "eval: a column the model does not know" 1 "three_feat.csv:1:[0-9]+: column \"[a-z]\" is neither a feature nor a target" eval two.safetensors three_feat.csv
expect_error "predict: a column the model does not know" 1 "three_feat.csv:1:[0-9]+: column \"[a-z]\" is neither" predict two.safetensors three_feat.csv
expect_error "eval: IDX data on a CSV model" 1 "img.idx has 4 features.*takes 2 inputs" eval two.safetensors img.idx --labels lab.idx
# --val and --init-from match the columns by name (as eval does).
expect_error "--val with another feature count" 1 "three_feat.csv:1:[0-9]+: column \"[a-z]\" is neither a feature nor a target.*matched to lf.csv's by name" train lf.csv --val three_feat.csv -o m.safetensors
expect_error "--init-from a model of another input size" 1 "three_feat.csv:1:[0-9]+: column \"[a-z]\" is neither a feature nor a target.*two.safetensors's features by name" train three_feat.csv --init-from two.safetensors -o m.safetensors
printf 'a,b,y\n1,2,7\n' >unknown_label.csv
expect_error "eval: unknown class label" 1 "unknown_label.csv:2" eval two.safetensors unknown_label.csv

# ---- columns are matched by name against the model's features ----
{
    echo "a,b,label"
    for i in $(seq 1 30); do echo "$i,-$i,hi"; echo "-$i,$i,lo"; done
} >ab.csv
awk -F, 'BEGIN { OFS = "," } { print $2, $1, $3 }' ab.csv >ba.csv   # a and b swapped, names too
cut -d, -f1,3 ab.csv >a_only.csv
train_ok "two named features" ab.csv --epochs 30 --batch 8 -o ab.safetensors --quiet
run eval ab.safetensors ab.csv --json
acc_ab=$(sed -n 's/.*"accuracy": *\([0-9.]*\).*/\1/p' out)
run eval ab.safetensors ba.csv --json
acc_ba=$(sed -n 's/.*"accuracy": *\([0-9.]*\).*/\1/p' out)
check "eval on reordered columns gives the same accuracy ($acc_ab vs $acc_ba)" \
    eval '[ -n "$acc_ab" ] && [ "$acc_ab" = "$acc_ba" ] && awk -v a="$acc_ab" "BEGIN { exit !(a >= 0.9) }"'
run predict ab.safetensors ab.csv
cp out p_ab.csv
run predict ab.safetensors ba.csv
check "predict on reordered columns gives the same predictions" cmp -s p_ab.csv out
expect_error "eval: a feature column is missing" 1 "a_only.csv: missing feature column \"b\"" eval ab.safetensors a_only.csv
expect_error "predict: a feature column is missing" 1 "a_only.csv: missing feature column \"b\"" predict ab.safetensors a_only.csv

finish
