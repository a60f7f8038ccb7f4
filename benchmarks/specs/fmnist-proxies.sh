#!/bin/sh
# Issue 20, measurement 2: every memorization proxy against exact Feldman-Zhang scores on
# Fashion-MNIST 10k (MLP 2x1024 recipe) with a pool of 128 members (each on a random 70%):
# raw Spearman, Pearson and cosine, tertile agreement, the exact scores' split-half reliability,
# and each proxy's cost. The pool is cached and resumable (members are trained 2 at a time).
# Needs the IDX files: apt-get install -y dataset-fashion-mnist (or --data-dir DIR).
set -e
memunlearn memorization compare --dataset fashion-mnist --train-subset 10000 \
    --pool-size 128 --workers 2 --out runs/fmnist-proxies/compare.json "$@"
