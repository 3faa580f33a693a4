"""dagster_project: the thin orchestration of lmlib's stages as Dagster assets."""

import warnings

from dagster import PreviewWarning

# Partitioned asset checks are a preview feature in Dagster 1.13; we use them knowingly.
warnings.filterwarnings("ignore", category=PreviewWarning)
