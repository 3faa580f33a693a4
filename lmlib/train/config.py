"""The training configuration dataclass and its named presets, defined once here.

`tiny` is the CPU demo (a few minutes on 2 cores, a few-MB corpus); `small`, `gpt2-small` and
`gpt2-medium` are GPU sizes. The vocabulary size comes from the token shards unless a preset
fixes it. A config is also loadable from JSON (nested "model" object) and overridable from the
command line with dotted keys (`model.d_model=256`).

Distributed runs (under torchrun): `batch_size` stays per rank, so a step trains on
batch_size * grad_accum_steps * world_size sequences; `strategy` picks ddp, zero1 (DDP plus a
sharded optimizer) or fsdp; `activation_checkpointing` recomputes every block's (or every
k-th block's) activations in backward, on any strategy.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from lmlib.distributed.activation_checkpointing import ACTIVATION_CHECKPOINTING_MODES
from lmlib.distributed.strategy import STRATEGIES
from lmlib.model.transformer import ModelConfig
from lmlib.stage import config_from_dict

ACTIVATION_CHECKPOINTING = ACTIVATION_CHECKPOINTING_MODES  # the old name of the same modes

# Fields that change the weights a run produces: a resumed run must keep them.
RESUME_INVARIANT_FIELDS = (
    "model", "batch_size", "grad_accum_steps", "max_lr", "min_lr", "warmup_steps",
    "cosine_steps", "weight_decay", "beta1", "beta2", "adam_eps", "grad_clip", "seed", "precision",
)


@dataclass
class TrainConfig:
    """Everything `lmlib.train.train` needs besides its input and output paths."""

    model: ModelConfig = field(default_factory=ModelConfig)
    batch_size: int = 16  # sequences per micro-batch
    grad_accum_steps: int = 1
    max_steps: int = 300
    max_lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    cosine_steps: int | None = None  # None: decay over max_steps
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 100
    eval_batches: int = 8
    checkpoint_interval: int = 100
    keep_checkpoints: int = 2
    log_interval: int = 10
    seed: int = 0
    device: str = "auto"  # auto: cuda if available, else cpu
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; or "bf16", "fp32"
    compile: bool = False
    # None: deterministic kernels on CPU (runs and resumes are bitwise reproducible; CPU embedding
    # backward is otherwise order-dependent across threads), torch's fast defaults on CUDA
    deterministic: bool | None = None
    peak_flops: float = 989e12  # for MFU: H100/H200 dense bf16
    wandb_project: str | None = None  # None: no wandb
    wandb_mode: str | None = None  # None: $WANDB_MODE, else "offline"
    sample_prompts: tuple[str, ...] = ("Once upon a time", "The")
    sample_max_new_tokens: int = 48
    sample_temperature: float = 0.8
    sample_top_p: float = 0.95
    strategy: str = "none"  # none | ddp | zero1 | fsdp (the last three under torchrun)
    bucket_size_mb: float | None = 25.0  # DDP gradient buckets; None: one bucket
    activation_checkpointing: str = "none"  # none | every | every_k
    activation_checkpointing_every_k: int = 2

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        self.sample_prompts = tuple(self.sample_prompts)
        positive = ("batch_size", "grad_accum_steps", "max_steps", "eval_interval",
                    "eval_batches", "checkpoint_interval", "keep_checkpoints", "log_interval")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        if self.min_lr > self.max_lr:
            raise ValueError(f"min_lr={self.min_lr} exceeds max_lr={self.max_lr}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.activation_checkpointing not in ACTIVATION_CHECKPOINTING_MODES:
            raise ValueError("activation_checkpointing must be one of "
                             f"{ACTIVATION_CHECKPOINTING_MODES},"
                             f" got {self.activation_checkpointing!r}")
        if self.activation_checkpointing_every_k < 1:
            raise ValueError("activation_checkpointing_every_k must be at least 1, got "
                             f"{self.activation_checkpointing_every_k}")
        if self.bucket_size_mb is not None and self.bucket_size_mb < 0:
            raise ValueError(f"bucket_size_mb must be null or >= 0, got {self.bucket_size_mb}")
        if self.strategy == "fsdp" and self.compile:
            raise ValueError("compile=true is not supported with strategy fsdp (its hooks gather "
                             "weights around every layer); set compile=false")

    @property
    def resolved_cosine_steps(self) -> int:
        return self.cosine_steps if self.cosine_steps is not None else self.max_steps

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum_steps * self.model.context_length

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["sample_prompts"] = list(self.sample_prompts)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        return config_from_dict(cls, values)

    def check_can_resume(self, saved: dict, checkpoint: Path) -> None:
        """Raises if the config `saved` beside `checkpoint` trained with different values of
        the fields that change the weights (RESUME_INVARIANT_FIELDS)."""
        # through the dataclass, so that a field added since the checkpoint compares as its default
        saved = TrainConfig.from_dict(saved).to_dict()
        current = self.to_dict()
        changed = [name for name in RESUME_INVARIANT_FIELDS if saved.get(name) != current[name]]
        if changed:
            raise ValueError(
                f"{checkpoint} was trained with different {changed}; resuming would not reproduce "
                "the run. Use a new run_dir, or delete its checkpoints to start over."
            )

    def with_overrides(self, overrides: dict[str, object]) -> "TrainConfig":
        """A copy with dotted keys replaced, e.g. {"max_steps": 10, "model.d_model": 64}."""
        values = self.to_dict()
        for key, value in overrides.items():
            target = values
            *parents, leaf = key.split(".")
            for parent in parents:
                if not isinstance(target.get(parent), dict):
                    raise ValueError(f"override {key!r}: {parent!r} is not a nested config")
                target = target[parent]
            if leaf not in target:
                raise ValueError(f"override {key!r}: no such field; known: {sorted(target)}")
            target[leaf] = value
        return TrainConfig.from_dict(values)


def _tiny() -> TrainConfig:
    # ~1.5M non-embedding parameters: about 0.3 s a step on 2 CPU cores
    return TrainConfig(
        model=ModelConfig(context_length=128, d_model=128, num_layers=4, num_heads=4, d_ff=384),
        batch_size=16, max_steps=300, max_lr=3e-3, min_lr=3e-4, warmup_steps=20,
        eval_interval=100, eval_batches=4, checkpoint_interval=100, log_interval=10,
    )


def _small() -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(context_length=512, d_model=512, num_layers=8, num_heads=8),
        batch_size=64, max_steps=5000, max_lr=1e-3, min_lr=1e-4, warmup_steps=200,
        eval_interval=250, eval_batches=20, checkpoint_interval=500, log_interval=20, compile=True,
    )


def _gpt2(d_model: int, num_layers: int, num_heads: int, max_lr: float) -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(
            context_length=1024, d_model=d_model, num_layers=num_layers, num_heads=num_heads
        ),
        batch_size=32, grad_accum_steps=16, max_steps=10000, max_lr=max_lr, min_lr=max_lr / 10,
        warmup_steps=700, eval_interval=250, eval_batches=20, checkpoint_interval=500,
        log_interval=10, compile=True,
    )


PRESETS = {
    "tiny": _tiny,
    "small": _small,
    "gpt2-small": lambda: _gpt2(768, 12, 12, 6e-4),
    "gpt2-medium": lambda: _gpt2(1024, 24, 16, 3e-4),
}


def get_preset(name: str) -> TrainConfig:
    """A fresh TrainConfig of the named preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
    return PRESETS[name]()


def load_config(name_or_path: str | Path) -> TrainConfig:
    """A preset name, or the path of a JSON file holding TrainConfig fields."""
    if str(name_or_path) in PRESETS:
        return get_preset(str(name_or_path))
    path = Path(name_or_path)
    if not path.exists():
        raise ValueError(f"{name_or_path!r} is neither a preset ({sorted(PRESETS)}) nor a JSON file")
    values = json.loads(path.read_text())
    preset = values.pop("preset", None)
    if preset is not None:  # {"preset": "tiny", "max_steps": 50, "model": {"d_model": 64}}
        model_overrides = values.pop("model", {})
        overrides = {**values, **{f"model.{k}": v for k, v in model_overrides.items()}}
        return get_preset(preset).with_overrides(overrides)
    return TrainConfig.from_dict(values)
