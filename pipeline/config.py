"""One typed config per run: an embedded default on the shared real data, a YAML file, CLI overrides.

Each stage's config model lives beside the stage; this module only composes them. The resolved config
(seed included) is written to `<run>/config.yaml` so a run can be reproduced from its folder alone.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from pipeline.config_base import StrictConfig, runtime, validate_config
from pipeline.decontam.stage import DecontamConfig
from pipeline.dedupe.config import DedupeConfig
from pipeline.generate.factory import BackendConfig
from pipeline.generate.stage import GenerateConfig
from pipeline.ingest.sources import SourceConfig
from pipeline.ingest.stage import IngestConfig
from pipeline.paths import REPO_ROOT, default_data_root
from pipeline.publish import PublishConfig
from pipeline.score.difficulty import ScoreConfig
from pipeline.score.diversity import DiversityStageConfig
from pipeline.score.problem_type import ProblemTypeConfig
from pipeline.select.plan import SelectConfig
from pipeline.train.config import StageName, TrainOptions
from pipeline.verify.judge import VerifyStageConfig


class TaskRunnerConfig(StrictConfig):
    kind: Literal["threads", "dask", "ray"] = runtime("threads")
    max_workers: int = runtime(2)
    address: str | None = runtime(None)  # an existing Dask scheduler / Ray cluster; None starts a local one


class TrainTriggerConfig(StrictConfig):
    mode: Literal["none", "subflow", "deployment"] = "subflow"  # deployment: run_deployment("train/all")
    stages: list[StageName] = ["sft", "grpo-vas", "evaluate"]
    sft_steps: int = 0  # 0: only validate that the cold-start set streams into SFT
    max_steps: int = 0  # GRPO steps; 0: only validate that the RL set loads as a TRL-ready dataset
    # The train flow's options, checked with the rest of the run's config (a misspelled key fails before curation):
    # {"sft": {SFTSettings}, "grpo": {GRPOSettings}, "evaluate": {EvaluateConfig}}; only the keys set are passed on.
    options: TrainOptions = TrainOptions()


class RunConfig(StrictConfig):
    run_name: str = "default"
    runs_root: Path = REPO_ROOT / "runs"
    data_root: Path = Field(default_factory=default_data_root)
    seed: int = 0
    sources: list[SourceConfig] = Field(default_factory=list)
    ingest: IngestConfig = IngestConfig()
    dedupe: DedupeConfig = DedupeConfig()
    decontam: DecontamConfig = DecontamConfig()
    diversity: DiversityStageConfig = DiversityStageConfig()
    problem_type: ProblemTypeConfig = ProblemTypeConfig()
    generate: GenerateConfig = GenerateConfig()
    backend: BackendConfig = BackendConfig()
    verify: VerifyStageConfig = VerifyStageConfig()
    score: ScoreConfig = ScoreConfig()
    select: SelectConfig = SelectConfig()
    publish: PublishConfig = PublishConfig()
    train: TrainTriggerConfig = TrainTriggerConfig()
    task_runner: TaskRunnerConfig = TaskRunnerConfig()

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_root) / self.run_name


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """The embedded default, then the YAML file at `path` (merged at top level), then `key.sub=value`s."""
    tree = yaml.safe_load(resources.files("pipeline").joinpath("default_config.yaml").read_text())
    if path is not None:
        tree.update(yaml.safe_load(Path(path).read_text()) or {})
    for override in overrides or []:
        key, sep, value = override.partition("=")
        if not sep:
            raise ValueError(f"override {override!r} is not key=value")
        _set_dotted(tree, key.strip(), yaml.safe_load(value))
    return validate_config(RunConfig, tree)


def save_resolved(config: RunConfig) -> Path:
    path = config.run_dir / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True))
    return path
