"""Launching `python -m lmlib.train` under torchrun through Dagster Pipes.

`launch_torchrun_training` runs `python -m torch.distributed.run ... -m
dagster_project.pipes_train ...` (lmlib.train's CLI with Pipes reporting) as a subprocess in a
Dagster Pipes session: rank 0 of the training streams its log records into the run
(`context.log`) and sends its final stats (loss, tokens/s, MFU, ...) back as a Pipes custom
message, which this function returns, the same dict `lmlib.train.train` returns in-process.
Assets that use the GPUs carry `pool=GPU_POOL`, whose limit the project sets in the instance
(dagster_project.policies), so that Dagster runs one of them at a time.

On a cluster the same command runs on every node (nnodes > 1 with a rendezvous endpoint), or
behind a Pipes client for Kubernetes (dagster-k8s PipesK8sClient) or Slurm; only the
single-node subprocess path is exercised by the tests.
"""

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from dagster import (
    Failure,
    PipesClientCompletedInvocation,
    PipesTempFileContextInjector,
    PipesTempFileMessageReader,
    open_pipes_session,
)

from dagster_project.pipes_train import STATS_MESSAGE_KIND
from lmlib.model import TransformerLM
from lmlib.train import TrainConfig, TrainingInterrupted, TrainResult, get_preset, read_index, train


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


def termination_timeout_seconds(parameters: int) -> float:
    """How long a stopped training may take to write its checkpoint before it is killed.

    The weights and AdamW's two moments in float32 (12 bytes a parameter) at a pessimistic
    100 MB/s, plus a minute for the step in flight and the process group: 75 s for GPT-2 small,
    about 3 minutes for a 1B model.
    """
    return 60.0 + 12 * parameters / 100e6


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
    termination_timeout_s: float = 60.0,
) -> dict:
    """Runs the training under torchrun via Pipes; returns rank 0's final stats.

    train_args: the arguments of `python -m lmlib.train` (e.g. ["--config", "cfg.json",
    "--data-dir", ..., "--run-dir", ..., "--strategy", "ddp"]). Raises when the subprocess
    fails or reports no stats.

    Termination (Dagster's "Terminate" raises an interrupt in this process): SIGINT goes to
    torchrun, which forwards it to its workers; they write a checkpoint and exit. torchrun is
    told to wait `termination_timeout_s` for them, and after that long this function kills the
    whole process group, so no worker outlives the run holding a GPU.
    """
    command = torchrun_command(nproc_per_node, nnodes, train_args, rdzv_endpoint, node_rank)
    context.log.info(f"launching: {' '.join(command)}")
    child_env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                 "PYTHONUNBUFFERED": "1",
                 "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(math.ceil(termination_timeout_s)),
                 **(env or {})}
    with open_pipes_session(context=context, context_injector=PipesTempFileContextInjector(),
                            message_reader=PipesTempFileMessageReader()) as session:
        # its own session: signals reach torchrun only from here, and the group can be killed
        process = subprocess.Popen(command, cwd=cwd, start_new_session=True, env={
            **os.environ, **child_env, **session.get_bootstrap_env_vars()})
        try:
            returncode = process.wait()
        except BaseException:  # Dagster's termination, Ctrl-C, or anything else: stop cleanly
            _stop(process, context, termination_timeout_s)
            raise
    if returncode != 0:
        raise RuntimeError(f"torchrun training exited with status {returncode}; its output "
                           "above says why (the run directory keeps the last checkpoint)")
    invocation = PipesClientCompletedInvocation(session)
    reported = [message["stats"] for message in invocation.get_custom_messages()
                if isinstance(message, dict) and message.get("kind") == STATS_MESSAGE_KIND]
    if not reported:
        raise RuntimeError(
            "torchrun training finished without reporting stats through Dagster Pipes: is "
            "dagster-pipes installed in the training environment?"
        )
    return reported[-1]


def _stop(process: subprocess.Popen, context, timeout_s: float) -> None:
    """SIGINT to torchrun, up to `timeout_s` for the checkpoint, then SIGKILL to the group."""
    if process.poll() is not None:
        return
    context.log.info(f"stopping torchrun: SIGINT, then up to {timeout_s:.0f} s for the workers "
                     "to write a checkpoint")
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
        context.log.info(f"torchrun stopped (exit status {process.returncode})")
    except subprocess.TimeoutExpired:
        context.log.warning(f"torchrun still running after {timeout_s:.0f} s; killing its "
                            "process group")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stray workers, if any
        process.wait()


def training_config(settings) -> TrainConfig:
    """The TrainConfig of a training asset's settings (dagster_project.assets.pretrain): the
    preset with the fields that are set; under torchrun the strategy is ddp unless set."""
    overrides = settings.overrides()
    if settings.launcher == "torchrun":
        overrides.setdefault("strategy", "ddp")
    return get_preset(settings.preset).with_overrides(overrides)


def run_training(context, settings, train_config: TrainConfig, data_dir: Path, run_dir: Path,
                 tokenizer_dir: Path) -> TrainResult:
    """Trains in this process or under torchrun (settings.launcher), resuming from run_dir.

    In process, a stop signal (Terminate in the UI sends SIGINT) ends the step with a
    checkpoint; the failure says where it stopped and, for SIGINT, forbids retries.
    """
    if settings.launcher == "torchrun":
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "train_config.json").write_text(json.dumps(train_config.to_dict()))
        vocab_size = train_config.model.vocab_size or read_index(data_dir)["vocab_size"]
        parameters = TransformerLM(train_config.model, vocab_size=vocab_size,
                                   device="meta").num_parameters()
        stats = launch_torchrun_training(
            context, nproc_per_node=settings.nproc_per_node, nnodes=settings.nnodes,
            train_args=["--config", str(run_dir / "train_config.json"), "--data-dir",
                        str(data_dir), "--run-dir", str(run_dir), "--tokenizer-dir",
                        str(tokenizer_dir)],
            termination_timeout_s=termination_timeout_seconds(parameters))
        return TrainResult.from_dict(stats)
    if settings.launcher != "inprocess":
        raise ValueError(f"launcher must be inprocess or torchrun, got {settings.launcher!r}")

    def log_progress(record: dict) -> None:
        if record["kind"] == "status":
            context.log.info(f"[+{record['elapsed_s']:.1f} s] {record['message']}")
        elif record["kind"] == "eval" or record["step"] % 50 == 0:
            context.log.info(json.dumps(record))

    try:
        return train(train_config, data_dir, run_dir, progress=log_progress,
                     tokenizer_dir=tokenizer_dir, quiet=True)
    except TrainingInterrupted as stopped:
        raise Failure(str(stopped), allow_retries=stopped.signal_name != "SIGINT",
                      metadata={"stopped_at_step": stopped.step,
                                "checkpoint": str(stopped.checkpoint)}) from stopped
