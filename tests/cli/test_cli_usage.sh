#!/usr/bin/env bash
# test_cli_usage.sh - help texts, version, and every usage / file error of
# the backprop command line: one "backprop: ..." line on stderr, exit
# status 2 for usage errors and 1 for the others, nothing written.
# Usage: bash test_cli_usage.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# expect_error NAME RC REGEX ARGS...: exit status RC, exactly one stderr line
# "backprop: ..." matching REGEX (grep -E), and no model.safetensors written.
expect_error() {
    local name=$1 want=$2 re=$3; shift 3
    rm -f model.safetensors
    run "$@"
    local lines; lines=$(wc -l <"$T/err")
    if [ "$rc" -eq "$want" ] && [ "$lines" -eq 1 ] && grep -q '^backprop: ' "$T/err" &&
        grep -Eq -- "$re" "$T/err" && [ ! -e model.safetensors ]; then
        ok "$name"
    else
        bad "$name (rc=$rc, want $want; stderr: $(head -c 300 "$T/err"))"
    fi
}

# A small two-class CSV.
{
    echo "x1,x2,label"
    for i in $(seq 1 20); do echo "$i,$((i % 3)),yes"; echo "-$i,$((i % 5)),no"; done
} >two.csv

# ---- help and version ----
run --help
check "--help exits 0 with NAME/SYNOPSIS" eval '[ $rc -eq 0 ] && grep -q "^SYNOPSIS" out && grep -q "^NAME" out'
run --version
check "--version prints the version" eval '[ $rc -eq 0 ] && grep -Eq "^backprop [0-9]+\.[0-9]+\.[0-9]+" out'
for c in train eval predict generate info gradcheck; do
    run "$c" --help
    check "$c --help has NAME, SYNOPSIS, OPTIONS/DESCRIPTION, EXAMPLES" eval \
        '[ $rc -eq 0 ] && grep -q "^NAME" out && grep -q "^SYNOPSIS" out && grep -q "^EXAMPLES" out && grep -q "backprop $c" out'
    run help "$c"
    check "help $c is $c --help" eval '[ $rc -eq 0 ] && grep -q "backprop $c" out'
done
# Every option of DESIGN.md's train synopsis is documented.
run train --help
missing=""
for o in --labels -o --target --task --arch --loss --init --optimizer --lr --momentum \
    --weight-decay --l1 --l2 --clip-norm --clip-value --schedule --warmup --batch --epochs \
    --val --val-split --early-stop --no-shuffle --seed --normalize --init-from --freeze \
    --threads --log --plot --quiet --input-shape --augment --new-head --seq-len --encoding; do
    grep -q -- "$o" out || missing="$missing $o"
done
check "train --help documents every option${missing:+ (missing:$missing)}" [ -z "$missing" ]
run eval --help
check "eval --help documents --labels --json" eval 'grep -q -- --labels out && grep -q -- --json out'
run predict --help
check "predict --help documents --labels -o --proba" eval 'grep -q -- --labels out && grep -q -- "-o" out && grep -q -- --proba out'
run generate --help
check "generate --help documents --prime --length --temperature --seed" eval 'grep -q -- --prime out && grep -q -- --length out && grep -q -- --temperature out && grep -q -- --seed out'
run --help
check "--help lists generate and --task text" eval 'grep -q "backprop generate MODEL" out && grep -q -- "--task text" out'

# ---- usage errors: status 2 ----
expect_error "no command" 2 "missing command"
expect_error "unknown command" 2 "unknown command 'frobnicate'" frobnicate
expect_error "unknown top-level option" 2 "unknown option '--frob'" --frob
expect_error "unknown train option" 2 "unknown option '--frob'" train two.csv --frob
expect_error "unknown eval option" 2 "unknown option '--frob'" eval m two.csv --frob
expect_error "unknown predict option" 2 "unknown option" predict m two.csv --json
expect_error "unknown info option" 2 "unknown option" info m --frob
expect_error "unknown gradcheck option" 2 "unknown option" gradcheck --frob
expect_error "unknown generate option" 2 "unknown option '--frob'" generate m --frob
expect_error "missing option value" 2 "--lr needs a value" train two.csv --lr
expect_error "missing -o value" 2 "-o needs a value" train two.csv -o
expect_error "bad number --lr abc" 2 "--lr: 'abc' is not a number" train two.csv --lr abc
expect_error "bad number --lr 1e999" 2 "--lr" train two.csv --lr 1e999
expect_error "bad integer --epochs 2.5" 2 "--epochs: '2.5' is not an integer" train two.csv --epochs 2.5
expect_error "--epochs 0 out of range" 2 "--epochs: 0 is out of range" train two.csv --epochs 0
expect_error "--batch -1 out of range" 2 "--batch" train two.csv --batch -1
expect_error "--seed -3 rejected" 2 "--seed" train two.csv --seed -3
expect_error "--val-split 1.5 rejected" 2 "--val-split" train two.csv --val-split 1.5
expect_error "--optimizer unknown" 2 "unknown value 'foo'" train two.csv --optimizer foo
expect_error "--loss unknown" 2 "--loss: unknown value" train two.csv --loss hinge
expect_error "--schedule unknown" 2 "--schedule" train two.csv --schedule linear
expect_error "--normalize unknown" 2 "--normalize" train two.csv --normalize zscore
expect_error "--task unknown" 2 "--task" train two.csv --task cluster
expect_error "--init unknown" 2 "--init" train two.csv --init orthogonal
expect_error "--val with --val-split" 2 "either --val" train two.csv --val two.csv --val-split 0.2
expect_error "--freeze without --init-from" 2 "--freeze" train two.csv --freeze 1
expect_error "train without DATA" 2 "missing DATA" train --epochs 3
expect_error "train with two DATA" 2 "unexpected argument" train two.csv two.csv
expect_error "eval without DATA" 2 "needs MODEL and DATA" eval model.x
expect_error "info without MODEL" 2 "missing MODEL" info
expect_error "invalid spec (bad word)" 2 "spec:1:10: unknown layer 'foo'" train two.csv --arch "dense(8) foo"
expect_error "invalid spec (bad units)" 2 "spec:1:7:" train two.csv --arch "dense(x) relu"
expect_error "invalid spec (missing paren)" 2 "spec:1:" train two.csv --arch "dense(8 relu"
expect_error "--loss mse on class labels" 2 "mse is for regression" train two.csv --loss mse
printf 'a,y\n1,0\n2,1\n3,2\n' >three.csv
expect_error "--loss bce on 3 classes" 2 "bce needs exactly 2 classes" train three.csv --loss bce
printf 'a,y\n1,0.5\n2,1.5\n3,2.25\n' >reg.csv
expect_error "--loss cross-entropy on real targets" 2 "needs class labels" train reg.csv --loss cross-entropy
expect_error "unknown --target column" 2 "nosuch" train two.csv --target nosuch

