#!/bin/bash
# Round 2 of protocol B (RULES.md R2), then protocol A's choice runs (RULES.md RA). Run from /work/wt40.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P="python bench/calib_research.py b --params head+bn --replay 32"
$P --name r2_pw75 --patient-weight 0.75
$P --name r2_pt --replay-template patient
$P --name r2_mix --replay-mix 0.6,0.15,0.15,0.1,0
$P --name r2_lr3 --lr 3e-3
$P --name r2_mask --mask-absent 1
python bench/calib_research.py b --name r2_allmask --params all --mask-absent 1
python bench/calib_research.py b-table r1_hbnrp r2_pw75 r2_pt r2_mix r2_lr3 r2_mask r2_allmask --uncal --labels
python bench/calib_research.py a-choose --name C1 --lr 3e-3 --weights none --checkpoints 150 300 600
python bench/calib_research.py a-choose --name C2 --lr 3e-3 --weights sqrt --checkpoints 150 300 600
