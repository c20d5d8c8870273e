"""Every MLflow tag name nnlab writes or reads, in one place."""

GROUP_PREFIX = "nnlab."  # nnlab.<group>: the chosen option of each config group
EXPERIMENT = "nnlab.experiment"  # the experiments/<name>.yaml a run came from, or none
SWEEP_ID = "nnlab.sweep_id"  # the multirun a job belongs to
JOB_NUM = "nnlab.job_num"
VERSION = "nnlab.version"
OVERRIDES = "nnlab.overrides"
CHECKPOINT = "nnlab.checkpoint"  # the resumable last.ckpt of a run
RESUMED_FROM = "nnlab.resumed_from"
ERROR = "nnlab.error"  # why a run FAILED or was KILLED
DIVERGED = "diverged"  # "true" when the loss became NaN/Inf
REPORT = "nnlab.report"  # marks the runs nnlab.report logs
LAYERS = "nnlab.engine.instruments.layers"  # comma-separated parameter layers, input to output
SOURCE = "mlflow.source.name"
GIT_COMMIT = "mlflow.source.git.commit"
PARENT = "mlflow.parentRunId"  # nests a sweep's jobs under the sweep's run in the UI
CONFIG_HASH = "nnlab.config_hash"  # the composed config minus volatile keys (sweep.resume)
RESUME_EXACT = "nnlab.resume_exact"  # false where a resumed run cannot repeat the straight run
PACK = "nnlab.pack"  # the pack a packed sweep member trained in (hydra/launcher=packed)
# MLflow 3's experiment kind (its UI's own tag and value, mlflow/server/js ExperimentKind): model
# training, not GenAI. UIs that read it open on the runs table; 3.17's UI picks its view from its
# own GenAI / Model training switch instead (`?workflowType=machine_learning`), see README.
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
