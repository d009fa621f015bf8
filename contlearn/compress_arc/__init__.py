"""CompressARC (Liao and Gu, "ARC-AGI Without Pretraining"): a fresh equivariant
decoder trained on one ARC puzzle alone by minimising a description length;
puzzles of one signature train as vmapped lanes of one compiled scan."""
