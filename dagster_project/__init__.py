"""dagster_project: the thin orchestration of lmlib's stages as Dagster assets."""

import warnings

from dagster import BetaWarning, PreviewWarning

# Partitioned asset checks are a preview feature in Dagster 1.13, and backfill policies are
# beta; we use both knowingly.
warnings.filterwarnings("ignore", category=PreviewWarning)
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)
