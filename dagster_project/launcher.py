"""Launching `python -m lmlib.train` under torchrun through Dagster Pipes.

`launch_torchrun_training` runs `python -m torch.distributed.run ... -m
dagster_project.pipes_train ...` (lmlib.train's CLI with Pipes reporting) as a
PipesSubprocessClient subprocess: rank 0 of the training streams its log records into the run
(`context.log`) and sends its final stats (loss, tokens/s, MFU, ...) back as a Pipes custom
message, which this function returns, the same dict `lmlib.train.train` returns in-process.
Assets that use the GPUs carry `pool=GPU_POOL`, so that Dagster runs one at a time (set the
pool's limit with `dagster instance concurrency set gpu 1`, or `concurrency: pools:` in
dagster.yaml).

On a cluster the same command runs on every node (nnodes > 1 with a rendezvous endpoint), or
behind a Pipes client for Kubernetes (dagster-k8s PipesK8sClient) or Slurm; only the
single-node subprocess path is exercised by the tests.
"""

import os
import sys
from collections.abc import Mapping, Sequence

from dagster import PipesSubprocessClient

from dagster_project.pipes_train import STATS_MESSAGE_KIND

GPU_POOL = "gpu"


def torchrun_command(nproc_per_node: int, nnodes: int, train_args: Sequence[str],
                     rdzv_endpoint: str | None = None, node_rank: int | None = None,
                     python: str = sys.executable) -> list[str]:
    """The torchrun command line for `python -m lmlib.train <train_args>` (through
    dagster_project.pipes_train, which reports to Dagster when run under Pipes)."""
    if nproc_per_node < 1 or nnodes < 1:
        raise ValueError(f"nproc_per_node and nnodes must be >= 1, got {nproc_per_node}, {nnodes}")
    command = [python, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}",
               f"--nnodes={nnodes}"]
    if nnodes == 1 and rdzv_endpoint is None:
        command.append("--standalone")  # a free local port; no rendezvous server needed
    else:
        if rdzv_endpoint is None:
            raise ValueError("multi-node torchrun needs rdzv_endpoint (host:port of node 0)")
        command += ["--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}"]
        if node_rank is not None:
            command.append(f"--node_rank={node_rank}")
    return command + ["-m", "dagster_project.pipes_train", *train_args]


def launch_torchrun_training(
    context,
    *,
    nproc_per_node: int,
    nnodes: int = 1,
    train_args: Sequence[str],
    env: Mapping[str, str] | None = None,
    rdzv_endpoint: str | None = None,
    node_rank: int | None = None,
    cwd: str | None = None,
) -> dict:
    """Runs the training under torchrun via Pipes; returns rank 0's final stats.

    train_args: the arguments of `python -m lmlib.train` (e.g. ["--config", "cfg.json",
    "--data-dir", ..., "--run-dir", ..., "--strategy", "ddp"]). Raises when the subprocess
    fails or reports no stats.
    """
    command = torchrun_command(nproc_per_node, nnodes, train_args, rdzv_endpoint, node_rank)
    context.log.info(f"launching: {' '.join(command)}")
    child_env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                 "PYTHONUNBUFFERED": "1", **(env or {})}
    invocation = PipesSubprocessClient(cwd=cwd).run(
        context=context, command=command, env=child_env
    )
    reported = [message["stats"] for message in invocation.get_custom_messages()
                if isinstance(message, dict) and message.get("kind") == STATS_MESSAGE_KIND]
    if not reported:
        raise RuntimeError(
            "torchrun training finished without reporting stats through Dagster Pipes: is "
            "dagster-pipes installed in the training environment?"
        )
    return reported[-1]
