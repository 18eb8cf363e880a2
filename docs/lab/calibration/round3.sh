#!/bin/bash
# Round 3 of protocol B (RULES.md R3). Run from /work/wt40.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P="python bench/calib_research.py b --params all"
$P --name r3_lr3 --mask-absent 1 --lr 3e-3
$P --name r3_lr3e4 --mask-absent 1 --lr 3e-4
$P --name r3_s200 --mask-absent 1 --steps 200
$P --name r3_off2 --absent-offset 2
$P --name r3_rp --mask-absent 1 --replay 32 --patient-weight 0.75
$P --name r3_bntrain --mask-absent 1 --bn train
python bench/calib_research.py b-table r2_allmask r3_lr3 r3_lr3e4 r3_s200 r3_off2 r3_rp r3_bntrain --uncal --labels
