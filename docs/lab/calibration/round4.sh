#!/bin/bash
# Round 4 of protocol B (RULES.md R4). Run from /work/wt40.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P="python bench/calib_research.py b --params all --mask-absent 1"
$P --name r4_bntrain --steps 200 --bn train
$P --name r4_b64 --steps 100 --batch 64
$P --name r4_cw --steps 200 --patient-cw sqrt
python bench/calib_research.py b-table r3_s200 r4_bntrain r4_b64 r4_cw --uncal --labels
