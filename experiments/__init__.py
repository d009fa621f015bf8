"""contlearn's experiments, one module each; installed as `contlearn.experiments`.

The folder stays at the top of the repository; pyproject.toml maps it to the
subpackage `contlearn.experiments`, so a wheel carries every experiment.
`contlearn list` lists them, `contlearn run NAME --help` describes one, and
`contlearn.catalog` states the protocol an experiment file follows. An
experiment imports helpers from another only through the package:
`from contlearn.experiments import nl_lm_comparison`.
"""
