#!/usr/bin/env bash
# Snakemake runs this inside the new environment, from the project's root (its working folder):
# the metric libraries go in without their declared requirements (~0.9 GB the metrics here do
# not use), as setup.sh installs them; what they do need is in requirements.txt.
set -euo pipefail
python -m pip install --no-deps -r requirements-nodeps.txt