# ---- file errors: status 1 ----
expect_error "missing DATA file" 1 "nope.csv: cannot open" train nope.csv
expect_error "DATA is a directory" 1 "^backprop: .*(read|open)" train "$T"
if [ "$(id -u)" -ne 0 ]; then
    cp two.csv locked.csv && chmod 000 locked.csv
    expect_error "unreadable DATA file" 1 "locked.csv: cannot open" train locked.csv
fi
expect_error "missing model for eval" 1 "nomodel.safetensors" eval nomodel.safetensors two.csv
expect_error "missing model for predict" 1 "nomodel.safetensors" predict nomodel.safetensors two.csv
expect_error "missing model for info" 1 "nomodel.safetensors" info nomodel.safetensors
printf 'not a model at all' >junk.safetensors
expect_error "malformed model for info" 1 "junk.safetensors" info junk.safetensors
expect_error "malformed model for eval" 1 "junk.safetensors" eval junk.safetensors two.csv
expect_error "malformed --init-from" 1 "junk.safetensors" train two.csv --init-from junk.safetensors
expect_error "-o into a missing directory" 1 "cannot write" train two.csv -o nodir/m.safetensors --quiet
check "nothing left in the missing directory" [ ! -e nodir ]

# ---- gradcheck ----
run gradcheck
check "gradcheck default passes (exit 0)" eval '[ $rc -eq 0 ] && grep -q "max relative error" out'
for l in mse cross-entropy bce; do
    run gradcheck --loss "$l" --arch "dense(6) sigmoid" --inputs 3 --outputs 2 --samples 4 --seed 3
    check "gradcheck --loss $l passes" eval '[ $rc -eq 0 ] && grep -q PASS out'
done
run gradcheck --arch "dense(4) sigmoid dense(4) tanh" --quiet
check "gradcheck --quiet prints one line" eval '[ $rc -eq 0 ] && [ $(wc -l <out) -eq 1 ]'
run gradcheck --tolerance 0
check "gradcheck exits 1 above the tolerance" eval '[ $rc -eq 1 ] && grep -q FAIL out && grep -q "^backprop: gradient check failed" err'
expect_error "gradcheck invalid spec" 2 "spec:1:" gradcheck --arch "dense(3) bogus"

# ---- outputs that would overwrite each other or the inputs ----
expect_error "--plot with a PNG name" 2 "--plot writes SVG" train two.csv --epochs 1 --plot curves.png
expect_error "-o and --log the same file" 2 "-o and --log name the same file" train two.csv --epochs 1 -o m.st --log m.st
expect_error "-o and --plot the same file, spelled differently" 2 "-o and --plot name the same file" \
    train two.csv --epochs 1 -o ./p.st --plot p.st
check "nothing written when outputs collide" eval '[ ! -e m.st ] && [ ! -e p.st ]'
cp two.csv data_copy.csv
expect_error "-o onto the training data" 2 "would overwrite the training DATA" train data_copy.csv --epochs 1 -o data_copy.csv
check "the training data is intact" cmp -s two.csv data_copy.csv
run train two.csv --epochs 1 --quiet -o base.st
expect_error "predict -o onto its DATA" 2 "would overwrite the DATA" predict base.st data_copy.csv -o data_copy.csv
run train two.csv --epochs 1 --quiet --init-from base.st -o base.st
check "-o may equal --init-from (fine-tuning in place)" [ "$rc" -eq 0 ]

# ---- special output paths ----
echo keep >real.st
ln -s real.st link.st
run train two.csv --epochs 1 --quiet -o link.st
check "-o through a symbolic link replaces its target and keeps the link" \
    eval '[ $rc -eq 0 ] && [ -L link.st ] && "$BP" info real.st >/dev/null'
run predict base.st two.csv -o /dev/stdout
check "predict -o /dev/stdout writes to standard output" eval '[ $rc -eq 0 ] && [ "$(wc -l <out)" -eq 41 ]'

finish
