"""Scaling laws from first principles, on numpy and scipy alone (no torch, no Dagster).

Notable:
- `Run` carries a status: diverged, failed or outlier runs stay in the result with their reason
  but out of every fit;
- FLOPs: `training_flops` is C = 6 N D, the convention both fits and both public data sets use;
  `transformer_training_flops` is TransformerLM's own count with attention (PaLM appendix B);
  `parameter_count` matches TransformerLM without importing it; `sweep_shapes` states its
  depth and width rule (head dim 64, d_model / num_layers near 64);
- approach 2 (`fit_isoflop`): lowest-loss run per budget, N_opt = k_N C^a and D_opt = k_D C^b
  in log-log space, a per-budget parabola in log N as second estimator (its bias is stated in
  lmlib.scaling.isoflop), bootstrap over budgets for prediction intervals;
- approach 3 (`fit_parametric`): L = E + A/N^alpha + B/D^beta by Huber (delta 1e-3) on log
  residuals of the log-sum-exp form, L-BFGS-B from the replication's grid of starts, bootstrap
  over runs for standard errors; compute-optimal N, D and loss in closed form;
- every result has `to_dict()` (JSON-ready) and the plots write PNG files and return paths.
"""

from lmlib.scaling.flops import (
    ModelShape,
    default_d_ff,
    flops_per_token,
    model_shape,
    parameter_count,
    sweep_shapes,
    tokens_for_flops,
    training_flops,
    transformer_training_flops,
)
from lmlib.scaling.isoflop import (
    IsoFlopBudget,
    IsoFlopFit,
    Parabola,
    PowerLaw,
    fit_isoflop,
    group_by_budget,
    snap_to_budgets,
)
from lmlib.scaling.laws import (
    SCALING_LAWS_FILE,
    ScalingLawsConfig,
    ScalingLawsResult,
    fit_scaling_laws,
    predicted_loss,
)
from lmlib.scaling.parametric import (
    COARSE_GRID,
    REPLICATION_GRID,
    InitialGrid,
    ParametricFit,
    compute_optimal_allocation,
    fit_parametric,
)
from lmlib.scaling.plots import (
    pareto_frontier,
    plot_compute_optimal,
    plot_isoflop_curves,
    plot_loss_frontier,
    plot_parametric_residuals,
)
from lmlib.scaling.prediction import ComputeOptimal
from lmlib.scaling.runs import (
    Run,
    exclude_highest_losses,
    load_chinchilla_extraction,
    load_isoflop_curves,
    split_runs,
)

__all__ = [
    "COARSE_GRID", "REPLICATION_GRID", "SCALING_LAWS_FILE", "ScalingLawsConfig",
    "ScalingLawsResult", "fit_scaling_laws", "predicted_loss", "ComputeOptimal", "InitialGrid", "IsoFlopBudget",
    "IsoFlopFit", "ModelShape", "Parabola", "ParametricFit", "PowerLaw", "Run",
    "compute_optimal_allocation", "default_d_ff", "exclude_highest_losses", "fit_isoflop",
    "fit_parametric", "flops_per_token", "group_by_budget", "load_chinchilla_extraction",
    "load_isoflop_curves", "model_shape", "pareto_frontier", "parameter_count",
    "plot_compute_optimal", "plot_isoflop_curves", "plot_loss_frontier",
    "plot_parametric_residuals", "snap_to_budgets", "split_runs", "sweep_shapes",
    "tokens_for_flops", "training_flops", "transformer_training_flops",
]
