#!/bin/bash
# Round 1 of protocol B (RULES.md R1). Run from /work/wt40.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P="python bench/calib_research.py b"
$P --name r1_naive  --params all
$P --name r1_replay --params all --replay 32
$P --name r1_l2sp   --params all --replay 32 --l2sp 1.0
$P --name r1_head   --params head
$P --name r1_headrp --params head --replay 32
$P --name r1_hbnrp  --params head+bn --replay 32
python bench/calib_research.py b-table r1_naive r1_replay r1_l2sp r1_head r1_headrp r1_hbnrp --uncal --labels
