"""Scores of attacks and models: perturbation (l0, l-inf, distortion, SNR), perceptual (PESQ, STOI) and
classification (UA, WA, success). Import the submodule you need: `perceptual` stays free of torch for pool workers."""
