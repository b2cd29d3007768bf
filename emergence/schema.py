"""The tidy table: the contract between evaluation and analysis. Column names live here only."""

FAMILY = "family"
MODEL = "model"
CHECKPOINT = "checkpoint"
PARAMS = "params"
PARAMS_NONEMBED = "params_nonembed"
TOKENS = "tokens"
STEP = "step"
FLOPS = "flops"
LOSS = "loss"
TASK = "task"
SUBTASK = "subtask"
METRIC = "metric"
VALUE = "value"
STDERR = "stderr"
N = "n"
CHANCE = "chance"
METRIC_KIND = "metric_kind"            # "discontinuous" | "continuous"; empty = unknown
HIGHER_IS_BETTER = "higher_is_better"  # True | False; empty = unknown
TASK_VERSION = "task_version"          # the task's declared version; a curve never mixes two
N_SHOT = "n_shot"                      # few-shot examples in each prompt; empty = unknown
SETTING = "setting"                    # prompt variant, split, answer format ("rc", "mc"); empty = default

# What, besides the task, makes two curves different experiments: a curve never mixes settings.
SETTING_KEYS = (N_SHOT, SETTING)

TIDY_COLUMNS = (FAMILY, MODEL, CHECKPOINT, PARAMS, PARAMS_NONEMBED, TOKENS, STEP, FLOPS, LOSS,
                TASK, SUBTASK, METRIC, VALUE, STDERR, N, CHANCE, METRIC_KIND, HIGHER_IS_BETTER, TASK_VERSION,
                N_SHOT, SETTING)
