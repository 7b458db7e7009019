"""Local Swarm benchmarks: ``python -m bench SUBCOMMAND`` prints a table and writes
``bench/results/<name>.json``. Every figure is a ratio against a baseline measured in the same
run where the machine's drift could matter. One module per subcommand, each exposing ``command``."""
